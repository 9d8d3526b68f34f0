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

    def failed_count(self, step_id: int | None = None) -> int:
        """Jobs in error (of one step with ``step_id``), from the counts."""
        if step_id is None:
            return self.counts.get("error", 0)
        return sum(step.counts.get("error", 0) for step in self.steps if step.id == step_id)


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
    concurrency: int = 1  # jobs it runs at the same time
    processed: int = 0  # results this backend applied from it (completed or failed)
    failed: int = 0  # of which failed (an error; a cancel is not counted)
    first_seen: str = ""  # ISO time this backend first heard of it (its uptime, as far as we know)
    last_job: int | None = None  # the job of its last result
    last_job_at: str | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """What changed since the previous update (coalesced: many broker events, one update)."""

    workflow_ids: frozenset[int] = frozenset()
    job_ids: frozenset[int] = frozenset()
    queues: bool = False
    workers: bool = False
    connection: str | None = None  # new connection state, when it changed
    messages: tuple[str, ...] = field(default_factory=tuple)  # notices for the operator (errors, warnings)


def merge_updates(first: Update, second: Update) -> Update:
    """One update that says everything both say (the later connection state wins)."""
    return Update(
        workflow_ids=first.workflow_ids | second.workflow_ids,
        job_ids=first.job_ids | second.job_ids,
        queues=first.queues or second.queues,
        workers=first.workers or second.workers,
        connection=second.connection if second.connection is not None else first.connection,
        messages=first.messages + second.messages,
    )


@dataclass(frozen=True, slots=True)
class StepStats:
    """How long a step's finished jobs took (`WorkbenchBackend.step_stats`): seconds, None without any."""

    timed: int = 0  # jobs with a reported duration
    minimum: float | None = None
    median: float | None = None
    p95: float | None = None
    maximum: float | None = None
    throughput: float | None = None  # jobs finished per second, from the first start to the last finish
    slowest: tuple[JobView, ...] = ()


# ---------------------------------------------------------------------------------------------- JSON
# The HTTP API (stepflow_tui/service) and its client (backend/remote.py) exchange these as plain JSON objects.

def step_to_dict(view: StepView) -> dict[str, Any]:
    """A `StepView` as a JSON object."""
    return {"id": view.id, "name": view.name, "label": view.label, "status": view.status,
            "counts": dict(view.counts), "job_count": view.job_count, "launched_at": view.launched_at,
            "finished_at": view.finished_at}


def step_from_dict(data: dict[str, Any]) -> StepView:
    """The inverse of `step_to_dict`."""
    return StepView(id=data["id"], name=data["name"], label=data["label"], status=data["status"],
                    counts=dict(data["counts"]), job_count=data["job_count"], launched_at=data.get("launched_at"),
                    finished_at=data.get("finished_at"))


def workflow_to_dict(view: WorkflowView) -> dict[str, Any]:
    """A `WorkflowView` as a JSON object (steps included)."""
    return {"id": view.id, "identifier": view.identifier, "label": view.label, "version": view.version,
            "status": view.status, "paused": view.paused, "parameters": dict(view.parameters),
            "counts": dict(view.counts), "steps": [step_to_dict(s) for s in view.steps],
            "created_at": view.created_at, "updated_at": view.updated_at, "finished_at": view.finished_at}


def workflow_from_dict(data: dict[str, Any]) -> WorkflowView:
    """The inverse of `workflow_to_dict`."""
    return WorkflowView(id=data["id"], identifier=data["identifier"], label=data["label"],
                        version=data["version"], status=data["status"], paused=data["paused"],
                        parameters=dict(data["parameters"]), counts=dict(data["counts"]),
                        steps=tuple(step_from_dict(s) for s in data["steps"]), created_at=data["created_at"],
                        updated_at=data["updated_at"], finished_at=data.get("finished_at"))


def job_to_dict(view: JobView) -> dict[str, Any]:
    """A `JobView` (a row of the tree) as a JSON object."""
    return {"id": view.id, "workflow_id": view.workflow_id, "step_id": view.step_id, "job_type": view.job_type,
            "status": view.status, "progress": view.progress, "error": view.error, "input": view.input,
            "worker": view.worker, "duration": view.duration, "started_at": view.started_at,
            "position": view.position}


def job_from_dict(data: dict[str, Any]) -> JobView:
    """The inverse of `job_to_dict`."""
    return JobView(id=data["id"], workflow_id=data["workflow_id"], step_id=data["step_id"],
                   job_type=data["job_type"], status=data["status"], progress=data["progress"],
                   error=data.get("error"), input=data.get("input"), worker=data.get("worker"),
                   duration=data.get("duration"), started_at=data.get("started_at"), position=data.get("position"))


def stats_to_dict(stats: StepStats) -> dict[str, Any]:
    """A `StepStats` as a JSON object."""
    return {"timed": stats.timed, "minimum": stats.minimum, "median": stats.median, "p95": stats.p95,
            "maximum": stats.maximum, "throughput": stats.throughput,
            "slowest": [job_to_dict(job) for job in stats.slowest]}


def stats_from_dict(data: dict[str, Any]) -> StepStats:
    """The inverse of `stats_to_dict`."""
    return StepStats(timed=data.get("timed", 0), minimum=data.get("minimum"), median=data.get("median"),
                     p95=data.get("p95"), maximum=data.get("maximum"), throughput=data.get("throughput"),
                     slowest=tuple(job_from_dict(job) for job in data.get("slowest", ())))


def worker_to_dict(view: WorkerView) -> dict[str, Any]:
    """A `WorkerView` as a JSON object."""
    return {"instance_id": view.instance_id, "label": view.label, "job_types": list(view.job_types),
            "activity": view.activity, "current_jobs": list(view.current_jobs), "hostname": view.hostname,
            "pid": view.pid, "version": view.version, "last_seen": view.last_seen, "lost": view.lost,
            "concurrency": view.concurrency, "processed": view.processed, "failed": view.failed,
            "first_seen": view.first_seen, "last_job": view.last_job, "last_job_at": view.last_job_at}


def worker_from_dict(data: dict[str, Any]) -> WorkerView:
    """The inverse of `worker_to_dict`."""
    return WorkerView(instance_id=data["instance_id"], label=data["label"], job_types=tuple(data["job_types"]),
                      activity=data["activity"], current_jobs=tuple(data["current_jobs"]),
                      hostname=data["hostname"], pid=data["pid"], version=data["version"],
                      last_seen=data["last_seen"], lost=data["lost"], concurrency=data.get("concurrency", 1),
                      processed=data.get("processed", 0), failed=data.get("failed", 0),
                      first_seen=data.get("first_seen", ""), last_job=data.get("last_job"),
                      last_job_at=data.get("last_job_at"))


def update_to_dict(update: Update) -> dict[str, Any]:
    """An `Update` as a JSON object (id sets as sorted lists)."""
    return {"workflow_ids": sorted(update.workflow_ids), "job_ids": sorted(update.job_ids),
            "queues": update.queues, "workers": update.workers, "connection": update.connection,
            "messages": list(update.messages)}


def update_from_dict(data: dict[str, Any]) -> Update:
    """The inverse of `update_to_dict` (missing keys take their defaults)."""
    return Update(workflow_ids=frozenset(data.get("workflow_ids", ())), job_ids=frozenset(data.get("job_ids", ())),
                  queues=bool(data.get("queues", False)), workers=bool(data.get("workers", False)),
                  connection=data.get("connection"), messages=tuple(data.get("messages", ())))
