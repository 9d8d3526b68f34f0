"""stepflow-files: a stepflow-tui plugin that lists files, checksums them and writes a sha256sum manifest.

Job types:

- ``list_files``: ``folder``, optional ``suffixes`` -> one absolute path per file under the folder (sorted).
- ``checksum``: ``source_path``, optional ``root`` -> outputs ``sha256`` and ``relative_path``.
- ``write_manifest``: ``source_paths``, ``manifest``, optional ``root`` -> a file ``sha256sum -c`` verifies.

It also ships the ``checksum_folder`` workflow (workflows.json beside this module). The jobs are stateless:
an order carries only paths, so ``write_manifest`` re-reads its files rather than trusting earlier outputs.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from stepflow_tui import JobContext, JobType, WorkerImplementation, hookimpl

__version__ = "0.1.0"

#: Files are read in blocks of this size; cancellation is checked between blocks.
BLOCK_SIZE = 1024 * 1024
#: A file at least this large reports progress while it is hashed (smaller ones finish before it matters).
LARGE_FILE = 16 * BLOCK_SIZE
WORKFLOWS = Path(__file__).with_name("workflows.json")


# -- helpers ----------------------------------------------------------------------------------------------------
def sha256_file(path: str | os.PathLike[str], ctx: JobContext | None = None,
                on_block: Callable[[int], None] | None = None) -> str:
    """The SHA-256 hex digest of a file, read in `BLOCK_SIZE` blocks; checks ``ctx`` for cancellation between
    blocks and calls ``on_block(bytes_read)`` after each one."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK_SIZE):
            digest.update(block)
            if ctx is not None:
                ctx.check_cancelled()
            if on_block is not None:
                on_block(len(block))
    return digest.hexdigest()


def relative_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str:
    """``path`` relative to ``root`` with POSIX separators; the basename when there is no root."""
    if not root:
        return PurePath(path).name
    return PurePath(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def manifest_line(sha256: str, name: str) -> str:
    """One line of a ``sha256sum`` manifest. Like GNU sha256sum, a name with a backslash or a newline is
    escaped and the line starts with a backslash, so ``sha256sum -c`` reads it back."""
    if "\\" in name or "\n" in name:
        return "\\" + sha256 + "  " + name.replace("\\", "\\\\").replace("\n", "\\n") + "\n"
    return f"{sha256}  {name}\n"


def _existing_file(path: str, job: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{job}: file {path!r} does not exist")
    if not os.path.isfile(path):
        raise IsADirectoryError(f"{job}: {path!r} is not a regular file")
    return path


def _string_list(value: Any, parameter: str, job: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):  # one value given where a list was expected
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ValueError(f"{job}: parameter {parameter!r} must be a list of strings, got {value!r:.80}")


# -- list_files -------------------------------------------------------------------------------------------------
def list_files(ctx: JobContext) -> dict[str, Any]:
    """Every file under ``folder`` (recursively, sorted by path, symlinked folders not followed), optionally only those
    whose name ends with one of ``suffixes`` (case-insensitive)."""
    folder = ctx.allowed_path(str(ctx.require("folder")))
    suffixes = tuple(suffix.lower() for suffix in _string_list(ctx.param("suffixes"), "suffixes", "list_files"))
    if not os.path.exists(folder):
        raise FileNotFoundError(f"list_files: folder {folder!r} does not exist")
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"list_files: {folder!r} is not a folder")

    def unreadable(error: OSError) -> None:
        # os.walk skips unreadable folders silently by default: a silently partial manifest would lie.
        raise PermissionError(f"list_files: cannot read folder {error.filename!r}: {error.strerror}")

    paths: list[str] = []
    top = os.path.abspath(folder)
    # followlinks=False: a symlinked folder is listed among dirnames but never entered (no loops).
    for dirpath, dirnames, filenames in os.walk(top, onerror=unreadable, followlinks=False):
        ctx.check_cancelled()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if not os.path.isfile(path):  # broken symlinks, sockets, fifos
                continue
            try:
                ctx.allowed_path(path)
            except PermissionError:  # a symlink out of the allowed folders: neither listed nor read
                continue
            if suffixes and not name.lower().endswith(suffixes):
                continue
            paths.append(path)
    paths.sort()  # one order for the whole tree (os.walk gives a folder's files before its subfolders)
    ctx.logger.info("list_files: %d file(s) under %s", len(paths), top)
    return {"destination_paths": paths}


# -- checksum ---------------------------------------------------------------------------------------------------
def checksum(ctx: JobContext) -> dict[str, Any]:
    """SHA-256 of ``source_path``; outputs ``sha256`` and ``relative_path`` (relative to ``root``)."""
    source_path = _existing_file(ctx.allowed_path(str(ctx.require("source_path"))), "checksum")
    size = os.path.getsize(source_path)
    done = 0

    def on_block(length: int) -> None:
        nonlocal done
        done += length
        if size >= LARGE_FILE:
            ctx.progress(100 * done / size)

    sha256 = sha256_file(source_path, ctx, on_block)
    return {
        "destination_paths": [source_path],
        "outputs": {"sha256": sha256, "relative_path": relative_path(source_path, ctx.param("root"))},
    }


# -- write_manifest ---------------------------------------------------------------------------------------------
def write_manifest(ctx: JobContext) -> dict[str, Any]:
    """Write ``manifest``: one ``<sha256>  <relative path>`` line per source path, sorted by relative path, in
    the format ``sha256sum -c`` reads. Paths are relative to ``root`` (default: the manifest's folder)."""
    manifest = ctx.allowed_path(os.path.abspath(str(ctx.require("manifest"))))
    _replaceable(manifest)
    root = ctx.param("root") or os.path.dirname(manifest)
    sources = _string_list(ctx.param("source_paths"), "source_paths", "write_manifest")
    # A re-run lists the previous manifest too; its checksum would be stale the moment we replace it.
    manifest_real = os.path.realpath(manifest)
    unique: dict[str, str] = {}  # real path -> path as given: a file listed twice is hashed once
    for path in sources:
        real = os.path.realpath(path)
        if real != manifest_real:
            unique.setdefault(real, path)
    entries = sorted((relative_path(path, root), path) for path in unique.values())
    for _name, path in entries:
        _existing_file(ctx.allowed_path(path), "write_manifest")
    total = sum(os.path.getsize(path) for _name, path in entries) or 1
    done = 0

    def on_block(length: int) -> None:
        nonlocal done
        done += length
        ctx.progress(100 * done / total)

    lines = [manifest_line(sha256_file(path, ctx, on_block), name) for name, path in entries]
    _write_atomically(manifest, "".join(lines))
    ctx.logger.info("write_manifest: %d file(s) in %s", len(lines), manifest)
    return {"destination_paths": [manifest], "outputs": {"file_count": len(lines)}}


def _replaceable(path: str) -> None:
    """Refuse a target that exists and is not a regular file: a device, a folder, a symlink to elsewhere."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise IsADirectoryError(f"write_manifest: {path!r} exists and is not a regular file; not replaced")


def _write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: readers never see half a file."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        # surrogateescape: a file name that is not UTF-8 is written as its own bytes, as sha256sum reads it.
        with os.fdopen(handle, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; a manifest is meant to be shared
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


# -- hooks ------------------------------------------------------------------------------------------------------
_STRING = {"type": "string"}
_PATHS = {"type": "array", "items": {"type": "string"}}

JOB_TYPES: list[tuple[JobType, WorkerImplementation]] = [
    (JobType(
        name="list_files", label="List files",
        description="Lists every file under a folder, recursively, sorted; one destination path per file.",
        parameters={"type": "object", "required": ["folder"], "properties": {
            "folder": {**_STRING, "description": "the folder to walk"},
            "suffixes": {**_PATHS, "description": "keep only names ending with one of these, e.g. [\".txt\"]"},
        }}), list_files),
    (JobType(
        name="checksum", label="SHA-256 checksum",
        description="Computes the SHA-256 of one file; outputs sha256 and relative_path.",
        parameters={"type": "object", "required": ["source_path"], "properties": {
            "source_path": {**_STRING, "description": "the file to hash"},
            "root": {**_STRING, "description": "relative_path is computed from this folder"},
        }}), checksum),
    (JobType(
        name="write_manifest", label="Write a sha256sum manifest",
        description="Hashes the source paths and writes '<sha256>  <relative path>' lines (sha256sum -c).",
        parameters={"type": "object", "required": ["source_paths", "manifest"], "properties": {
            "source_paths": {**_PATHS, "description": "the files to list"},
            "manifest": {**_STRING, "description": "the manifest file to write"},
            "root": {**_STRING, "description": "paths in the manifest are relative to this folder"},
        }}), write_manifest),
]


@hookimpl
def register_job_types(register: Callable[[JobType], None]) -> None:
    """Register list_files, checksum and write_manifest."""
    for job_type, _implementation in JOB_TYPES:
        register(JobType(name=job_type.name, label=job_type.label, description=job_type.description,
                         parameters=job_type.parameters, version=__version__))


@hookimpl
def register_workers(register: Callable[[str, WorkerImplementation], None]) -> None:
    """Register the implementations of list_files, checksum and write_manifest."""
    for job_type, implementation in JOB_TYPES:
        register(job_type.name, implementation)


@hookimpl
def register_workflows(register: Callable[[Any], None]) -> None:
    """Ship the checksum_folder workflow."""
    register(WORKFLOWS)


# -- the workbench -----------------------------------------------------------------------------------------------
MANIFEST_PREVIEW = 10  # lines of a manifest shown in the workbench


def render_manifest(record: dict[str, Any]) -> str:
    """A write_manifest job in the workbench's detail: how many files its manifest lists, where, and its first
    lines when the manifest is readable from here (a worker on another host wrote it on its own disk)."""
    outputs = {o.get("id"): o.get("value") for o in record.get("outputs") or [] if isinstance(o, dict)}
    paths = record.get("destination_paths") or []
    if not paths:
        return "no manifest written yet"
    text = f"{outputs.get('file_count', '?')} file(s) listed in {paths[0]}"
    try:
        with open(paths[0], encoding="utf-8") as handle:
            lines = [line.rstrip("\n") for _, line in zip(range(MANIFEST_PREVIEW), handle, strict=False)]
    except OSError as exc:
        return f"{text}\n(not readable from here: {exc.strerror})"
    return "\n".join([text, *lines])


@hookimpl
def register_output_renderers(register: Callable[[str, Callable[[dict[str, Any]], Any]], None]) -> None:
    """Show a write_manifest job's manifest in the workbench."""
    register("write_manifest", render_manifest)
