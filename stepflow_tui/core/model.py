"""The state model: workflows, steps, jobs and their statuses.

Pure data, no I/O. Every object converts to and from a plain JSON-able dict (``to_dict`` / ``from_dict``),
which is what the store persists. Times are ISO-8601 UTC strings (`core.clock`) given by the caller (the
engine takes a clock), so the model stays deterministic under test. The status sets below are the one definition
of each group of statuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"  # order created (and sent, once ``dispatched``), waiting for a worker
    PROCESSING = "processing"  # a worker reported progression
    RETRYING = "retrying"  # failed, waiting for its automatic retry
    COMPLETED = "completed"
    ERROR = "error"
    SKIPPED = "skipped"
    STOPPED = "stopped"  # cancelled or dropped by an abort


class StepStatus(StrEnum):
    PENDING = "pending"  # waiting for its required_to_start steps
    QUEUED = "queued"  # launched, no job started yet
    PROCESSING = "processing"
    COMPLETED = "completed"
    ERROR = "error"
    SKIPPED = "skipped"
    STOPPED = "stopped"


class WorkflowStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    COMPLETED = "completed"
    ERROR = "error"
    STOPPED = "stopped"  # ended with stopped (cancelled) jobs and no failed one: not an error
    ABORTED = "aborted"


#: Job statuses from which a job will not move without an operator (retry) or the engine (auto retry).
JOB_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.SKIPPED, JobStatus.STOPPED})
#: Job statuses an operator may retry.
JOB_RETRYABLE = frozenset({JobStatus.ERROR, JobStatus.STOPPED})
#: A progression changes nothing for a job in these (a retrying job waits for its new order).
JOB_NO_PROGRESS = JOB_FINAL | {JobStatus.RETRYING}
#: Step statuses that let the steps requiring it start (and, all steps in them, complete the workflow).
STEP_DONE = frozenset({StepStatus.COMPLETED, StepStatus.SKIPPED})
#: Step statuses with jobs still to run.
STEP_ACTIVE = frozenset({StepStatus.QUEUED, StepStatus.PROCESSING})
#: Step statuses that end a workflow once no step is active: in error if one failed, else stopped.
STEP_FAILED = frozenset({StepStatus.ERROR, StepStatus.STOPPED})
WORKFLOW_FINAL = frozenset({WorkflowStatus.COMPLETED, WorkflowStatus.ERROR, WorkflowStatus.STOPPED,
                            WorkflowStatus.ABORTED})


def empty_counts() -> dict[str, int]:
    """Per-step job counts, one key per job status plus ``total``."""
    counts = {status.value: 0 for status in JobStatus}
    counts["total"] = 0
    return counts


@dataclass(slots=True)
class Job:
    id: int
    workflow_id: int
    step_id: int
    job_type: str  # the step's ``name``, e.g. ``checksum`` (queue ``job_checksum``)
    parameters: list[dict[str, Any]]  # the order's parameters, rendered: [{"id", "type", "value"}]
    status: JobStatus = JobStatus.QUEUED
    history: list[list[str]] = field(default_factory=list)  # [[status, iso time, note?], ...]
    progress: int = 0
    attempts: int = 0  # how many times an order was sent
    retries: int = 0  # automatic + manual retries done
    dispatched: bool = False  # the current order was confirmed by the broker
    error: str | None = None
    traceback: str | None = None
    destination_paths: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    worker: str | None = None  # instance id of the worker that reported on it last
    execution_duration: float | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    logs: list[str] = field(default_factory=list)  # what its implementation logged (the last lines), if told

    def parameter(self, parameter_id: str, default: Any = None) -> Any:
        for parameter in self.parameters:
            if parameter.get("id") == parameter_id:
                return parameter.get("value", parameter.get("default", default))
        return default

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow_id": self.workflow_id,
            "step_id": self.step_id,
            "job_type": self.job_type,
            "parameters": self.parameters,
            "status": self.status.value,
            "history": self.history,
            "progress": self.progress,
            "attempts": self.attempts,
            "retries": self.retries,
            "dispatched": self.dispatched,
            "error": self.error,
            "traceback": self.traceback,
            "destination_paths": self.destination_paths,
            "outputs": self.outputs,
            "worker": self.worker,
            "execution_duration": self.execution_duration,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "logs": self.logs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        values = dict(data)
        values["status"] = JobStatus(values["status"])
        return cls(**values)


@dataclass(slots=True)
class StepState:
    """A step of a running workflow: its definition lives in ``Workflow.definition``."""

    id: int
    name: str  # job type
    label: str
    status: StepStatus = StepStatus.PENDING
    job_ids: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=empty_counts)
    launched_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "label": self.label,
            "status": self.status.value,
            "job_ids": self.job_ids,
            "counts": self.counts,
            "launched_at": self.launched_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepState:
        values = dict(data)
        values["status"] = StepStatus(values["status"])
        return cls(**values)


@dataclass(slots=True)
class Workflow:
    id: int
    identifier: str
    label: str
    version: str
    definition: dict[str, Any]  # snapshot of the definition it was started from (restart-safe)
    parameters: dict[str, Any]  # start parameter values
    status: WorkflowStatus = WorkflowStatus.PENDING
    paused: bool = False
    steps: list[StepState] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)  # outputs of jobs, by parameter id
    history: list[list[str]] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""
    finished_at: str | None = None

    def step(self, step_id: int) -> StepState:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"workflow {self.id} has no step {step_id}")

    def counts(self) -> dict[str, int]:
        """Job counts summed over every step."""
        total = empty_counts()
        for step in self.steps:
            for key, value in step.counts.items():
                total[key] = total.get(key, 0) + value
        return total

    @property
    def finished(self) -> bool:
        return self.status in WORKFLOW_FINAL

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identifier": self.identifier,
            "label": self.label,
            "version": self.version,
            "definition": self.definition,
            "parameters": self.parameters,
            "status": self.status.value,
            "paused": self.paused,
            "steps": [step.to_dict() for step in self.steps],
            "variables": self.variables,
            "history": self.history,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workflow:
        values = dict(data)
        values["status"] = WorkflowStatus(values["status"])
        values["steps"] = [StepState.from_dict(step) for step in values["steps"]]
        return cls(**values)


@dataclass
class State:
    """Everything the backend knows. The engine mutates it and marks what changed; the store persists
    the marked parts and clears the marks."""

    workflows: dict[int, Workflow] = field(default_factory=dict)
    jobs: dict[int, Job] = field(default_factory=dict)
    next_workflow_id: int = 1
    next_job_id: int = 1
    dirty_workflows: set[int] = field(default_factory=set)
    dirty_jobs: set[int] = field(default_factory=set)
    deleted_workflows: set[int] = field(default_factory=set)
    deleted_jobs: set[int] = field(default_factory=set)
    #: Which broker (`broker.url.BrokerAddress.identity`, no credentials) the unfinished workflows were started on.
    broker: str | None = None
    dirty_meta: bool = False  # ``broker`` changed: the index is written by the next flush

    def mark_job(self, job: Job) -> None:
        self.dirty_jobs.add(job.id)

    def mark_workflow(self, workflow: Workflow) -> None:
        self.dirty_workflows.add(workflow.id)

    @property
    def dirty(self) -> bool:
        return bool(self.dirty_workflows or self.dirty_jobs or self.deleted_workflows or self.deleted_jobs
                    or self.dirty_meta)
