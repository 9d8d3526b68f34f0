"""stepflow-files: the implementations on real folders, the manifest checked by sha256sum, and the plugin
loading through its entry point."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from stepflow_tui.plugins import get_plugin_manager, load_registry
from stepflow_tui.worker.context import JobCancelled, JobContext, normalize_result

import stepflow_files

needs_sha256sum = pytest.mark.skipif(shutil.which("sha256sum") is None, reason="needs GNU sha256sum")


def context(tmp_path: Path, job_type: str, progress: list[int] | None = None, **parameters: Any) -> JobContext:
    raw = [{"id": key, "type": "string", "value": value} for key, value in parameters.items()]
    return JobContext(job_id=1, job_type=job_type, raw_parameters=raw, work_dir=tmp_path / "work",
                      progress_callback=progress.append if progress is not None else None)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A nested folder of 300 small files, a few with awkward names, and a symlink loop."""
    root = tmp_path / "data"
    for index in range(300):
        folder = root / f"dir{index % 7}" / f"sub{index % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".txt" if index % 2 else ".bin"
        (folder / f"file{index:03d}{suffix}").write_bytes(f"content {index}\n".encode() * (index + 1))
    (root / "with space.TXT").write_text("spaces\n")
    (root / "back\\slash.txt").write_text("backslash\n")
    (root / "dir0" / "loop").symlink_to(root, target_is_directory=True)  # must not be followed
    return root


def sha256sum_check(manifest: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``sha256sum --check --strict manifest`` run in ``cwd`` (the manifest's paths are relative to it)."""
    return subprocess.run(["sha256sum", "--check", "--strict", str(manifest)], cwd=cwd, capture_output=True,
                          text=True, check=False)


def run_checksum_folder(tmp_path: Path, tree: Path, manifest: Path) -> dict[str, Any]:
    """Run the three steps the way the engine chains them: list, one checksum per file, one manifest."""
    listed = normalize_result(stepflow_files.list_files(context(tmp_path, "list_files", folder=str(tree))))
    checksums = [normalize_result(stepflow_files.checksum(
        context(tmp_path, "checksum", source_path=path, root=str(tree)))) for path in listed.destination_paths]
    paths = [path for result in checksums for path in result.destination_paths]
    written = normalize_result(stepflow_files.write_manifest(context(
        tmp_path, "write_manifest", source_paths=paths, manifest=str(manifest), root=str(tree))))
    return {"listed": listed, "checksums": checksums, "written": written}


def test_list_files_walks_recursively_sorted_files_only(tmp_path: Path, tree: Path) -> None:
    result = normalize_result(stepflow_files.list_files(context(tmp_path, "list_files", folder=str(tree))))
    paths = result.destination_paths
    assert len(paths) == 302
    assert all(os.path.isabs(path) and os.path.isfile(path) for path in paths)
    assert len(set(paths)) == len(paths)  # the symlinked folder was not entered
    assert not any("/loop/" in path for path in paths)
    assert paths == sorted(paths)


def test_list_files_keeps_only_the_given_suffixes(tmp_path: Path, tree: Path) -> None:
    ctx = context(tmp_path, "list_files", folder=str(tree), suffixes=[".txt"])
    paths = normalize_result(stepflow_files.list_files(ctx)).destination_paths
    assert len(paths) == 152  # 150 odd files, "with space.TXT" (case-insensitive), "back\slash.txt"
    assert all(path.lower().endswith(".txt") for path in paths)


def test_list_files_names_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"list_files: folder '{missing}' does not exist"):
        stepflow_files.list_files(context(tmp_path, "list_files", folder=str(missing)))


def test_checksum_outputs_sha256_and_relative_path(tmp_path: Path, tree: Path) -> None:
    path = tree / "dir3" / "sub1" / "file010.bin"
    result = normalize_result(stepflow_files.checksum(
        context(tmp_path, "checksum", source_path=str(path), root=str(tree))))
    assert result.destination_paths == [str(path)]
    outputs = {item["id"]: item["value"] for item in result.outputs}
    assert outputs == {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                       "relative_path": "dir3/sub1/file010.bin"}
    without_root = normalize_result(stepflow_files.checksum(context(tmp_path, "checksum", source_path=str(path))))
    assert {item["id"]: item["value"] for item in without_root.outputs}["relative_path"] == "file010.bin"


def test_checksum_reports_progress_on_a_large_file_and_stops_when_cancelled(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(stepflow_files.LARGE_FILE + 3 * stepflow_files.BLOCK_SIZE)
    progress: list[int] = []
    ctx = context(tmp_path, "checksum", progress, source_path=str(big))
    outputs = {item["id"]: item["value"] for item in normalize_result(stepflow_files.checksum(ctx)).outputs}
    assert outputs["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert progress and progress[-1] == 100 and progress == sorted(progress)

    cancelled = threading.Event()
    cancelled.set()
    ctx = JobContext(job_id=2, job_type="checksum", raw_parameters=[{"id": "source_path", "value": str(big)}],
                     work_dir=tmp_path, cancelled=cancelled)
    with pytest.raises(JobCancelled):
        stepflow_files.checksum(ctx)


def test_checksum_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checksum: file '/no/such/file' does not exist"):
        stepflow_files.checksum(context(tmp_path, "checksum", source_path="/no/such/file"))
    with pytest.raises(ValueError, match="missing required parameter 'source_path'"):
        stepflow_files.checksum(context(tmp_path, "checksum"))


@needs_sha256sum
def test_the_manifest_verifies_with_sha256sum(tmp_path: Path, tree: Path) -> None:
    manifest = tmp_path / "out" / "nested" / "data.sha256"  # parent folders are created
    results = run_checksum_folder(tmp_path, tree, manifest)
    assert results["written"].destination_paths == [str(manifest)]
    assert results["written"].outputs == [{"id": "file_count", "type": "number", "value": 302}]
    lines = manifest.read_text().splitlines()
    assert len(lines) == 302
    names = [line.split("  ", 1)[1] for line in lines if not line.startswith("\\")]
    assert names == sorted(names)
    assert "dir0/sub0/file000.bin" in names
    check = sha256sum_check(manifest, tree)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 302

    (tree / "dir1" / "sub1" / "file001.txt").write_text("tampered\n")
    check = sha256sum_check(manifest, tree)
    assert check.returncode != 0
    assert "dir1/sub1/file001.txt: FAILED" in check.stdout


@needs_sha256sum
def test_a_rerun_leaves_the_old_manifest_out(tmp_path: Path, tree: Path) -> None:
    manifest = tree / "MANIFEST.sha256"  # inside the folder it describes
    run_checksum_folder(tmp_path, tree, manifest)
    results = run_checksum_folder(tmp_path, tree, manifest)  # now list_files sees the first manifest
    assert str(manifest) in results["listed"].destination_paths
    assert "MANIFEST.sha256" not in manifest.read_text()
    check = sha256sum_check(manifest, tree)
    assert check.returncode == 0, check.stdout + check.stderr


def test_write_manifest_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path, tree: Path) -> None:
    manifest = tmp_path / "m.sha256"
    manifest.write_text("old content\n")
    files = [str(tree / "with space.TXT")]
    stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=files,
                                          manifest=str(manifest), root=str(tree)))
    digest = hashlib.sha256(b"spaces\n").hexdigest()
    assert manifest.read_text() == f"{digest}  with space.TXT\n"
    assert sorted(os.listdir(tmp_path)) == ["data", "m.sha256"]


def test_write_manifest_names_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="write_manifest: file '/gone' does not exist"):
        stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=["/gone"],
                                              manifest=str(tmp_path / "m")))
    assert not (tmp_path / "m").exists()


def test_the_plugin_loads_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    # Needs the plugin installed: pip install -e plugins/stepflow-files
    monkeypatch.setenv("STEPFLOW_LOAD_PLUGINS", "files")
    registry = load_registry(get_plugin_manager())
    assert registry.failures == []
    info = next(info for info in registry.plugins if info.name == "files")
    assert info.version == stepflow_files.__version__
    assert info.job_types == ["list_files", "checksum", "write_manifest"]
    assert registry.workers["checksum"] is stepflow_files.checksum
    assert registry.job_types["write_manifest"].plugin == "files"
    [(plugin, source)] = registry.workflow_sources
    assert plugin == "files"
    workflows = json.loads(Path(source).read_text())["workflows"]
    assert [workflow["identifier"] for workflow in workflows] == ["checksum_folder"]


def test_the_shipped_workflow_is_the_teams_definition() -> None:
    shipped = json.loads(stepflow_files.WORKFLOWS.read_text())["workflows"][0]
    root = Path(__file__).resolve().parents[3] / "workflows.json"
    if not root.exists():
        pytest.skip("the plugin is tested outside the stepflow-tui repository")
    team = next(workflow for workflow in json.loads(root.read_text())["workflows"]
                if workflow["identifier"] == "checksum_folder")
    assert shipped == team


def test_the_shipped_workflows_validate() -> None:
    from stepflow_tui.core.definitions import load_definitions

    [definition] = load_definitions(stepflow_files.WORKFLOWS)
    assert definition.identifier == "checksum_folder"
    assert [step.name for step in definition.steps] == ["list_files", "checksum", "write_manifest"]
    assert {parameter.id for parameter in definition.start_parameters} == {"source_dir", "manifest"}


def _over_the_wire(result: Any) -> Any:
    """A job's result as the backend gets it: encoded by the worker, decoded from the bytes."""
    from stepflow_tui.core import protocol
    completed = protocol.JobCompleted(1, destination_paths=result.destination_paths, parameters=result.outputs)
    return protocol.decode_response(protocol.COMPLETED_QUEUE, completed.encode())


@needs_sha256sum
def test_names_that_are_not_utf8_go_through_list_checksum_and_manifest(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as handle:  # Latin-1, not UTF-8
        handle.write(b"latin\n")
    (root / "ok.txt").write_text("ok\n")
    listed = _over_the_wire(normalize_result(stepflow_files.list_files(
        context(tmp_path, "list_files", folder=str(root)))))
    assert [os.path.basename(p) for p in listed.destination_paths] == ["caf\udce9.txt", "ok.txt"]
    paths = []
    for path in listed.destination_paths:
        checked = _over_the_wire(normalize_result(stepflow_files.checksum(
            context(tmp_path, "checksum", source_path=path, root=str(root)))))
        paths += checked.destination_paths
    assert paths == listed.destination_paths
    manifest = tmp_path / "m.sha256"
    stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=paths,
                                          manifest=str(manifest), root=str(root)))
    assert manifest.read_bytes().splitlines()[0].endswith(b"  caf\xe9.txt")  # the name's own bytes
    check = subprocess.run(["sha256sum", "--check", "--strict", str(manifest)], cwd=root, capture_output=True,
                           check=False)  # bytes: sha256sum prints the name as it is
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(b": OK") == 2


# A fifo stands for a device node: a test must never risk replacing a real one (/dev/null).
@pytest.mark.parametrize("target", ["folder", "symlink", "fifo"])
def test_write_manifest_refuses_a_target_that_is_not_a_regular_file(tmp_path: Path, target: str) -> None:
    source = tmp_path / "a.txt"
    source.write_text("a\n")
    if target == "folder":
        path = tmp_path / "out"
        path.mkdir()
    elif target == "symlink":
        path = tmp_path / "link"
        path.symlink_to(source)
    else:
        path = tmp_path / "fifo"
        os.mkfifo(path)
    with pytest.raises(IsADirectoryError, match="exists and is not a regular file"):
        stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=[str(source)],
                                              manifest=str(path)))
    assert source.read_text() == "a\n"


def test_file_jobs_stay_inside_the_allowed_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "in.txt").write_text("in\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret\n")
    (allowed / "link.txt").symlink_to(outside / "secret.txt")  # a way out
    monkeypatch.setenv("STEPFLOW_ALLOW_PATHS", str(allowed))

    listed = normalize_result(stepflow_files.list_files(context(tmp_path, "list_files", folder=str(allowed))))
    assert listed.destination_paths == [str(allowed / "in.txt")]
    with pytest.raises(PermissionError, match="outside the allowed folders"):
        stepflow_files.list_files(context(tmp_path, "list_files", folder=str(outside)))
    for source in (outside / "secret.txt", allowed / "link.txt"):
        with pytest.raises(PermissionError, match="outside the allowed folders"):
            stepflow_files.checksum(context(tmp_path, "checksum", source_path=str(source)))
    with pytest.raises(PermissionError, match="outside the allowed folders"):
        stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=[str(allowed / "in.txt")],
                                              manifest=str(outside / "m.sha256")))
    with pytest.raises(PermissionError, match="outside the allowed folders"):
        stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=[str(outside / "secret.txt")],
                                              manifest=str(allowed / "m.sha256")))
    assert sorted(os.listdir(outside)) == ["secret.txt"] and not (allowed / "m.sha256").exists()
    stepflow_files.write_manifest(context(tmp_path, "write_manifest", source_paths=[str(allowed / "in.txt")],
                                          manifest=str(allowed / "m.sha256")))
    assert (allowed / "m.sha256").read_text().endswith("  in.txt\n")
