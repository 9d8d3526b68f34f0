"""The engine: how a workflow advances. Pure logic over a `State` — no I/O, no clock of its own.

The backend feeds it decoded messages and operator commands; the engine mutates the state, marks what changed
(for the store) and queues the jobs whose orders must be sent (``take_outbox``). `Engine` is a facade over its
collaborators: `Progression` (launching steps, status roll-up), `Handlers` (workers' reports, idempotent),
`Commands` (operator commands) and `Dispatcher` (outbox, in-flight window, retry and timeout timers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stepflow_tui.core import clock as clocks
from stepflow_tui.core.commands import Commands, EngineError
from stepflow_tui.core.definitions import WorkflowDefinition
from stepflow_tui.core.dispatch import Dispatcher
from stepflow_tui.core.handlers import Handlers
from stepflow_tui.core.model import Job, JobStatus, State, Workflow
from stepflow_tui.core.notifications import Notification
from stepflow_tui.core.progression import Progression
from stepflow_tui.core.protocol import JobCompleted, JobFailed, JobProgression

__all__ = ["Engine", "EngineError"]


class Engine:
    """Advances the workflows of ``state``: times from ``clock``, delays and deadlines from ``monotonic``;
    ``work_directory`` is the workers' (StepFlow's ``workers_work_directory``), for generated destinations."""

    def __init__(self, state: State, clock: Callable[[], str] = clocks.utc_now,
                 monotonic: Callable[[], float] | None = None, work_directory: str = "") -> None:
        self.state = state
        self.clock = clock
        self.monotonic = monotonic or clocks.monotonic
        self.dispatcher = Dispatcher(state, self.monotonic)
        self.progression = Progression(state, clock, self.dispatcher, work_directory)
        self.handlers = Handlers(self.progression)
        self.commands = Commands(self.progression)
        self._definitions = self.progression.definitions

    @property
    def in_flight(self) -> int:
        """Jobs sent (dispatched) and not final yet: the backend keeps this under its window."""
        return self.dispatcher.in_flight

    # ------------------------------------------------------------------ workflows
    def definition_of(self, workflow: Workflow) -> WorkflowDefinition:
        """``workflow``'s definition, as it was started."""
        return self.progression.definition_of(workflow)

    def start_workflow(self, definition: WorkflowDefinition, given: Mapping[str, Any]) -> Workflow:
        """Create a workflow from ``definition`` with start parameters ``given`` (raises StartParameterError)
        and launch the steps that can start at once."""
        return self.progression.start_workflow(definition, given)

    # ------------------------------------------------------------------ dispatching
    def take_outbox(self, limit: int, durable: Callable[[int], bool] | None = None) -> list[Job]:
        """Up to ``limit`` jobs whose orders should be sent now, fairly across workflows that are not
        paused; with ``durable``, only jobs it says are on disk (the others wait at the head of their
        workflow's queue). Call `mark_dispatched` once the broker confirmed them."""
        for job in self.dispatcher.due_retries():
            self.progression.requeue(self.state.workflows[job.workflow_id], job, "retry")
        return self.dispatcher.take(limit, durable)

    def requeue_unsent(self, jobs: Iterable[Job]) -> None:
        """Orders that could not be published go back to the front of their queues."""
        self.dispatcher.requeue_unsent(jobs)

    def mark_dispatched(self, jobs: Iterable[Job]) -> None:
        """The broker confirmed these jobs' orders."""
        self.dispatcher.mark_dispatched(jobs)

    def pending_count(self) -> int:
        """Jobs waiting to be sent (not counting paused workflows' jobs)."""
        return self.dispatcher.pending_count()

    def next_retry_in(self) -> float | None:
        """Seconds until the next delayed automatic retry is due (None when none waits)."""
        return self.dispatcher.next_retry_in()

    # ------------------------------------------------------------------ messages
    def on_progression(self, message: JobProgression) -> bool:
        """A worker reports progress (False: the message changes nothing)."""
        return self.handlers.on_progression(message)

    def on_completed(self, message: JobCompleted) -> bool:
        """A job completed (False: the message changes nothing)."""
        return self.handlers.on_completed(message)

    def on_failed(self, message: JobFailed) -> bool:
        """A job failed or was stopped (False: the message changes nothing)."""
        return self.handlers.on_failed(message)

    def on_queue_not_found(self, job_id: int) -> bool:
        """An order reached no job queue: no worker has ever declared that job type's queue."""
        return self.handlers.on_queue_not_found(job_id)

    def take_notifications(self) -> list[Notification]:
        """The webhook calls due (notification steps' jobs and hooks); the backend sends them and reports a
        step's with `on_notification_sent`."""
        due, self.progression.notifications[:] = list(self.progression.notifications), []
        return due

    def on_notification_sent(self, job_id: int, error: str | None) -> bool:
        """A notification step's call was made (``error`` None) or failed for good."""
        return self.handlers.on_notification_sent(job_id, error)

    def requeue_refused(self, job_id: int, note: str) -> bool:
        """A worker refused to start ``job_id`` without running it (an SDK worker still busy): its order goes
        out again, and no attempt is counted as failed (False: the job is not waiting or running)."""
        job = self.state.jobs.get(job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
            return False
        self.progression.requeue(self.state.workflows[job.workflow_id], job, note)
        return True

    def fail_job(self, job_id: int, reason: str, *, allow_retry: bool = True) -> bool:
        """Fail a job from the backend's side (lost worker, timeout); retried if its step allows."""
        return self.handlers.fail_job(job_id, reason, allow_retry=allow_retry)

    # ------------------------------------------------------------------ timeouts and lost workers
    def job_timeout(self, job: Job) -> float | None:
        """The job's step ``timeout`` in seconds (None: no limit); sent with the order for the worker."""
        return self.progression.job_timeout(job)

    def fail_overdue(self) -> list[Job]:
        """Fail every job processing longer than its step's timeout plus a margin (`guard_seconds`): its worker
        ignored the order's timeout header or is stuck. Retried if the step allows. Returns the failed jobs."""
        return [job for job in self.dispatcher.overdue() if self.handlers.fail_timed_out(job)]

    def processing_jobs_of(self, instance_id: str) -> list[Job]:
        """Jobs processing and last reported on by worker ``instance_id``."""
        # The jobs in memory (dict.values): a finished workflow's may stay on disk (docs/state.md), and none
        # of those is processing.
        return [job for job in dict.values(self.state.jobs)
                if job.status == JobStatus.PROCESSING and job.worker == instance_id]

    def running_count(self, workflow_id: int) -> int:
        """Jobs of the workflow that may still move it while it is paused: orders sent and not finished,
        or reported processing (kept as they change: no walk over the workflow's jobs)."""
        return self.dispatcher.running_count(workflow_id)

    # ------------------------------------------------------------------ operator commands
    def workflow(self, workflow_id: int) -> Workflow:
        """The workflow ``workflow_id`` (EngineError if there is none)."""
        return self.commands.workflow(workflow_id)

    def failed_jobs(self, workflow_id: int, step_id: int | None = None) -> list[Job]:
        """The jobs in error or stopped of a workflow (or of one of its steps)."""
        return self.commands.failed_jobs(workflow_id, step_id)

    def retry_job(self, job_id: int) -> Job:
        """Queue a job in error or stopped again."""
        return self.commands.retry_job(job_id)

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        """Retry every failed job of a workflow (or of one step); returns how many."""
        return self.commands.retry_failed(workflow_id, step_id)

    def abort(self, workflow_id: int) -> list[Job]:
        """Abort a workflow; returns the jobs that were processing (their workers get stop orders)."""
        return self.commands.abort(workflow_id)

    def pause(self, workflow_id: int) -> None:
        """Send no more orders of this workflow."""
        self.commands.pause(workflow_id)

    def resume(self, workflow_id: int) -> None:
        """Send this paused workflow's orders again."""
        self.commands.resume(workflow_id)

    def delete(self, workflow_id: int) -> None:
        """Remove a finished workflow and its jobs."""
        self.commands.delete(workflow_id)

    # ------------------------------------------------------------------ restart
    def resume_unfinished(self, *, orders_survived: bool) -> int:
        """After a (re)start: queue again what must be sent. ``orders_survived`` is True on a durable broker
        (orders already sent are still in RabbitMQ); False on ``memory://``, where every unfinished job is sent
        again (processing ones went down with the process). Returns how many jobs were queued to send."""
        count = 0
        for workflow in self.state.workflows.values():
            if workflow.finished:
                continue
            self.progression.advance(workflow)
            for step in workflow.steps:
                for job in self.progression.unfinished_jobs(step):
                    if job.status == JobStatus.RETRYING:
                        self.progression.requeue(workflow, job, "retry after restart")
                        count += 1
                    elif not job.dispatched:
                        self.progression.send(workflow, job)
                        count += 1
                    elif orders_survived:
                        self.dispatcher.count_in_flight(job)
                        if job.status == JobStatus.PROCESSING:
                            self.progression.arm_guard(job)  # from now: when it started is not known here
                    else:
                        self.progression.requeue(workflow, job, "sent again after restart")
                        count += 1
        return count
