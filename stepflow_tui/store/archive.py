"""History at rest: the jobs of finished workflows stay in their shard files until someone asks for one.

The index lists the shards whose jobs all belong to finished workflows (``meta.archived_shards``) and keeps a
finished workflow's steps' counts and job ids, so a load neither reads those shards nor builds their jobs.
`JobTable` is the State's ``jobs`` after such a load: a dict of the jobs in memory that reads an archived
shard into itself the first time one of its jobs is asked for (``get``, ``[]``, ``in``, ``pop``). Iterating it
or taking its ``len`` reads every archived shard first (the whole state, as a plain dict would give); code
that wants the jobs in memory only — every job of an active workflow — uses ``dict.values(jobs)``.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepflow_tui.core.model import Job

from .documents import job_from_document, shard_path
from .errors import StoreCorrupt
from .storage import AtomicJSONStorage

if TYPE_CHECKING:
    from .flush import Persisted


class Archive:
    """The shards a load left on disk (``persisted.unloaded``), read into a `JobTable` on demand."""

    def __init__(self, persisted: Persisted, shard_dir: Path, owner: bool) -> None:
        self.persisted = persisted
        self.shard_dir = shard_dir
        self.owner = owner

    def bring(self, job_id: Any, table: dict[int, Job], workflows: dict[int, Any]) -> bool:
        """Read the archived shard that would hold ``job_id`` into ``table``; False if there is none."""
        if type(job_id) is not int or job_id // self.persisted.shard_size not in self.persisted.unloaded:
            return False
        self.bring_shard(job_id // self.persisted.shard_size, table, workflows)
        return True

    def bring_shard(self, shard: int, table: dict[int, Job], workflows: dict[int, Any]) -> None:
        """Read archived shard ``shard`` into ``table`` (its jobs stay in memory from then on)."""
        persisted = self.persisted
        path = shard_path(self.shard_dir, shard)
        data = AtomicJSONStorage(path, keep_copies=self.owner).read() or {}
        members = persisted.shard_members.setdefault(shard, set())
        holders = persisted.shard_workflows.setdefault(shard, set())
        for doc_id, document in data.get("jobs", {}).items():
            try:
                job = job_from_document(document)
            except (KeyError, TypeError, ValueError) as error:
                raise StoreCorrupt(str(path), f"job document {doc_id}: {error!r}") from None
            if job.workflow_id not in workflows:
                continue  # a deleted workflow's: never part of the state again
            dict.__setitem__(table, job.id, job)
            members.add(job.id)
            holders.add(job.workflow_id)
            persisted.job_workflow[job.id] = job.workflow_id
        del persisted.unloaded[shard]
        persisted.archived = None


class JobTable(dict):  # type: ignore[type-arg]
    """``State.jobs`` with archived shards read in on first access (see the module docstring)."""

    __slots__ = ("_archive", "_workflows")

    def __init__(self, archive: Archive, workflows: dict[int, Any]) -> None:
        super().__init__()
        self._archive = archive
        self._workflows = workflows

    def bring_shard(self, shard: int) -> None:
        """Read archived shard ``shard`` into the table, if it is one (the store, before changing it)."""
        if shard in self._archive.persisted.unloaded:
            self._archive.bring_shard(shard, self, self._workflows)

    def __missing__(self, key: int) -> Job:
        if self._archive.bring(key, self, self._workflows) and dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        raise KeyError(key)

    def get(self, key: int, default: Any = None) -> Any:  # type: ignore[override]
        job = dict.get(self, key)
        if job is None and self._archive.bring(key, self, self._workflows):
            return dict.get(self, key, default)
        return default if job is None else job

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        return self._archive.bring(key, self, self._workflows) and dict.__contains__(self, key)

    def _bring_all(self) -> None:
        for shard in list(self._archive.persisted.unloaded):
            self._archive.bring_shard(shard, self, self._workflows)

    def __iter__(self) -> Iterator[int]:
        self._bring_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._bring_all()
        return dict.__len__(self)

    def keys(self) -> KeysView[int]:  # type: ignore[override]
        self._bring_all()
        return dict.keys(self)

    def values(self) -> ValuesView[Job]:  # type: ignore[override]
        self._bring_all()
        return dict.values(self)

    def items(self) -> ItemsView[int, Job]:  # type: ignore[override]
        self._bring_all()
        return dict.items(self)

    def pop(self, key: int, *default: Any) -> Any:  # type: ignore[override]
        if not dict.__contains__(self, key):
            self._archive.bring(key, self, self._workflows)
        return dict.pop(self, key, *default)
