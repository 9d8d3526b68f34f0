"""The workers the backend has heard of: their last status, when they were seen, and which are lost."""

from __future__ import annotations

import time
from typing import NamedTuple

from stepflow_tui.backend.views import WorkerView
from stepflow_tui.core.clock import utc_now
from stepflow_tui.core.protocol import WorkerStatus

#: A worker unseen for this many of its status intervals is lost.
LOST_AFTER_INTERVALS = 3


def is_lost(seen: float, interval: float, now: float) -> bool:
    """The "lost worker" rule: unseen (monotonic ``seen``) for more than 3 status intervals at ``now``."""
    return now - seen > LOST_AFTER_INTERVALS * interval


class SeenWorker(NamedTuple):
    status: WorkerStatus
    seen: float  # time.monotonic() of its last status
    seen_at: str  # the same, as a UTC timestamp to show


class WorkerResults(NamedTuple):
    processed: int = 0
    failed: int = 0
    last_job: int | None = None
    last_job_at: str | None = None


class WorkerRegistry:
    """Worker statuses by instance id. Only the broker thread changes it; readers take a copy."""

    def __init__(self) -> None:
        self._workers: dict[str, SeenWorker] = {}
        # Lost workers: instance id -> monotonic time it was found lost; their jobs are failed one status
        # interval later (a grace for RabbitMQ to redeliver them elsewhere). Handled ones are kept apart.
        self._lost_since: dict[str, float] = {}
        self.lost_handled: set[str] = set()
        self._lost: frozenset[str] = frozenset()
        self._first_seen: dict[str, str] = {}
        self._results: dict[str, WorkerResults] = {}

    def __contains__(self, instance_id: str) -> bool:
        return instance_id in self._workers

    def serves(self, instance_id: str, job_type: str) -> bool:
        """Whether ``instance_id`` announced itself as a worker of ``job_type``."""
        seen = self._workers.get(instance_id)
        return seen is not None and (job_type in seen.status.job_types
                                     or seen.status.queue_name == f"job_{job_type}")

    def record(self, status: WorkerStatus) -> None:
        """A worker spoke (discovery, status, terminated): it is seen now, or forgotten when it terminated."""
        now = utc_now()
        self._workers[status.instance_id] = SeenWorker(status, time.monotonic(), now)
        self._first_seen.setdefault(status.instance_id, now)
        self._lost_since.pop(status.instance_id, None)
        self.lost_handled.discard(status.instance_id)
        if status.kind == "terminated":
            self._workers.pop(status.instance_id, None)
            self._first_seen.pop(status.instance_id, None)
            self._results.pop(status.instance_id, None)

    def count_result(self, instance_id: str | None, job_id: int, failed: bool) -> None:
        """A result of ``instance_id``'s was applied (a StepFlow worker's results name no instance: the job's
        last progression did; None when neither did)."""
        if instance_id is None:
            return
        before = self._results.get(instance_id, WorkerResults())
        self._results[instance_id] = WorkerResults(before.processed + 1, before.failed + failed, job_id, utc_now())

    def newly_lost(self, now: float) -> list[tuple[WorkerStatus, float]]:
        """Lost workers whose grace (one more status interval) is over and whose jobs are still to fail,
        with when each was last seen; each is returned once (until it shows up again)."""
        found = []
        for instance_id, (status, seen, _) in list(self._workers.items()):
            if instance_id in self.lost_handled or not is_lost(seen, status.interval, now):
                continue
            since = self._lost_since.setdefault(instance_id, now)
            if now - since < status.interval:
                continue
            self.lost_handled.add(instance_id)
            found.append((status, seen))
        return found

    def lost_changed(self, now: float) -> bool:
        """Whether the set of lost workers changed since the last call."""
        lost = frozenset(i for i, (s, seen, _) in self._workers.items() if is_lost(seen, s.interval, now))
        changed = lost != self._lost
        self._lost = lost
        return changed

    def job_types(self) -> set[str]:
        """Every job type a known worker runs."""
        types: set[str] = set()
        for status, _, _ in list(self._workers.values()):
            types.update(status.job_types)
        return types

    def views(self) -> list[WorkerView]:
        """The workers to show: live ones first, by label."""
        now = time.monotonic()
        views = []
        for status, seen, seen_at in list(self._workers.values()):
            results = self._results.get(status.instance_id, WorkerResults())
            views.append(WorkerView(
                instance_id=status.instance_id, label=status.label, job_types=tuple(status.job_types),
                activity=status.activity, current_jobs=tuple(status.current_jobs), hostname=status.hostname,
                pid=status.pid, version=status.version, last_seen=seen_at,
                lost=is_lost(seen, status.interval, now), concurrency=status.concurrency,
                processed=results.processed, failed=results.failed,
                first_seen=self._first_seen.get(status.instance_id, seen_at), last_job=results.last_job,
                last_job_at=results.last_job_at))
        return sorted(views, key=lambda w: (w.lost, w.label, w.instance_id))
