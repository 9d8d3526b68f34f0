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

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from stepflow_tui.core.jsontext import UNSTORABLE
from stepflow_tui.core.model import State

from .documents import definition_path, journal_bytes, journal_path, shard_entry, shard_path
from .errors import StoreCorrupt, StoreError, StoreLocked
from .flush import Persisted, Plan
from .load import StateChanged, StateLoader, without_gc
from .lockfile import LockFile
from .storage import atomic_write, fsync_dir

log = logging.getLogger(__name__)


def serialise_changed(state: State) -> dict[int, str]:
    """The shard entries of the jobs ``state`` marks changed, serialised before the store lock is taken: readers
    wait for the lock, and serialising the 50,000 jobs of a new workflow under it held them 0.45 s. Safe because
    only the thread that flushes changes the state; read without the lock, jobs are only looked up (``dict.get``:
    a job table never reads a shard in from here)."""
    entries = {}
    get = dict.get
    jobs = state.jobs
    try:
        for job_id in list(state.dirty_jobs):
            job = get(jobs, job_id)
            if job is not None:
                entries[job_id] = shard_entry(job)
    except UNSTORABLE:
        return {}  # the plan, under the lock, raises it as a StoreError
    return entries


def read_state(path: str | os.PathLike[str]) -> State:
    """Load the State at ``path`` without owning it: no lock, nothing written (for ``stepflow status``).

    Safe while another process owns and flushes the file: every file is replaced atomically, so each is
    read whole; jobs may be one flush ahead of the index. A missing file gives an empty State. Raises
    ``StoreCorrupt`` (no copy is made) or ``StoreError``.
    """
    attempts = 50  # an owner flushing without pause can fold files under a slow reader several times in a row
    for attempt in range(attempts):
        try:
            return without_gc(lambda: Store(path)._load(owner=False))
        except (StateChanged, StoreCorrupt):
            # The owner folded journal files into shards, or replaced the index and removed an emptied shard,
            # between our reads: the newer files hold the jobs.
            if attempt == attempts - 1:
                raise
            time.sleep(0.002 * attempt)  # give the owner's flush time to finish before reading again
    raise AssertionError("unreachable")


@dataclass
class FlushStats:
    """Counters of the flushes that wrote something (a flush with nothing to persist is not counted)."""

    flushes: int = 0
    bytes_written: int = 0
    files_written: int = 0
    last_flush_seconds: float = 0.0


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
        self._persisted = Persisted()  # what is on disk (or about to be), owned by flush under _flush_lock
        self._shard_dir_made = False  # the data folder exists (checked once: a mkdir per flush shows)
        self.snapshot = False  # opened read-only without the lock (read-only file system): never flushed
        self._state: State | None = None  # the State open() returned, folded into its shards on close

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ open / close

    def open(self, *, read_only: bool = False) -> State:
        """Take the lock file, load every workflow and job, and return the State.

        Raises ``StoreLocked`` if another Store owns the file, ``StoreCorrupt`` if a file is unreadable (the
        file is kept and a ``.corrupt-<time>`` copy made), ``StoreError`` for other problems (newer format,
        not a stepflow file, permissions). A missing state file gives an empty State. With ``read_only``, a
        lock file that cannot be created (a read-only file system) gives a `snapshot` instead: loaded without
        owning it, never flushed.
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
            try:
                self._lockfile.acquire()
            except StoreLocked:
                raise
            except StoreError:
                if not read_only:
                    raise
                state = read_state(self.path)
                self.snapshot = self._opened = True
                return state
            try:
                state = without_gc(self._load)
            except BaseException:
                self._lockfile.release()
                raise
            self._opened = True
            self._state = state
            return state

    def close(self) -> None:
        """Fold the journal into the shards (a flush of everything marked, too), and release the lock file
        (idempotent). Waits for a flush that is writing."""
        state, self._state = self._state, None
        if state is not None and self._opened:
            try:
                self.flush(state, compact=True)
            except StoreError as error:
                # Nothing is lost: the journal files stay, and the next owner reads them.
                log.warning("%s", error)
        with self._flush_lock:
            self._opened = False
            self._lockfile.release()

    def _load(self, owner: bool = True) -> State:
        return StateLoader(self.path, self.shard_dir, self._persisted, owner).load()

    # ------------------------------------------------------------------ flush

    def flush(self, state: State, compact: bool = False) -> None:
        """Persist what ``state`` marks dirty or deleted, atomically per file, then clear the marks.

        Changed jobs go to a journal file, or into their rewritten shards; shards, journal and definitions
        are written before the index. ``compact``: rewrite every shard the journal holds jobs of, and
        remove the journal files. Raises ``StoreError`` if a file cannot be written; what was not written
        is kept in memory and written by the next flush.
        """
        plan = self.begin_flush(state, compact)
        if plan is not None:
            self.finish_flush(plan)

    def begin_flush(self, state: State, compact: bool = False) -> Plan | None:
        """The first half of `flush`: serialise what changed (under the store lock) into a plan that
        `finish_flush` writes, from any thread. Until then the next `begin_flush` waits: flushes are written
        in order. None when there is nothing to write."""
        started = time.perf_counter()
        entries = serialise_changed(state)
        with self.lock:
            if not self._opened:
                raise StoreError(f"state file {self.path} is not open")
            if self.snapshot:
                raise StoreError(f"state file {self.path} is open read-only (a snapshot): nothing can be saved")
            self._flush_lock.acquire()  # waits for the previous flush's writes
            try:
                plan = self._persisted.plan(state, compact, entries)
            except UNSTORABLE as error:  # the loop sets such messages aside; this is the last guard
                self._flush_lock.release()
                raise StoreError(f"cannot serialise the state for {self.path}: {type(error).__name__}: "
                                 f"{str(error)[:200]}") from error
            except BaseException:
                self._flush_lock.release()
                raise
        if not (plan.shards or plan.definitions or plan.index is not None or plan.journal_entries is not None):
            self._flush_lock.release()
            return None
        plan.started = started
        return plan

    def finish_flush(self, plan: Plan) -> None:
        """The second half of `flush`: write ``plan``'s files (raises `StoreError`)."""
        try:
            self._write(plan, plan.started)
        finally:
            self._flush_lock.release()

    def _write(self, plan: Plan, started: float) -> None:
        persisted = self._persisted
        files = 0
        written = 0
        target = self.path
        try:
            folder = self.shard_dir
            blobs = [(shard_path(folder, shard), text.encode("utf-8")) for shard, text in plan.shards.items()
                     if text is not None]
            blobs += [(definition_path(folder, wf_id), text.encode("utf-8"))
                      for wf_id, text in plan.definitions.items() if text is not None]
            if plan.journal_entries is not None:
                # gzipped here, not while planning: planning holds the store lock (readers wait), writing not
                plan.journal = journal_bytes(plan.journal_entries)
                blobs.append((journal_path(folder, plan.seq), plan.journal))
            done: list[int] = []
            if blobs:
                target = self.shard_dir
                if not self._shard_dir_made:
                    self.shard_dir.mkdir(parents=True, exist_ok=True)
                    self._shard_dir_made = True
                for target, data in blobs:
                    atomic_write(target, data, sync_dir=False)
                    files += 1
                    written += len(data)
                target = self.shard_dir
                fsync_dir(self.shard_dir)  # shards and definitions durable before the index listing them
                done = persisted.written(plan)
                persisted.pending_definitions -= {
                    wf for wf, text in plan.definitions.items() if text is not None
                }
            if plan.index is not None:
                target = self.path
                data = plan.index.encode("utf-8")
                atomic_write(self.path, data)
                files += 1
                written += len(data)
                persisted.written_meta = plan.meta
                persisted.pending_index = False
            self._remove(plan, done)
        except OSError as error:
            self._shard_dir_made = False  # perhaps removed under us: made again by the next flush
            if plan.journal_entries is not None and plan.seq not in persisted.journal_sizes:
                persisted.journal_lost(plan)
            raise StoreError(f"cannot write state file {target}: {error.strerror or error}") from error
        finally:
            self.stats.flushes += 1
            self.stats.files_written += files
            self.stats.bytes_written += written
            self.stats.last_flush_seconds = time.perf_counter() - started
        persisted.evict()

    def _remove(self, plan: Plan, journals: list[int]) -> None:
        """Remove emptied shards, deleted workflows' definitions and journal files no longer needed."""
        persisted = self._persisted
        # Emptied shards and deleted workflows' definitions go last: until the index stops listing
        # them they must exist. Journal files go once the shards they held jobs of are durable.
        for shard, text in plan.shards.items():
            if text is None:
                shard_path(self.shard_dir, shard).unlink(missing_ok=True)
                persisted.pending_shards.discard(shard)
        for wf_id, text in plan.definitions.items():
            if text is None and not persisted.pending_index:
                definition_path(self.shard_dir, wf_id).unlink(missing_ok=True)
                persisted.pending_definitions.discard(wf_id)
        for seq in journals:
            journal_path(self.shard_dir, seq).unlink(missing_ok=True)
