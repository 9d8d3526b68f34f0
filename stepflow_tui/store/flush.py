"""What a flush writes: the Store's view of its files, and the plan that brings them up to date with a State.

`Persisted` mirrors what is on disk (or about to be): which jobs each shard holds, their serialised entries
(an LRU of whole shards), the workflows' index documents and definitions, the journal files still needed,
and what is still to be written. `Persisted.plan` serialises what a State marks dirty or deleted into a
`Plan`; `store.Store` writes it.

Changed jobs go to the flush's journal file (gzipped, ~60 bytes a job) rather than rewriting their shards
(250 jobs each, ~150 KB for finished ones): a shard is rewritten once its jobs are all final, when the journal
grows past its bounds, when jobs leave it, and when the store closes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from stepflow_tui.core.model import JOB_FINAL, State

from .documents import (
    FORMAT_VERSION,
    SHARD_SIZE,
    shard_entry,
    shard_text,
    workflow_body,
    workflow_text,
)
from .storage import dumps, tinydb_text

#: Jobs whose serialised shard documents stay in memory between flushes (whole shards, by recency of use).
CACHED_JOBS = 8000
#: Journal bounds: past either, every shard with journaled jobs is rewritten and the journal files removed
#: (a load reads every journal file; a clean close leaves none).
JOURNAL_MAX_FILES = 1024
JOURNAL_MAX_BYTES = 8 << 20


@dataclass
class Plan:
    """What one flush writes, serialised under the state lock, written after releasing it."""

    shards: dict[int, str | None] = field(default_factory=dict)  # None: the shard is now empty, remove it
    definitions: dict[int, str | None] = field(default_factory=dict)  # None: workflow deleted, remove it
    index: str | None = None
    meta: dict[str, Any] | None = None
    seq: int = 0  # this flush's number: recorded in the shards it writes, names its journal file
    journal_entries: list[str] | None = None  # the changed jobs of the shards not rewritten (their entries)
    journal: bytes | None = None  # those entries' journal file, gzipped by the write (off the store lock)
    journal_shards: set[int] = field(default_factory=set)  # the shards whose jobs the journal holds
    started: float = 0.0  # perf_counter when it was planned (the flush's duration in the stats)


class Persisted:
    """What is on disk (or about to be), filled by the load and owned by flush under its flush lock."""

    def __init__(self) -> None:
        self.shard_size = SHARD_SIZE  # jobs per shard: that of the files once loaded
        self._entries: dict[int, str] = {}  # during a plan: its changed jobs' entries, serialised before it
        self.shard_members: dict[int, set[int]] = {}  # shard -> job ids persisted in it
        # shard -> job id -> the job's entry in the shard's JSON (see documents.shard_entry)
        self.shard_cache: OrderedDict[int, dict[int, str]] = OrderedDict()
        self.job_workflow: dict[int, int] = {}  # job id -> workflow id, to drop a deleted workflow's jobs
        # workflow id -> (its index document without updated_at, updated_at), as the next index holds them
        self.workflow_docs: dict[int, tuple[str, str]] = {}
        self.definitions: dict[int, Any] = {}  # workflow id -> the definition object its file holds
        self.written_meta: dict[str, Any] | None = None
        self.pending_shards: set[int] = set()  # shards whose file differs from memory (or failed to write)
        self.pending_definitions: set[int] = set()  # definition files to write (or remove) still
        self.pending_index = False
        self.seq = 0  # the number of the last flush that wrote a shard or a journal
        self.shard_files: set[int] = set()  # shards that have a file (the index's meta lists them)
        # journal file number -> the shards it holds jobs of, newer than the shard's file
        self.journal_shards: dict[int, set[int]] = {}
        self.journal_sizes: dict[int, int] = {}  # journal file number -> its bytes
        self._changed: dict[int, list[str]] = {}  # shard -> entries of the jobs changed since the last plan
        self.shard_workflows: dict[int, set[int]] = {}  # shard -> the workflows its jobs belong to
        # shard -> its workflows, all finished: shards a load left on disk (archive.py reads them on demand)
        self.unloaded: dict[int, list[int]] = {}
        # meta.archived_shards as last computed; None: to compute again (shards, their workflows or a
        # workflow's finished state changed). Every flush compares the meta: thousands of shards show.
        self.archived: dict[str, list[int]] | None = None
        self._finished: dict[int, bool] = {}  # workflow id -> finished, as `archived` saw it
        # shard not cached -> entries of its final jobs serialised since (see _update_jobs)
        self._final_entries: dict[int, dict[int, str]] = {}

    def cached_shard(self, shard: int, state: State) -> dict[int, str]:
        """The serialised documents of a shard, serialising its jobs from the State on first use."""
        cache = self.shard_cache.get(shard)
        if cache is not None:
            self.shard_cache.move_to_end(shard)
            return cache
        members = self.shard_members.setdefault(shard, set())
        cache = {}
        known = self._final_entries.pop(shard, {})
        for job_id in sorted(members):
            job = state.jobs.get(job_id)
            if job is None:  # dropped from the State without a delete mark: the State is the truth
                members.discard(job_id)
                self.job_workflow.pop(job_id, None)
                continue
            entry = known.get(job_id) or self._entries.get(job_id)
            cache[job_id] = entry if entry is not None else shard_entry(job)
        self.shard_cache[shard] = cache
        return cache

    def plan(self, state: State, compact: bool = False, entries: dict[int, str] | None = None) -> Plan:
        """Serialise what ``state`` marks dirty or deleted (and what an earlier flush failed to write), and
        clear the State's marks. ``compact``: rewrite every shard the journal holds jobs of (on close)."""
        plan = Plan(seq=self.seq + 1)
        deleted_workflows = set(state.deleted_workflows)
        deleted_workflows |= {wf_id for wf_id in state.dirty_workflows if wf_id not in state.workflows}
        deleted_jobs = set(state.deleted_jobs)
        deleted_jobs |= {job_id for job_id in state.dirty_jobs if job_id not in state.jobs}
        index_dirty = self.pending_index
        if deleted_workflows:
            index_dirty = True
            deleted_jobs |= self._drop_workflows(deleted_workflows, state)
        self._drop_jobs(deleted_jobs)
        self._entries = entries or {}  # this plan's jobs serialised already (also for its shard rewrites)
        self._update_jobs(state, deleted_jobs, self._entries)
        index_dirty |= self._update_workflows(state, deleted_workflows)
        self._plan_journal(plan, state, compact)
        self._plan_shards(plan, state)
        self._plan_index(plan, state, index_dirty)
        self._plan_definitions(plan, state)
        self._entries = {}
        state.dirty_jobs.clear()
        state.dirty_workflows.clear()
        state.deleted_jobs.clear()
        state.deleted_workflows.clear()
        state.dirty_meta = False
        if plan.shards or plan.journal_entries is not None:
            self.seq = plan.seq
        return plan

    def _drop_workflows(self, deleted_workflows: set[int], state: State) -> set[int]:
        """Forget deleted workflows; return the ids of their jobs (persisted or in the State)."""
        for wf_id in deleted_workflows:
            self.workflow_docs.pop(wf_id, None)
            if self.definitions.pop(wf_id, None) is not None or wf_id in self.pending_definitions:
                self.pending_definitions.add(wf_id)  # its file goes after the index
        for shard, holders in list(self.unloaded.items()):
            if deleted_workflows.intersection(holders):
                state.jobs.bring_shard(shard)  # type: ignore[attr-defined]
                self.pending_shards.add(shard)  # its file still holds the deleted workflow's jobs
        for holders in self.shard_workflows.values():
            holders -= deleted_workflows
        self.archived = None
        # Rare (an operator's delete): a scan of what is persisted is fine.
        deleted_jobs = {j for j, wf in self.job_workflow.items() if wf in deleted_workflows}
        # In memory only (dict.items): the deleted workflows' shards left on disk were read in above.
        deleted_jobs |= {j for j, job in dict.items(state.jobs) if job.workflow_id in deleted_workflows}
        return deleted_jobs

    def _drop_jobs(self, deleted_jobs: set[int]) -> None:
        for job_id in deleted_jobs:
            shard = job_id // self.shard_size
            self.job_workflow.pop(job_id, None)
            members = self.shard_members.get(shard)
            if members is not None and job_id in members:
                members.discard(job_id)
                cache = self.shard_cache.get(shard)
                if cache is not None:
                    cache.pop(job_id, None)
                self._final_entries.get(shard, {}).pop(job_id, None)
                self.pending_shards.add(shard)

    def _update_jobs(self, state: State, deleted_jobs: set[int], entries: dict[int, str]) -> None:
        jobs, get = state.jobs, dict.get  # a changed job is in memory: no job table lookup (it is slower)
        for job_id in state.dirty_jobs:
            if job_id in deleted_jobs:
                continue
            job = get(jobs, job_id) or jobs[job_id]
            if job.workflow_id not in state.workflows:
                continue  # would be an orphan on load anyway
            shard = job_id // self.shard_size
            if shard in self.unloaded:  # a new job in an archived shard: its jobs on disk stay in it
                state.jobs.bring_shard(shard)  # type: ignore[attr-defined]
            holders = self.shard_workflows.setdefault(shard, set())
            if job.workflow_id not in holders:
                holders.add(job.workflow_id)
                self.archived = None
            entry = entries.get(job_id) or shard_entry(job)
            cache = self.shard_cache.get(shard)
            if cache is not None:
                cache[job_id] = entry
            elif job.status in JOB_FINAL:
                # Kept for the shard's rewrite once all its jobs are final (that rewrite would serialise
                # them again); entries of jobs still running would only take memory.
                self._final_entries.setdefault(shard, {})[job_id] = entry
            else:
                self._final_entries.get(shard, {}).pop(job_id, None)
            self.shard_members.setdefault(shard, set()).add(job_id)
            self.job_workflow[job_id] = job.workflow_id
            self._changed.setdefault(shard, []).append(entry)

    def _plan_journal(self, plan: Plan, state: State, compact: bool) -> None:
        """Choose the shards to rewrite (into ``pending_shards``) and journal the other changed jobs."""
        changed, self._changed = self._changed, {}
        journaled = {shard for shards in self.journal_shards.values() for shard in shards}
        if compact or len(self.journal_sizes) >= JOURNAL_MAX_FILES or (
            sum(self.journal_sizes.values()) >= JOURNAL_MAX_BYTES
        ):
            self.pending_shards |= journaled | set(changed)
            return
        for shard in changed:
            # A shard whose jobs are all final rarely changes again: rewritten once, its journal
            # entries can go. (Only a changed shard can have become settled.)
            jobs = state.jobs
            if all(job_id not in jobs or jobs[job_id].status in JOB_FINAL for job_id in self.shard_members[shard]):
                self.pending_shards.add(shard)
        entries = [entry for shard, shard_entries in changed.items() if shard not in self.pending_shards
                   for entry in shard_entries]
        if entries:
            plan.journal_entries = entries
            plan.journal_shards = set(changed) - self.pending_shards

    def _update_workflows(self, state: State, deleted_workflows: set[int]) -> bool:
        """Serialise the dirty workflows; True if the index must be rewritten for them."""
        index_dirty = False
        for wf_id in state.dirty_workflows:
            if wf_id in deleted_workflows:
                continue
            body, updated_at = workflow_body(state.workflows[wf_id])
            known = self.workflow_docs.get(wf_id)
            # A job status change marks its workflow, but often changes nothing in the index but updated_at,
            # which the load rebuilds from the jobs: then the index (and its two fsyncs) is not rewritten.
            if known is None or known[0] != body:
                index_dirty = True
            self.workflow_docs[wf_id] = (body, updated_at)
        return index_dirty

    def _plan_shards(self, plan: Plan, state: State) -> None:
        journaled = {shard for shards in self.journal_shards.values() for shard in shards}
        journaled |= plan.journal_shards
        for shard in sorted(self.pending_shards):
            if self.shard_members.get(shard) or shard in journaled:
                # An emptied shard that older journal files hold jobs of is written empty: its flush
                # number tells the load that those entries (deleted jobs, orphans) are gone. Removed
                # once no journal file holds jobs of it (see `written`).
                plan.shards[shard] = shard_text(self.cached_shard(shard, state), plan.seq)
                if shard not in self.shard_files:
                    self.shard_files.add(shard)
                    self.archived = None
            else:
                self.shard_members.pop(shard, None)
                self.shard_cache.pop(shard, None)
                self._final_entries.pop(shard, None)
                self.shard_workflows.pop(shard, None)
                self.archived = None
                self.shard_files.discard(shard)
                plan.shards[shard] = None

    def written(self, plan: Plan) -> list[int]:
        """Record that ``plan``'s journal and shards are durable; return the journal files no longer needed."""
        rewritten = {shard for shard, text in plan.shards.items() if text is not None}
        self.pending_shards -= rewritten
        if plan.journal is not None:
            self.journal_shards[plan.seq] = set(plan.journal_shards)
            self.journal_sizes[plan.seq] = len(plan.journal)
        done = []
        for seq, shards in self.journal_shards.items():
            shards -= rewritten
            if not shards:
                done.append(seq)
        for seq in done:
            del self.journal_shards[seq]
            del self.journal_sizes[seq]
        if done:
            journaled = {shard for shards in self.journal_shards.values() for shard in shards}
            # Shards written empty for the journal files just removed: the next flush removes them.
            self.pending_shards |= {shard for shard in rewritten
                                    if not self.shard_members.get(shard) and shard not in journaled}
        return done

    def journal_lost(self, plan: Plan) -> None:
        """``plan``'s journal was not written: its shards are rewritten by the next flush instead."""
        self.pending_shards |= plan.journal_shards

    def _plan_index(self, plan: Plan, state: State, index_dirty: bool) -> None:
        meta = {
            "format": FORMAT_VERSION,
            "next_workflow_id": state.next_workflow_id,
            "next_job_id": state.next_job_id,
            "shard_size": self.shard_size,
            "shards": sorted(self.shard_files),
            "archived_shards": self._archived_shards(state),
        }
        if state.broker is not None:
            meta["broker"] = state.broker
        if index_dirty or meta != self.written_meta:
            documents = []
            for wf_id in sorted(state.workflows):
                workflow = state.workflows[wf_id]
                known = self.workflow_docs.get(wf_id)
                if known is None:  # loaded and not changed since: serialised once, then kept
                    known = self.workflow_docs[wf_id] = workflow_body(workflow)
                documents.append((wf_id, workflow_text(*known)))
                if self.definitions.get(wf_id) is not workflow.definition:
                    # New since the last index (or loaded from a format 1 index): its file comes first.
                    self.pending_definitions.add(wf_id)
            plan.index = tinydb_text({"meta": [(1, dumps(meta))], "workflows": documents})
            plan.meta = meta
            self.pending_index = True
        else:
            for wf_id in state.dirty_workflows:
                workflow = state.workflows.get(wf_id)
                if workflow is not None and self.definitions.get(wf_id) is not workflow.definition:
                    self.pending_definitions.add(wf_id)  # replaced in place: never by the engine

    def _archived_shards(self, state: State) -> dict[str, list[int]]:
        """The shards whose jobs all belong to finished workflows, with those workflows."""
        workflows = state.workflows
        finished = {wf_id: workflow.finished for wf_id, workflow in workflows.items()}
        if self.archived is not None and finished == self._finished:
            return self.archived
        self._finished = finished
        archived = {str(shard): holders for shard, holders in self.unloaded.items()}
        for shard, holders in self.shard_workflows.items():
            if holders and shard in self.shard_files and all(
                    wf_id not in workflows or workflows[wf_id].finished for wf_id in holders):
                archived[str(shard)] = sorted(holders)
        self.archived = dict(sorted(archived.items(), key=lambda item: int(item[0])))
        return self.archived

    def _plan_definitions(self, plan: Plan, state: State) -> None:
        for wf_id in sorted(self.pending_definitions):
            workflow = state.workflows.get(wf_id)
            if workflow is None:
                plan.definitions[wf_id] = None
            else:
                plan.definitions[wf_id] = tinydb_text({"definition": [(wf_id, dumps(workflow.definition))]})
                self.definitions[wf_id] = workflow.definition

    def evict(self) -> None:
        """Drop the serialised documents of all but the most recently used shards."""
        # Bounded memory, and the active shards (new jobs get the highest ids) rarely need serialising again.
        for shard in list(self.shard_cache):
            if len(self.shard_cache) <= max(8, CACHED_JOBS // self.shard_size):
                break
            if shard not in self.pending_shards:
                del self.shard_cache[shard]
