"""The Store: a State persisted in TinyDB files, one owner at a time, flushed in batches.

Layout (see docs/state.md):

    <path>                        index, a TinyDB file: table "meta" (format, next ids, shard list) and table
                                  "workflows" (one document per workflow, without its definition and its
                                  steps' job_ids and counts)
    <path>.d/jobs-<n>.json        job shards, TinyDB files with table "jobs": the jobs with id // shard_size == n
    <path>.d/definition-<w>.json  a workflow's definition (TinyDB table "definition", doc id w), written once
    <path>.lock                   the lock file (flock), with the owner's pid

A flush rewrites only the shards that hold dirty (or deleted) jobs, then the index if a workflow or the next
ids changed. Steps' ``job_ids`` and ``counts`` and the workflow's ``updated_at`` (the time of its latest job
status change) are rebuilt from the jobs on load, so a job status change never rewrites the index.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from stepflow_tui.core.model import Job, JobStatus, State, Workflow, empty_counts

from .errors import StoreCorrupt, StoreError
from .lockfile import LockFile
from .storage import (
    AtomicJSONStorage,
    atomic_write,
    dumps,
    fsync_dir,
    keep_corrupt_copy,
    remove_temp_files,
    tinydb_text,
)

log = logging.getLogger(__name__)

#: Version of the file layout written in the index's meta document; a newer one is refused. 2: definitions
#: in files of their own (format 1 kept them in the index; still read, rewritten as 2 by the next flush).
FORMAT_VERSION = 2
#: Jobs per shard file in a new state (the index's ``meta.shard_size``; format 1 files used 1,000): a flush
#: rewrites at most this many jobs per dirty shard. 1,000 made a flush of a few dozen jobs write ~700 KB.
SHARD_SIZE = 250
#: Jobs whose serialised shard documents stay in memory between flushes (whole shards, by recency of use).
CACHED_JOBS = 8000

_SHARD_NAME = re.compile(r"^jobs-(\d+)\.json$")
_DEFINITION_NAME = re.compile(r"^definition-(\d+)\.json$")
_STATUSES = {status.value: status for status in JobStatus}
#: Job fields left out of a job's document when they hold their default (a queued job's document is half
#: the size; missing keys take the dataclass defaults on load). ``status`` is always written, for readers.
_JOB_DEFAULTS = {
    f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    for f in fields(Job)
    if (f.default is not MISSING or f.default_factory is not MISSING) and f.name != "status"
}


def default_path() -> Path:
    """The state file used when none is given: ``$STEPFLOW_DB`` or ``~/.local/state/stepflow/state.json``."""
    configured = os.environ.get("STEPFLOW_DB")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".local" / "state" / "stepflow" / "state.json"


def read_state(path: str | os.PathLike[str]) -> State:
    """Load the State at ``path`` without owning it: no lock, nothing written (for ``stepflow status``).

    Safe while another process owns and flushes the file: every file is replaced atomically, so each is
    read whole; jobs may be one flush ahead of the index. A missing file gives an empty State. Raises
    ``StoreCorrupt`` (no copy is made) or ``StoreError``.
    """
    store = Store(path)
    return _without_gc(lambda: store._load(owner=False))


def _without_gc(load: Callable[[], State]) -> State:
    # Loading allocates ~10 containers per job and none is garbage: the cyclic GC would only rescan them
    # again and again (a third of the load time at 100,000 jobs).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        state = load()
        # The loaded State lives as long as the process: move it (and whatever exists now) out of the
        # collector's reach, or every full collection scans it again — a 0.6 s pause at 100,000 jobs, during
        # which the workbench froze (bench/tui.py). Jobs are freed by reference counting when deleted.
        gc.freeze()
        return state
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class FlushStats:
    """Counters of the flushes that wrote something (a flush with nothing to persist is not counted)."""

    flushes: int = 0
    bytes_written: int = 0
    files_written: int = 0
    last_flush_seconds: float = 0.0


@dataclass
class _Plan:
    """What one flush writes, serialised under the state lock, written after releasing it."""

    shards: dict[int, str | None] = field(default_factory=dict)  # None: the shard is now empty, remove it
    definitions: dict[int, str | None] = field(default_factory=dict)  # None: workflow deleted, remove it
    index: str | None = None
    meta: dict[str, Any] | None = None


def _job_text(job: Job) -> str:
    """A job's document: ``Job.to_dict()`` without the fields that hold their default."""
    document = job.to_dict()
    for key, default in _JOB_DEFAULTS.items():
        value = document[key]
        # ``type`` too: 0 == False == 0.0, but a default is only dropped if it reads back the same.
        if value == default and type(value) is type(default):
            del document[key]
    return dumps(document)


def _shard_entry(job: Job) -> str:
    """A job's entry in its shard's table: ``"<id>":<document>``."""
    return f'"{job.id}":{_job_text(job)}'


def _job_from_document(document: dict[str, Any]) -> Job:
    # Job.from_dict copies the dict and looks the status up through the enum: this is the hot loop of a
    # load, and the parsed document is ours to reuse.
    document["status"] = _STATUSES[document["status"]]
    return Job(**document)


def _workflow_body(workflow: Workflow) -> tuple[str, str]:
    """A workflow's index document without its definition, job lists, counts and ``updated_at`` (which
    changes with every job status change and is rebuilt from the jobs on load), and its ``updated_at``."""
    document = workflow.to_dict()
    del document["definition"]
    updated_at = document.pop("updated_at")
    for step in document["steps"]:
        step.pop("job_ids", None)
        step.pop("counts", None)
    return dumps(document), updated_at


def _workflow_text(body: str, updated_at: str) -> str:
    return f'{body[:-1]},"updated_at":{dumps(updated_at)}}}'


class Store:
    """Persistence of one ``State`` in TinyDB files. See the module docstring for the layout.

    ``lock`` guards the State: hold it while reading or mutating the State from any thread. ``flush`` takes
    it only while serialising what is dirty and writes the files after releasing it (when the caller does
    not hold it itself); flushes never interleave.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.shard_dir = self.path.with_name(self.path.name + ".d")
        self.lock = threading.RLock()
        self.stats = FlushStats()
        # Serialises flushes; always taken after ``lock`` (never the other way round), never held while
        # waiting for ``lock``.
        self._flush_lock = threading.Lock()
        self._lockfile = LockFile(self.path)
        self._opened = False
        self._owner = True  # False while read_state loads: no copies, no cleanup
        # What is on disk (or about to be), owned by flush under _flush_lock:
        self._shard_members: dict[int, set[int]] = {}  # shard -> job ids persisted in it
        # shard -> job id -> the job's entry in the shard's JSON (see _shard_entry)
        self._shard_cache: OrderedDict[int, dict[int, str]] = OrderedDict()
        self._job_workflow: dict[int, int] = {}  # job id -> workflow id, to drop a deleted workflow's jobs
        # workflow id -> (its index document without updated_at, updated_at), as the next index holds them
        self._workflow_docs: dict[int, tuple[str, str]] = {}
        self._definitions: dict[int, Any] = {}  # workflow id -> the definition object its file holds
        self._written_meta: dict[str, Any] | None = None
        self._pending_shards: set[int] = set()  # shards whose file differs from memory (or failed to write)
        self._pending_definitions: set[int] = set()  # definition files to write (or remove) still
        self._pending_index = False
        self._shard_dir_made = False  # the data folder exists (checked once: a mkdir per flush shows)
        self.shard_size = SHARD_SIZE  # jobs per shard: that of the files once loaded

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ open / close

    def open(self) -> State:
        """Take the lock file, load every workflow and job, and return the State.

        Raises ``StoreLocked`` if another Store owns the file, ``StoreCorrupt`` if a file is unreadable (the
        file is kept and a ``.corrupt-<time>`` copy made), ``StoreError`` for other problems (newer format,
        not a stepflow file, permissions). A missing state file gives an empty State.
        """
        with self.lock:
            if self._opened:
                raise StoreError(f"state file {self.path} is already open in this Store")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"cannot create the folder of state file {self.path}: {error.strerror}"
                ) from error
            self._lockfile.acquire()
            try:
                state = _without_gc(self._load)
            except BaseException:
                self._lockfile.release()
                raise
            self._opened = True
            return state

    def close(self) -> None:
        """Release the lock file (idempotent). Waits for a flush that is writing."""
        with self._flush_lock:
            self._opened = False
            self._lockfile.release()

    # ------------------------------------------------------------------ load

    def _shard_path(self, shard: int) -> Path:
        return self.shard_dir / f"jobs-{shard}.json"

    def _definition_path(self, workflow_id: int) -> Path:
        return self.shard_dir / f"definition-{workflow_id}.json"

    def _data_files(self) -> tuple[dict[int, Path], dict[int, Path]]:
        """The shard files and the definition files in the data folder, by number."""
        shards: dict[int, Path] = {}
        definitions: dict[int, Path] = {}
        if not self.shard_dir.is_dir():
            return shards, definitions
        for entry in self.shard_dir.iterdir():
            match = _SHARD_NAME.match(entry.name)
            if match:
                shards[int(match.group(1))] = entry
                continue
            match = _DEFINITION_NAME.match(entry.name)
            if match:
                definitions[int(match.group(1))] = entry
        return shards, definitions

    def _load(self, owner: bool = True) -> State:
        """Load everything. ``owner=False`` (``read_state``): write nothing, and tolerate the changes a
        live owner makes while we read (a shard removed, shards written before their index)."""
        self._owner = owner
        if owner:
            # We own the lock: temp files are leftovers of a writer that died mid-write.
            remove_temp_files(self.path.parent, prefix=f".{self.path.name}.")
            remove_temp_files(self.shard_dir)
        shard_files, definition_files = self._data_files()
        data = AtomicJSONStorage(self.path, keep_copies=owner).read()
        if data is None:
            if shard_files and owner:
                # Starting empty would drop these jobs and reuse their ids: refuse instead.
                raise StoreCorrupt(str(self.path), f"the file is missing but {self.shard_dir} holds jobs")
            return State()
        meta = self._read_meta(data)
        self.shard_size = meta.get("shard_size", 1000)  # format 1 had no shard_size: 1,000 then
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise self._corrupt(self.path, f"invalid shard_size {self.shard_size!r} in the meta document")
        state = State()
        for doc_id, document in data.get("workflows", {}).items():
            workflow = self._read_workflow(doc_id, document, definition_files)
            if workflow is not None:
                state.workflows[workflow.id] = workflow

        listed = {int(shard) for shard in meta.get("shards", [])}
        missing = sorted(listed - set(shard_files))
        if missing and owner:
            raise StoreCorrupt(
                str(self._shard_path(missing[0])), "the job shard listed in the index is missing"
            )

        steps = {(wf.id, step.id): step for wf in state.workflows.values() for step in wf.steps}
        for step in steps.values():
            step.job_ids = []
            step.counts = empty_counts()
        latest: dict[int, str] = {}  # workflow id -> time of its latest job status change
        max_job_id = 0
        index_next_job_id = int(meta.get("next_job_id", 1 << 62))
        max_workflow_id = max([*state.workflows, *definition_files], default=0)
        orphans = 0
        for shard in sorted(shard_files):
            jobs = self._read_shard(shard, shard_files[shard])
            members: set[int] = set()
            for job in jobs:
                max_job_id = max(max_job_id, job.id)
                max_workflow_id = max(max_workflow_id, job.workflow_id)
                step = steps.get((job.workflow_id, job.step_id))
                if step is None or job.id >= index_next_job_id:
                    # Written by a flush whose index never landed (it died, or a live owner is between
                    # its shard and index writes), or left by a half-done delete: not part of the state
                    # the index describes; the next flush rewrites the shard without it.
                    orphans += 1
                    self._pending_shards.add(shard)
                    continue
                state.jobs[job.id] = job
                step.job_ids.append(job.id)
                step.counts[job.status.value] += 1
                step.counts["total"] += 1
                members.add(job.id)
                self._job_workflow[job.id] = job.workflow_id
                try:
                    changed = job.history[-1][1]
                    if changed > latest.get(job.workflow_id, ""):
                        latest[job.workflow_id] = changed
                except (IndexError, TypeError, KeyError):
                    pass  # no history (or not the engine's): updated_at stays as the index has it
            if members:
                self._shard_members[shard] = members
        for wf_id, changed in latest.items():
            # The index is not rewritten when only updated_at changed (every job status change sets it
            # to that change's time): the jobs, flushed with it, hold the newer value.
            workflow = state.workflows[wf_id]
            if not isinstance(workflow.updated_at, str) or changed > workflow.updated_at:
                workflow.updated_at = changed
        if orphans:
            # Expected while reading a live owner's files; after a crash, worth a line in the log.
            log.log(
                logging.WARNING if owner else logging.DEBUG,
                "%s: ignored %d jobs the index does not know (an interrupted flush or delete)",
                self.path,
                orphans,
            )
        if owner:
            # Definitions of workflows the index does not list: written by a flush whose index never
            # landed, or left by a delete interrupted after its index. Their ids are not reused (above).
            for wf_id, path in definition_files.items():
                if wf_id not in state.workflows:
                    path.unlink(missing_ok=True)
        # Ids are never reused, even those of jobs written by a flush whose index never landed.
        state.next_job_id = max(int(meta.get("next_job_id", 1)), max_job_id + 1)
        state.next_workflow_id = max(int(meta.get("next_workflow_id", 1)), max_workflow_id + 1)
        self._written_meta = meta
        return state

    def _read_workflow(self, doc_id: str, document: Any, definition_files: dict[int, Path]) -> Workflow | None:
        """A workflow of the index, with its definition (inline in format 1, in its own file in format 2).
        None if its definition file is missing while reading a live owner's files (it was just deleted)."""
        try:
            values = dict(document)
            workflow_id = int(values["id"])
        except (KeyError, TypeError, ValueError) as error:
            raise self._corrupt(self.path, f"workflow document {doc_id}: {error!r}") from None
        if "definition" not in values:
            path = definition_files.get(workflow_id, self._definition_path(workflow_id))
            definitions = AtomicJSONStorage(path, keep_copies=self._owner).read()
            if definitions is None:
                if not self._owner:
                    return None
                raise StoreCorrupt(str(path), f"the definition of workflow {workflow_id} listed in the index "
                                              "is missing")
            try:
                values["definition"] = definitions["definition"][str(workflow_id)]
            except (KeyError, TypeError):
                raise self._corrupt(path, f"no definition of workflow {workflow_id}") from None
            self._definitions[workflow_id] = values["definition"]
        try:
            return Workflow.from_dict(values)
        except (KeyError, TypeError, ValueError) as error:
            raise self._corrupt(self.path, f"workflow document {doc_id}: {error!r}") from None

    def _corrupt(self, path: Path, detail: str) -> StoreCorrupt:
        return StoreCorrupt(str(path), detail, keep_corrupt_copy(path) if self._owner else None)

    def _read_meta(self, data: dict[str, dict[str, Any]]) -> dict[str, Any]:
        meta_table = data.get("meta")
        if not meta_table:
            if any(data.values()):
                raise StoreError(
                    f"{self.path} is not a stepflow state file (no meta table); use another --db"
                )
            return {"format": FORMAT_VERSION, "shard_size": SHARD_SIZE}
        meta = meta_table.get("1")
        if not isinstance(meta, dict) or not isinstance(meta.get("format"), int):
            raise self._corrupt(self.path, "the meta document has no format version")
        if meta["format"] > FORMAT_VERSION:
            raise StoreError(
                f"state file {self.path} has format version {meta['format']}, newer than this stepflow "
                f"understands ({FORMAT_VERSION}); upgrade stepflow or use another --db"
            )
        return meta

    def _read_shard(self, shard: int, path: Path) -> list[Job]:
        # The shard's TinyDB table is read straight from the storage: TinyDB's Table.all() copies every
        # document into a Document, which costs as much as parsing the file.
        data = AtomicJSONStorage(path, keep_copies=self._owner).read() or {}
        jobs = []
        for doc_id, document in data.get("jobs", {}).items():
            try:
                job = _job_from_document(document)
            except (KeyError, TypeError, ValueError) as error:
                raise self._corrupt(path, f"job document {doc_id}: {error!r}") from None
            if str(job.id) != doc_id or job.id // self.shard_size != shard:
                raise self._corrupt(path, f"job document {doc_id} holds job {job.id}")
            jobs.append(job)
        jobs.sort(key=lambda job: job.id)
        return jobs

    # ------------------------------------------------------------------ flush

    def flush(self, state: State) -> None:
        """Persist what ``state`` marks dirty or deleted, atomically per file, then clear the marks.

        Shards and definitions are written before the index. Raises ``StoreError`` if a file cannot be
        written; what was not written is kept in memory and written by the next flush.
        """
        started = time.perf_counter()
        with self.lock:
            if not self._opened:
                raise StoreError(f"state file {self.path} is not open")
            self._flush_lock.acquire()  # waits for the previous flush's writes
            try:
                plan = self._plan(state)
            except BaseException:
                self._flush_lock.release()
                raise
        try:
            if plan.shards or plan.definitions or plan.index is not None:
                self._write(plan, started)
        finally:
            self._flush_lock.release()

    def _cached_shard(self, shard: int, state: State) -> dict[int, str]:
        """The serialised documents of a shard, serialising its jobs from the State on first use."""
        cache = self._shard_cache.get(shard)
        if cache is not None:
            self._shard_cache.move_to_end(shard)
            return cache
        members = self._shard_members.setdefault(shard, set())
        cache = {}
        for job_id in sorted(members):
            job = state.jobs.get(job_id)
            if job is None:  # dropped from the State without a delete mark: the State is the truth
                members.discard(job_id)
                self._job_workflow.pop(job_id, None)
                continue
            cache[job_id] = _shard_entry(job)
        self._shard_cache[shard] = cache
        return cache

    def _plan(self, state: State) -> _Plan:
        plan = _Plan()
        index_dirty = self._pending_index
        deleted_workflows = set(state.deleted_workflows)
        deleted_workflows |= {wf_id for wf_id in state.dirty_workflows if wf_id not in state.workflows}
        deleted_jobs = set(state.deleted_jobs)
        deleted_jobs |= {job_id for job_id in state.dirty_jobs if job_id not in state.jobs}
        if deleted_workflows:
            index_dirty = True
            for wf_id in deleted_workflows:
                self._workflow_docs.pop(wf_id, None)
                if self._definitions.pop(wf_id, None) is not None or wf_id in self._pending_definitions:
                    self._pending_definitions.add(wf_id)  # its file goes after the index
            # Rare (an operator's delete): a scan of what is persisted is fine.
            deleted_jobs |= {j for j, wf in self._job_workflow.items() if wf in deleted_workflows}
            deleted_jobs |= {j for j, job in state.jobs.items() if job.workflow_id in deleted_workflows}
        for job_id in deleted_jobs:
            shard = job_id // self.shard_size
            self._job_workflow.pop(job_id, None)
            members = self._shard_members.get(shard)
            if members is not None and job_id in members:
                members.discard(job_id)
                cache = self._shard_cache.get(shard)
                if cache is not None:
                    cache.pop(job_id, None)
                self._pending_shards.add(shard)
        for job_id in state.dirty_jobs:
            if job_id in deleted_jobs:
                continue
            job = state.jobs[job_id]
            if job.workflow_id not in state.workflows:
                continue  # would be an orphan on load anyway
            shard = job_id // self.shard_size
            cache = self._cached_shard(shard, state)
            cache[job_id] = _shard_entry(job)
            self._shard_members[shard].add(job_id)
            self._job_workflow[job_id] = job.workflow_id
            self._pending_shards.add(shard)
        for wf_id in state.dirty_workflows:
            if wf_id in deleted_workflows:
                continue
            body, updated_at = _workflow_body(state.workflows[wf_id])
            known = self._workflow_docs.get(wf_id)
            # A job status change marks its workflow, but often changes nothing in the index but updated_at,
            # which the load rebuilds from the jobs: then the index (and its two fsyncs) is not rewritten.
            if known is None or known[0] != body:
                index_dirty = True
            self._workflow_docs[wf_id] = (body, updated_at)

        for shard in sorted(self._pending_shards):
            if self._shard_members.get(shard):
                cache = self._cached_shard(shard, state)
                # tinydb_text's layout, from entries that carry their doc id already (a flush of a few
                # jobs joins the 1,000 entries of their shard: this is most of its serialising).
                plan.shards[shard] = '{"jobs":{' + ",".join([cache[job_id] for job_id in sorted(cache)]) + "}}"
            else:
                self._shard_members.pop(shard, None)
                self._shard_cache.pop(shard, None)
                plan.shards[shard] = None

        meta = {
            "format": FORMAT_VERSION,
            "next_workflow_id": state.next_workflow_id,
            "next_job_id": state.next_job_id,
            "shard_size": self.shard_size,
            "shards": sorted(shard for shard, members in self._shard_members.items() if members),
        }
        if index_dirty or meta != self._written_meta:
            documents = []
            for wf_id in sorted(state.workflows):
                workflow = state.workflows[wf_id]
                known = self._workflow_docs.get(wf_id)
                if known is None:  # loaded and not changed since: serialised once, then kept
                    known = self._workflow_docs[wf_id] = _workflow_body(workflow)
                documents.append((wf_id, _workflow_text(*known)))
                if self._definitions.get(wf_id) is not workflow.definition:
                    # New since the last index (or loaded from a format 1 index): its file comes first.
                    self._pending_definitions.add(wf_id)
            plan.index = tinydb_text({"meta": [(1, dumps(meta))], "workflows": documents})
            plan.meta = meta
            self._pending_index = True
        else:
            for wf_id in state.dirty_workflows:
                workflow = state.workflows.get(wf_id)
                if workflow is not None and self._definitions.get(wf_id) is not workflow.definition:
                    self._pending_definitions.add(wf_id)  # replaced in place: never by the engine
        for wf_id in sorted(self._pending_definitions):
            workflow = state.workflows.get(wf_id)
            if workflow is None:
                plan.definitions[wf_id] = None
            else:
                plan.definitions[wf_id] = tinydb_text({"definition": [(wf_id, dumps(workflow.definition))]})
                self._definitions[wf_id] = workflow.definition

        state.dirty_jobs.clear()
        state.dirty_workflows.clear()
        state.deleted_jobs.clear()
        state.deleted_workflows.clear()
        return plan

    def _write(self, plan: _Plan, started: float) -> None:
        files = 0
        written = 0
        target = self.path
        try:
            texts = [(self._shard_path(shard), text) for shard, text in plan.shards.items() if text is not None]
            texts += [(self._definition_path(wf_id), text) for wf_id, text in plan.definitions.items()
                      if text is not None]
            if texts:
                target = self.shard_dir
                if not self._shard_dir_made:
                    self.shard_dir.mkdir(parents=True, exist_ok=True)
                    self._shard_dir_made = True
                for target, text in texts:
                    data = text.encode("utf-8")
                    atomic_write(target, data, sync_dir=False)
                    files += 1
                    written += len(data)
                target = self.shard_dir
                fsync_dir(self.shard_dir)  # shards and definitions durable before the index listing them
                self._pending_shards -= {shard for shard, text in plan.shards.items() if text is not None}
                self._pending_definitions -= {wf for wf, text in plan.definitions.items() if text is not None}
            if plan.index is not None:
                target = self.path
                data = plan.index.encode("utf-8")
                atomic_write(self.path, data)
                files += 1
                written += len(data)
                self._written_meta = plan.meta
                self._pending_index = False
            # Emptied shards and deleted workflows' definitions go last: until the index stops listing
            # them they must exist.
            for shard, text in plan.shards.items():
                if text is None:
                    target = self._shard_path(shard)
                    target.unlink(missing_ok=True)
                    self._pending_shards.discard(shard)
            for wf_id, text in plan.definitions.items():
                if text is None and not self._pending_index:
                    target = self._definition_path(wf_id)
                    target.unlink(missing_ok=True)
                    self._pending_definitions.discard(wf_id)
        except OSError as error:
            self._shard_dir_made = False  # perhaps removed under us: made again by the next flush
            raise StoreError(f"cannot write state file {target}: {error.strerror or error}") from error
        finally:
            self.stats.flushes += 1
            self.stats.files_written += files
            self.stats.bytes_written += written
            self.stats.last_flush_seconds = time.perf_counter() - started
        self._evict()

    def _evict(self) -> None:
        # Keep the serialised documents of the most recently used shards only: bounded memory, and the
        # active shards (new jobs get the highest ids) rarely need serialising again.
        for shard in list(self._shard_cache):
            if len(self._shard_cache) <= max(8, CACHED_JOBS // self.shard_size):
                break
            if shard not in self._pending_shards:
                del self._shard_cache[shard]
