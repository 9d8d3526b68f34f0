"""Handlers of the workers' reports (progression, completion, failure, an order no queue took) and of the
backend's own verdicts (a lost worker, a timeout). Each is idempotent: a message about an unknown job or a job
already final changes nothing and returns False, so a redelivery after a crash is harmless.
"""

from __future__ import annotations

from stepflow_tui.core.clock import seconds_before
from stepflow_tui.core.dispatch import timeout_reason
from stepflow_tui.core.model import JOB_FINAL, JOB_NO_PROGRESS, Job, JobStatus, Workflow
from stepflow_tui.core.progression import Progression
from stepflow_tui.core.protocol import JobCompleted, JobFailed, JobProgression


class Handlers:
    """Applies reports about jobs to the state, through a `Progression`."""

    def __init__(self, progression: Progression) -> None:
        self.progression = progression
        self.state = progression.state
        self.clock = progression.clock

    def _open_job(self, job_id: int, *, closed: frozenset[JobStatus] = JOB_FINAL) -> tuple[Job, Workflow] | None:
        """The job a message is about and its workflow, or None when it is unknown or already in one of the
        ``closed`` statuses: such a message changes nothing (idempotent handlers)."""
        job = self.state.jobs.get(job_id)
        if job is None or job.status in closed:
            return None
        workflow = self.state.workflows.get(job.workflow_id)
        if workflow is None:
            return None
        return job, workflow

    def on_progression(self, message: JobProgression) -> bool:
        """A worker reports progress: the job is processing."""
        found = self._open_job(message.job_id, closed=JOB_NO_PROGRESS)
        if found is None:
            return False
        job, workflow = found
        if message.instance_id:
            job.worker = message.instance_id
        job.progress = max(0, min(100, int(message.progression)))
        if job.status == JobStatus.QUEUED:
            job.started_at = self.clock()
            self.progression.set_status(workflow, job, JobStatus.PROCESSING)
        self.state.mark_job(job)
        return True

    def on_completed(self, message: JobCompleted) -> bool:
        """A job completed: its outputs become workflow variables; the steps after it may start."""
        found = self._open_job(message.job_id)
        if found is None:
            return False
        job, workflow = found
        now = self.clock()
        _started_unseen(job, now, message.execution_duration)
        job.progress = 100
        job.execution_duration = message.execution_duration
        job.destination_paths = [str(p) for p in message.destination_paths]
        job.outputs = list(message.parameters)
        job.logs = list(message.logs)
        job.error = None
        job.traceback = None
        job.finished_at = now
        job.started_at = job.started_at or now
        if message.instance_id:
            job.worker = message.instance_id
        for output in job.outputs:
            if isinstance(output, dict) and "id" in output:
                workflow.variables[str(output["id"])] = output.get("value")
        self.progression.set_status(workflow, job, JobStatus.COMPLETED)
        return True

    def on_notification_sent(self, job_id: int, error: str | None) -> bool:
        """A notification step's webhook call was made: its job completes, or fails with ``error`` (the
        backend already retried; the engine does not)."""
        found = self._open_job(job_id)
        if found is None:
            return False
        job, workflow = found
        if error is not None:
            self.progression.fail(workflow, job, error, None, allow_retry=False)
            return True
        job.progress = 100
        job.finished_at = job.started_at = self.clock()
        self.progression.set_status(workflow, job, JobStatus.COMPLETED)
        return True

    def on_failed(self, message: JobFailed) -> bool:
        """A job failed (retried if its step allows) or was stopped."""
        found = self._open_job(message.job_id)
        if found is None:
            return False
        job, workflow = found
        if message.instance_id:  # a worker had it (not the backend cancelling a job still queued)
            _started_unseen(job, self.clock(), message.execution_duration)
            job.worker = message.instance_id
        job.execution_duration = message.execution_duration
        job.logs = list(message.logs)
        if message.stopped:
            job.error = message.message or "stopped"
            job.finished_at = self.clock()
            self.progression.set_status(workflow, job, JobStatus.STOPPED, job.error)
            return True
        self.progression.fail(workflow, job, message.message, message.traceback)
        return True

    def on_queue_not_found(self, job_id: int) -> bool:
        """An order reached no job queue: no worker has ever declared that job type's queue."""
        found = self._open_job(job_id)
        if found is None:
            return False
        job, workflow = found
        reason = (f"no queue for job type {job.job_type!r}: no worker serves job_{job.job_type} "
                  f"(start one with: stepflow worker --job-type {job.job_type})")
        self.progression.fail(workflow, job, reason, None, allow_retry=False)
        return True

    def fail_job(self, job_id: int, reason: str, *, allow_retry: bool = True) -> bool:
        """Fail a job from the backend's side (lost worker, timeout); retried if its step allows."""
        found = self._open_job(job_id)
        if found is None:
            return False
        self.progression.fail(found[1], found[0], reason, None, allow_retry=allow_retry)
        return True

    def fail_timed_out(self, job: Job) -> bool:
        """Fail a processing job whose timeout guard ran out."""
        return self.fail_job(job.id, timeout_reason(self.progression.job_timeout(job) or 0.0))


def _started_unseen(job: Job, now: str, duration: float) -> None:
    """A result for a job never reported processing: a worker sends no progression 0 when the result is ready
    by the time it publishes (docs/worker.md). Record the start the result implies (its end minus its
    execution duration, never before the job was queued), so the history still reads queued → processing →
    final."""
    if job.status != JobStatus.QUEUED:
        return
    started = seconds_before(now, duration or 0.0)
    queued = job.history[-1][1] if job.history and len(job.history[-1]) > 1 else None
    if isinstance(queued, str) and started < queued:
        started = queued  # e.g. a late result of an earlier attempt, after a retry queued the job again
    job.started_at = started
    job.history.append([JobStatus.PROCESSING.value, started])
