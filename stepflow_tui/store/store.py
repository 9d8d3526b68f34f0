"""The Store: a State persisted in TinyDB files, one owner at a time, flushed in batches.

Layout (see docs/state.md):

    <path>                    index, a TinyDB file: table "meta" (format, next ids, shard list) and table
                              "workflows" (one document per workflow, without its steps' job_ids and counts)
    <path>.d/jobs-<n>.json    job shards, TinyDB files with table "jobs": the jobs with id // 1000 == n
    <path>.lock               the lock file (flock), with the owner's pid

A flush rewrites only the shards that hold dirty (or deleted) jobs, then the index if a workflow or the next
ids changed. Steps' ``job_ids`` and ``counts`` are rebuilt from the jobs on load, so a job status change never
rewrites the index.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from tinydb import TinyDB

from stepflow_tui.core.model import Job, State, Workflow, empty_counts

from .errors import StoreCorrupt, StoreError
from .lockfile import LockFile
from .storage import (
    AtomicJSONStorage,
    atomic_write,
    fsync_dir,
    keep_corrupt_copy,
    remove_temp_files,
    tinydb_text,
)

log = logging.getLogger(__name__)

#: Version of the file layout written in the index's meta document; a newer one is refused.
FORMAT_VERSION = 1
#: Jobs per shard file: a flush rewrites at most this many jobs per dirty shard.
SHARD_SIZE = 1000
#: Shards whose serialised documents stay in memory between flushes (the active ones, by recency of use).
CACHED_SHARDS = 8

_SHARD_NAME = re.compile(r"^jobs-(\d+)\.json$")


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
    index: str | None = None
    meta: dict[str, Any] | None = None


def _workflow_document(workflow: Workflow) -> dict[str, Any]:
    # job_ids and counts are derived from the jobs on load: leaving them out keeps job changes off the index.
    document = workflow.to_dict()
    for step in document["steps"]:
        step.pop("job_ids", None)
        step.pop("counts", None)
    return document


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document)


def _workflow_text(workflow: Workflow, definitions: dict[int, tuple[dict[str, Any], str]]) -> str:
    """``_dump(_workflow_document(workflow))``, with the definition's JSON taken from ``definitions`` (workflow
    id -> (definition dict, its JSON)). A definition never changes once the workflow exists, but it can be
    big (a step listing 100,000 source paths): serialising it on every flush was most of a flush's time."""
    document = _workflow_document(workflow)
    keys = list(document)
    at = keys.index("definition")
    cached = definitions.get(workflow.id)
    if cached is None or cached[0] is not workflow.definition:
        cached = definitions[workflow.id] = (workflow.definition, _dump(workflow.definition))
    head = _dump({key: document[key] for key in keys[:at]})
    tail = _dump({key: document[key] for key in keys[at + 1:]})
    # The same bytes json.dumps gives for the whole document (default separators, same key order).
    return f'{head[:-1]}, "definition": {cached[1]}, {tail[1:]}'


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
        self._shard_cache: OrderedDict[int, dict[int, str]] = OrderedDict()  # shard -> job id -> JSON
        self._job_workflow: dict[int, int] = {}  # job id -> workflow id, to drop a deleted workflow's jobs
        self._workflow_json: dict[int, str] = {}  # workflow id -> JSON of its index document
        self._definition_json: dict[int, tuple[dict[str, Any], str]] = {}  # workflow id -> (definition, JSON)
        self._written_meta: dict[str, Any] | None = None
        self._pending_shards: set[int] = set()  # shards whose file differs from memory (or failed to write)
        self._pending_index = False

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

    def _shard_files(self) -> dict[int, Path]:
        if not self.shard_dir.is_dir():
            return {}
        found = {}
        for entry in self.shard_dir.iterdir():
            match = _SHARD_NAME.match(entry.name)
            if match:
                found[int(match.group(1))] = entry
        return found

    def _load(self, owner: bool = True) -> State:
        """Load everything. ``owner=False`` (``read_state``): write nothing, and tolerate the changes a
        live owner makes while we read (a shard removed, shards written before their index)."""
        self._owner = owner
        if owner:
            # We own the lock: temp files are leftovers of a writer that died mid-write.
            remove_temp_files(self.path.parent, prefix=f".{self.path.name}.")
            remove_temp_files(self.shard_dir)
        shard_files = self._shard_files()
        index = TinyDB(self.path, storage=AtomicJSONStorage, keep_copies=owner)
        data = index.storage.read()
        if data is None:
            if shard_files and owner:
                # Starting empty would drop these jobs and reuse their ids: refuse instead.
                raise StoreCorrupt(str(self.path), f"the file is missing but {self.shard_dir} holds jobs")
            return State()
        meta = self._read_meta(data)
        state = State()
        for document in index.table("workflows", cache_size=0).all():
            try:
                workflow = Workflow.from_dict(dict(document))
            except (KeyError, TypeError, ValueError) as error:
                raise self._corrupt(self.path, f"workflow document {document.doc_id}: {error!r}") from None
            state.workflows[workflow.id] = workflow
        index.close()

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
        max_job_id = 0
        index_next_job_id = int(meta.get("next_job_id", 1 << 62))
        max_workflow_id = max(state.workflows, default=0)
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
                step.counts[job.status.value] = step.counts.get(job.status.value, 0) + 1
                step.counts["total"] += 1
                members.add(job.id)
                self._job_workflow[job.id] = job.workflow_id
            if members:
                self._shard_members[shard] = members
        if orphans:
            # Expected while reading a live owner's files; after a crash, worth a line in the log.
            log.log(
                logging.WARNING if owner else logging.DEBUG,
                "%s: ignored %d jobs the index does not know (an interrupted flush or delete)",
                self.path,
                orphans,
            )
        # Ids are never reused, even those of jobs written by a flush whose index never landed.
        state.next_job_id = max(int(meta.get("next_job_id", 1)), max_job_id + 1)
        state.next_workflow_id = max(int(meta.get("next_workflow_id", 1)), max_workflow_id + 1)
        self._written_meta = meta
        return state

    def _corrupt(self, path: Path, detail: str) -> StoreCorrupt:
        return StoreCorrupt(str(path), detail, keep_corrupt_copy(path) if self._owner else None)

    def _read_meta(self, data: dict[str, dict[str, Any]]) -> dict[str, Any]:
        meta_table = data.get("meta")
        if not meta_table:
            if any(data.values()):
                raise StoreError(
                    f"{self.path} is not a stepflow state file (no meta table); use another --db"
                )
            return {"format": FORMAT_VERSION}
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
                job = Job.from_dict(document)
            except (KeyError, TypeError, ValueError) as error:
                raise self._corrupt(path, f"job document {doc_id}: {error!r}") from None
            if str(job.id) != doc_id or job.id // SHARD_SIZE != shard:
                raise self._corrupt(path, f"job document {doc_id} holds job {job.id}")
            jobs.append(job)
        jobs.sort(key=lambda job: job.id)
        return jobs

    # ------------------------------------------------------------------ flush

    def flush(self, state: State) -> None:
        """Persist what ``state`` marks dirty or deleted, atomically per file, then clear the marks.

        Shards are written before the index. Raises ``StoreError`` if a file cannot be written; what was not
        written is kept in memory and written by the next flush.
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
            if plan.shards or plan.index is not None:
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
            cache[job_id] = _dump(job.to_dict())
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
                self._workflow_json.pop(wf_id, None)
                self._definition_json.pop(wf_id, None)
            # Rare (an operator's delete): a scan of what is persisted is fine.
            deleted_jobs |= {j for j, wf in self._job_workflow.items() if wf in deleted_workflows}
            deleted_jobs |= {j for j, job in state.jobs.items() if job.workflow_id in deleted_workflows}
        for job_id in deleted_jobs:
            shard = job_id // SHARD_SIZE
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
            shard = job_id // SHARD_SIZE
            cache = self._cached_shard(shard, state)
            cache[job_id] = _dump(job.to_dict())
            self._shard_members[shard].add(job_id)
            self._job_workflow[job_id] = job.workflow_id
            self._pending_shards.add(shard)
        for wf_id in state.dirty_workflows:
            if wf_id not in deleted_workflows:
                self._workflow_json[wf_id] = _workflow_text(state.workflows[wf_id], self._definition_json)
                index_dirty = True

        for shard in sorted(self._pending_shards):
            if self._shard_members.get(shard):
                cache = self._cached_shard(shard, state)
                plan.shards[shard] = tinydb_text({"jobs": sorted(cache.items())})
            else:
                self._shard_members.pop(shard, None)
                self._shard_cache.pop(shard, None)
                plan.shards[shard] = None

        meta = {
            "format": FORMAT_VERSION,
            "next_workflow_id": state.next_workflow_id,
            "next_job_id": state.next_job_id,
            "shards": sorted(shard for shard, members in self._shard_members.items() if members),
        }
        if index_dirty or meta != self._written_meta:
            documents = []
            for wf_id in sorted(state.workflows):
                text = self._workflow_json.get(wf_id)
                if text is None:  # loaded and not changed since: serialised once, then cached
                    text = self._workflow_json[wf_id] = _workflow_text(state.workflows[wf_id],
                                                                        self._definition_json)
                documents.append((wf_id, text))
            plan.index = tinydb_text({"meta": [(1, _dump(meta))], "workflows": documents})
            plan.meta = meta
            self._pending_index = True

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
            shard_texts = {shard: text for shard, text in plan.shards.items() if text is not None}
            if shard_texts:
                target = self.shard_dir
                self.shard_dir.mkdir(parents=True, exist_ok=True)
                for shard, text in shard_texts.items():
                    target = self._shard_path(shard)
                    data = text.encode("utf-8")
                    atomic_write(target, data, sync_dir=False)
                    files += 1
                    written += len(data)
                target = self.shard_dir
                fsync_dir(self.shard_dir)  # shards durable before the index that lists them
                self._pending_shards -= set(shard_texts)
            if plan.index is not None:
                target = self.path
                data = plan.index.encode("utf-8")
                atomic_write(self.path, data)
                files += 1
                written += len(data)
                self._written_meta = plan.meta
                self._pending_index = False
            # Emptied shards go last: until the index stops listing them they must exist.
            for shard, text in plan.shards.items():
                if text is None:
                    target = self._shard_path(shard)
                    target.unlink(missing_ok=True)
                    self._pending_shards.discard(shard)
        except OSError as error:
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
            if len(self._shard_cache) <= CACHED_SHARDS:
                break
            if shard not in self._pending_shards:
                del self._shard_cache[shard]
