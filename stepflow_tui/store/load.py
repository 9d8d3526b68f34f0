"""Loading a State from the state files, and the recovery from an interrupted flush or delete.

Steps' ``job_ids`` and ``counts`` and each workflow's ``updated_at`` are rebuilt from the jobs. Jobs the index
does not know (a flush whose index never landed) are left out, and their shards rewritten by the next flush.
"""

from __future__ import annotations

import gc
import gzip
import logging
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepflow_tui.core.model import Job, State, Workflow, empty_counts

from .archive import Archive, JobTable
from .documents import (
    FORMAT_VERSION,
    SHARD_SIZE,
    data_files,
    definition_path,
    ids_of_ranges,
    job_from_document,
    shard_path,
    shard_seq,
)
from .errors import StoreCorrupt, StoreError
from .flush import Persisted
from .storage import AtomicJSONStorage, keep_corrupt_copy, loads, remove_temp_files

log = logging.getLogger(__name__)


def without_gc(load: Callable[[], State]) -> State:
    """Run ``load`` with the cyclic GC off, and freeze what it loaded out of the collector's reach."""
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


class StateChanged(StoreError):
    """A file listed by a reader was removed by the owner before it was read: read again."""


class StateLoader:
    """Reads the files of the state at ``path`` into a State, and fills ``persisted`` with what they hold.

    ``owner=False`` (``read_state``): write nothing, and tolerate the changes a live owner makes while we
    read (a shard removed, shards written before their index).
    """

    def __init__(self, path: Path, shard_dir: Path, persisted: Persisted, owner: bool = True) -> None:
        self.path = path
        self.shard_dir = shard_dir
        self.persisted = persisted
        self.owner = owner
        self.archived_workflows: set[int] = set()  # finished workflows whose steps the index describes

    def load(self) -> State:
        """Load everything (see the class docstring). Raises ``StoreCorrupt`` or ``StoreError``."""
        owner = self.owner
        if owner:
            # We own the lock: temp files are leftovers of a writer that died mid-write.
            remove_temp_files(self.path.parent, prefix=f".{self.path.name}.")
            remove_temp_files(self.shard_dir)
        data = AtomicJSONStorage(self.path, keep_copies=owner).read()
        # Listed after reading the index: a live owner's files then hold at least what the index describes.
        shard_files, definition_files, journal_files = data_files(self.shard_dir)
        if data is None:
            if (shard_files or journal_files) and owner:
                # Starting empty would drop these jobs and reuse their ids: refuse instead.
                raise StoreCorrupt(str(self.path), f"the file is missing but {self.shard_dir} holds jobs")
            return State()
        meta = self._read_meta(data)
        shard_size = self.persisted.shard_size = meta.get("shard_size", 1000)  # format 1: 1,000 then
        if not isinstance(shard_size, int) or shard_size < 1:
            raise self._corrupt(self.path, f"invalid shard_size {shard_size!r} in the meta document")
        state = State()
        for doc_id, document in data.get("workflows", {}).items():
            workflow = self._read_workflow(doc_id, document, definition_files)
            if workflow is not None:
                state.workflows[workflow.id] = workflow

        listed = {int(shard) for shard in meta.get("shards", [])}
        missing = sorted(listed - set(shard_files))
        if missing:  # a reader too: "no workflows" for a state whose jobs are gone would be a lie
            raise StoreCorrupt(
                str(shard_path(self.shard_dir, missing[0])), "the job shard listed in the index is missing"
            )
        index_next_job_id = int(meta.get("next_job_id", 1 << 62))
        self.persisted.shard_files = set(shard_files)
        journaled = self._read_journals(journal_files)
        self._leave_archived_shards(meta, state, shard_files, journaled)
        max_job_id, max_workflow_id = self._read_jobs(state, shard_files, journaled, index_next_job_id)
        self._drop_stale_journals(journal_files)
        max_workflow_id = max([max_workflow_id, *state.workflows, *definition_files])
        if owner:
            # Definitions of workflows the index does not list: written by a flush whose index never
            # landed, or left by a delete interrupted after its index. Their ids are not reused (above).
            for wf_id, path in definition_files.items():
                if wf_id not in state.workflows:
                    path.unlink(missing_ok=True)
        # Ids are never reused, even those of jobs written by a flush whose index never landed.
        state.next_job_id = max(int(meta.get("next_job_id", 1)), max_job_id + 1)
        state.next_workflow_id = max(int(meta.get("next_workflow_id", 1)), max_workflow_id + 1)
        broker = meta.get("broker")
        state.broker = broker if isinstance(broker, str) else None
        self.persisted.written_meta = meta
        return state

    def _read_journals(self, journal_files: dict[int, Path]) -> dict[int, tuple[dict[str, Any], set[int]]]:
        """The journal files' job documents by shard (the newest of each job), with the journal files
        holding jobs of that shard."""
        persisted = self.persisted
        shard_size = persisted.shard_size
        journaled: dict[int, tuple[dict[str, Any], set[int]]] = {}
        for seq in sorted(journal_files):
            path = journal_files[seq]
            persisted.journal_sizes[seq] = path.stat().st_size if self.owner else 0
            persisted.journal_shards[seq] = set()
            for doc_id, document in self._read_journal(path).items():
                try:
                    shard = int(doc_id) // shard_size
                except ValueError:
                    raise self._corrupt(path, f"job document {doc_id!r}") from None
                documents, seqs = journaled.setdefault(shard, ({}, set()))
                documents[doc_id] = (seq, document)
                seqs.add(seq)
        persisted.seq = max(journal_files, default=0)
        return journaled  # type: ignore[return-value]

    def _shard_documents(self, shard: int, path: Path | None,
                         journaled: tuple[dict[str, Any], set[int]] | None) -> dict[str, Any]:
        """A shard's job documents: its file's, then the journal's newer ones."""
        persisted = self.persisted
        data = AtomicJSONStorage(path, keep_copies=self.owner).read() or {} if path is not None else {}
        documents = data.get("jobs", {})
        written = shard_seq(data)
        persisted.seq = max(persisted.seq, written)
        if journaled is not None:
            entries, seqs = journaled
            for doc_id, (seq, document) in entries.items():
                if seq > written:
                    documents[doc_id] = document
            for seq in seqs:
                if seq > written:
                    persisted.journal_shards[seq].add(shard)
        return documents

    def _drop_stale_journals(self, journal_files: dict[int, Path]) -> None:
        """Forget journal files whose every shard was rewritten since (a crash came before their removal)."""
        persisted = self.persisted
        for seq, shards in list(persisted.journal_shards.items()):
            if not shards:
                del persisted.journal_shards[seq]
                del persisted.journal_sizes[seq]
                if self.owner:
                    journal_files[seq].unlink(missing_ok=True)

    def _read_journal(self, path: Path) -> dict[str, Any]:
        try:
            raw = gzip.decompress(path.read_bytes())
            data = loads(raw)
        except FileNotFoundError:
            raise StateChanged(str(path)) from None  # removed by a live owner since we listed the folder
        except (OSError, EOFError, ValueError, RecursionError, zlib.error) as error:
            raise self._corrupt(path, f"invalid journal file: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise self._corrupt(path, "not a journal file")
        return data["jobs"]

    def _leave_archived_shards(self, meta: dict[str, Any], state: State, shard_files: dict[int, Path],
                               journaled: dict[int, Any]) -> None:
        """Leave on disk the shards whose jobs all belong to finished workflows (see archive.py)."""
        unloaded = self.persisted.unloaded
        archived = self.archived_workflows
        listed = meta.get("archived_shards")
        for key, holders in (listed.items() if isinstance(listed, dict) else ()):
            shard = int(key)
            # A shard with journal entries is read: its file is not the whole story.
            if shard in shard_files and shard not in journaled and all(
                    wf_id in archived or wf_id not in state.workflows for wf_id in holders):
                unloaded[shard] = list(holders)
        if unloaded:
            state.jobs = JobTable(Archive(self.persisted, self.shard_dir, self.owner), state.workflows)

    def _read_jobs(self, state: State, shard_files: dict[int, Path],
                   journaled: dict[int, tuple[dict[str, Any], set[int]]], index_next_job_id: int) -> tuple[int, int]:
        """Add the jobs of every shard to ``state`` and its steps; return the highest job and workflow ids
        seen (orphans included)."""
        persisted = self.persisted
        archived = self.archived_workflows
        steps = {(wf.id, step.id): step for wf in state.workflows.values() for step in wf.steps
                 if wf.id not in archived}
        for step in steps.values():
            step.job_ids = []
            step.counts = empty_counts()
        latest: dict[int, str] = {}  # workflow id -> time of its latest job status change
        max_job_id = max_workflow_id = orphans = 0
        for shard in sorted((set(shard_files) | set(journaled)) - set(persisted.unloaded)):
            members: set[int] = set()
            holders = persisted.shard_workflows.setdefault(shard, set())
            documents = self._shard_documents(shard, shard_files.get(shard), journaled.pop(shard, None))
            for job in self._shard_jobs(shard, documents):
                max_job_id = max(max_job_id, job.id)
                max_workflow_id = max(max_workflow_id, job.workflow_id)
                if job.workflow_id in archived and job.id < index_next_job_id:
                    # A finished workflow's job beside active ones: in memory, its step as the index has it.
                    state.jobs[job.id] = job
                    members.add(job.id)
                    holders.add(job.workflow_id)
                    persisted.job_workflow[job.id] = job.workflow_id
                    continue
                step = steps.get((job.workflow_id, job.step_id))
                if step is None or job.id >= index_next_job_id:
                    # Written by a flush whose index never landed (it died, or a live owner is between
                    # its shard and index writes), or left by a half-done delete: not part of the state
                    # the index describes; the next flush rewrites the shard without it.
                    orphans += 1
                    persisted.pending_shards.add(shard)
                    continue
                state.jobs[job.id] = job
                holders.add(job.workflow_id)
                step.job_ids.append(job.id)
                step.counts[job.status.value] += 1
                step.counts["total"] += 1
                members.add(job.id)
                persisted.job_workflow[job.id] = job.workflow_id
                try:
                    changed = job.history[-1][1]
                    if changed > latest.get(job.workflow_id, ""):
                        latest[job.workflow_id] = changed
                except (IndexError, TypeError, KeyError):
                    pass  # no history (or not the engine's): updated_at stays as the index has it
            if members:
                persisted.shard_members[shard] = members
        _rebuild_updated_at(state, latest)
        if orphans:
            # Expected while reading a live owner's files; after a crash, worth a line in the log.
            log.log(logging.WARNING if self.owner else logging.DEBUG,
                    "%s: ignored %d jobs the index does not know (an interrupted flush or delete)",
                    self.path, orphans)
        return max_job_id, max_workflow_id

    def _read_workflow(self, doc_id: str, document: Any, definition_files: dict[int, Path]) -> Workflow | None:
        """A workflow of the index, with its definition (inline in format 1, in its own file in format 2).
        None if its definition file is missing while reading a live owner's files (it was just deleted)."""
        try:
            values = dict(document)
            workflow_id = int(values["id"])
        except (KeyError, TypeError, ValueError) as error:
            raise self._corrupt(self.path, f"workflow document {doc_id}: {error!r}") from None
        if "definition" not in values:
            path = definition_files.get(workflow_id, definition_path(self.shard_dir, workflow_id))
            definitions = AtomicJSONStorage(path, keep_copies=self.owner).read()
            if definitions is None:
                if not self.owner:
                    return None
                raise StoreCorrupt(str(path), f"the definition of workflow {workflow_id} listed in the index "
                                              "is missing")
            try:
                values["definition"] = definitions["definition"][str(workflow_id)]
            except (KeyError, TypeError):
                raise self._corrupt(path, f"no definition of workflow {workflow_id}") from None
            self.persisted.definitions[workflow_id] = values["definition"]
        try:
            steps = values["steps"] = [dict(step) for step in values["steps"]]
            for step in steps:
                ranges = step.pop("job_ranges", None)
                if ranges is not None:  # a finished workflow's: its jobs can stay on disk
                    step["job_ids"] = ids_of_ranges(ranges)
                    self.archived_workflows.add(workflow_id)
            return Workflow.from_dict(values)
        except (KeyError, TypeError, ValueError) as error:
            raise self._corrupt(self.path, f"workflow document {doc_id}: {error!r}") from None

    def _corrupt(self, path: Path, detail: str) -> StoreCorrupt:
        return StoreCorrupt(str(path), detail, keep_corrupt_copy(path) if self.owner else None)

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

    def _shard_jobs(self, shard: int, documents: dict[str, Any]) -> list[Job]:
        # The shard's TinyDB table is read straight from the storage: TinyDB's Table.all() copies every
        # document into a Document, which costs as much as parsing the file.
        path = shard_path(self.shard_dir, shard)
        jobs = []
        for doc_id, document in documents.items():
            try:
                job = job_from_document(document)
            except (KeyError, TypeError, ValueError) as error:
                raise self._corrupt(path, f"job document {doc_id}: {error!r}") from None
            if str(job.id) != doc_id or job.id // self.persisted.shard_size != shard:
                raise self._corrupt(path, f"job document {doc_id} holds job {job.id}")
            jobs.append(job)
        jobs.sort(key=lambda job: job.id)
        return jobs


def _rebuild_updated_at(state: State, latest: dict[int, str]) -> None:
    for wf_id, changed in latest.items():
        # The index is not rewritten when only updated_at changed (every job status change sets it
        # to that change's time): the jobs, flushed with it, hold the newer value.
        workflow = state.workflows[wf_id]
        if not isinstance(workflow.updated_at, str) or changed > workflow.updated_at:
            workflow.updated_at = changed
