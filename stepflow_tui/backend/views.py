"""Read-only views the backend hands to the UI and the CLI: plain, immutable copies, safe to keep on
another thread. The TUI's snapshot tests build these directly (deterministic data, no backend)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class StepView:
    id: int
    name: str  # job type
    label: str
    status: str
    counts: dict[str, int]  # queued, processing, retrying, completed, error, skipped, stopped, total
    job_count: int
    launched_at: str | None = None  # None for a step never launched (pending, or skipped by an abort)
    finished_at: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowView:
    id: int
    identifier: str
    label: str
    version: str
    status: str
    paused: bool
    parameters: dict[str, Any]
    counts: dict[str, int]
    steps: tuple[StepView, ...]
    created_at: str
    updated_at: str
    finished_at: str | None = None

    @property
    def done(self) -> int:
        return self.counts.get("completed", 0) + self.counts.get("skipped", 0)

    @property
    def total(self) -> int:
        return self.counts.get("total", 0)


@dataclass(frozen=True, slots=True)
class JobView:
    """A row of the tree: enough to draw a job line. `Backend.job(id)` gives the full record."""

    id: int
    workflow_id: int
    step_id: int
    job_type: str
    status: str
    progress: int
    error: str | None = None
    input: str | None = None  # the file it works on (its source_path parameter), when it has one
    worker: str | None = None  # instance id of the worker that reported on it last
    duration: float | None = None  # execution duration reported by the worker, in seconds
    started_at: str | None = None
    position: int | None = None  # its index among its step's jobs (given by `find_jobs`: the page to list)


@dataclass(frozen=True, slots=True)
class WorkerView:
    instance_id: str
    label: str
    job_types: tuple[str, ...]
    activity: str  # Idle | Busy | Terminated
    current_jobs: tuple[int, ...]
    hostname: str
    pid: int
    version: str
    last_seen: str  # ISO time
    lost: bool  # unseen for 3 status intervals


@dataclass(frozen=True, slots=True)
class Update:
    """What changed since the previous update (coalesced: many broker events, one update)."""

    workflow_ids: frozenset[int] = frozenset()
    job_ids: frozenset[int] = frozenset()
    queues: bool = False
    workers: bool = False
    connection: str | None = None  # new connection state, when it changed
    messages: tuple[str, ...] = field(default_factory=tuple)  # notices for the operator (errors, warnings)
