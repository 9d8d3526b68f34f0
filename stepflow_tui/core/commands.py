"""Operator commands on workflows and jobs: retry, abort, pause, resume, delete. A command that cannot be
carried out raises `EngineError` with a message that says why.
"""

from __future__ import annotations

from stepflow_tui.core.model import (
    JOB_RETRYABLE,
    STEP_ACTIVE,
    Job,
    JobStatus,
    StepStatus,
    Workflow,
    WorkflowStatus,
)
from stepflow_tui.core.progression import Progression


class EngineError(ValueError):
    """An operator command that cannot be carried out (message says why)."""


class Commands:
    """Carries out operator commands on the state of a `Progression`."""

    def __init__(self, progression: Progression) -> None:
        self.progression = progression
        self.state = progression.state
        self.dispatcher = progression.dispatcher

    def workflow(self, workflow_id: int) -> Workflow:
        """The workflow ``workflow_id`` (EngineError if there is none)."""
        workflow = self.state.workflows.get(workflow_id)
        if workflow is None:
            raise EngineError(f"no workflow #{workflow_id}")
        return workflow

    def failed_jobs(self, workflow_id: int, step_id: int | None = None) -> list[Job]:
        """The jobs in error or stopped of a workflow (or of one of its steps)."""
        workflow = self.workflow(workflow_id)
        jobs = []
        for step in workflow.steps:
            if step_id is not None and step.id != step_id:
                continue
            if not (step.counts["error"] or step.counts["stopped"]):
                continue
            jobs.extend(j for j in (self.state.jobs.get(i) for i in step.job_ids)
                        if j is not None and j.status in JOB_RETRYABLE)
        return jobs

    def retry_job(self, job_id: int) -> Job:
        """Queue a job in error or stopped again."""
        job = self.state.jobs.get(job_id)
        if job is None:
            raise EngineError(f"no job #{job_id}")
        if job.status not in JOB_RETRYABLE:
            raise EngineError(f"job #{job_id} is {job.status.value}: only a job in error or stopped can be retried")
        workflow = self.workflow(job.workflow_id)
        if workflow.status == WorkflowStatus.ABORTED:
            raise EngineError(f"workflow #{workflow.id} was aborted: its jobs cannot be retried")
        job.retries += 1
        job.error = None
        job.traceback = None
        self.progression.requeue(workflow, job, "retried by operator")
        if workflow.status in (WorkflowStatus.ERROR, WorkflowStatus.STOPPED, WorkflowStatus.COMPLETED):
            workflow.finished_at = None
        return job

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        """Retry every failed job of a workflow (or of one step); returns how many."""
        jobs = self.failed_jobs(workflow_id, step_id)
        for job in jobs:
            self.retry_job(job.id)
        return len(jobs)

    def abort(self, workflow_id: int) -> list[Job]:
        """Abort: pending steps are skipped, unfinished jobs stopped (their late results are ignored).
        Returns the jobs that were processing, for the backend to send stop orders to their workers."""
        workflow = self.workflow(workflow_id)
        if workflow.finished:
            raise EngineError(f"workflow #{workflow_id} is already {workflow.status.value}")
        running = []
        now = self.progression.clock()
        for step in workflow.steps:
            for job in self.progression.unfinished_jobs(step):
                if job.status == JobStatus.PROCESSING:
                    running.append(job)
                self._stop(job, step.counts, now)
            if step.status == StepStatus.PENDING:
                step.status = StepStatus.SKIPPED
            elif step.status in STEP_ACTIVE:
                step.status = StepStatus.STOPPED
                step.finished_at = now
        self.dispatcher.drop_workflow(workflow.id)
        workflow.status = WorkflowStatus.ABORTED
        workflow.history.append([WorkflowStatus.ABORTED.value, now])
        workflow.updated_at = now
        workflow.finished_at = now
        self.state.mark_workflow(workflow)
        return running

    def _stop(self, job: Job, counts: dict[str, int], now: str) -> None:
        """Stop an unfinished job of an aborted workflow (no roll-up: the workflow ends aborted)."""
        self.dispatcher.forget(job.id)
        counts[job.status.value] -= 1
        counts[JobStatus.STOPPED.value] += 1
        job.status = JobStatus.STOPPED
        job.error = "workflow aborted"
        job.finished_at = now
        job.history.append([JobStatus.STOPPED.value, now, "workflow aborted"])
        self.dispatcher.landed(job)
        self.state.mark_job(job)

    def pause(self, workflow_id: int) -> None:
        """Send no more orders of this workflow (orders already in a job queue still run)."""
        workflow = self.workflow(workflow_id)
        if workflow.finished:
            raise EngineError(f"workflow #{workflow_id} is {workflow.status.value}: nothing to pause")
        if not workflow.paused:
            workflow.paused = True
            self.state.mark_workflow(workflow)
            self.progression.roll_up(workflow)

    def resume(self, workflow_id: int) -> None:
        """Send this paused workflow's orders again."""
        workflow = self.workflow(workflow_id)
        if workflow.paused:
            workflow.paused = False
            self.state.mark_workflow(workflow)
            self.progression.roll_up(workflow)

    def delete(self, workflow_id: int) -> None:
        """Remove a finished workflow and its jobs from the state."""
        workflow = self.workflow(workflow_id)
        if not workflow.finished:
            raise EngineError(f"workflow #{workflow_id} is {workflow.status.value}: abort it before deleting")
        for step in workflow.steps:
            for job_id in step.job_ids:
                if self.state.jobs.pop(job_id, None) is not None:
                    self.state.deleted_jobs.add(job_id)
                    self.state.dirty_jobs.discard(job_id)
                    self.dispatcher.forget(job_id)
        del self.state.workflows[workflow_id]
        self.progression.definitions.pop(workflow_id, None)
        self.dispatcher.drop_workflow(workflow_id)
        self.state.dirty_workflows.discard(workflow_id)
        self.state.deleted_workflows.add(workflow_id)
