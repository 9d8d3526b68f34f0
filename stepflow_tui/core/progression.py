"""Progression: how a workflow advances. Starting it, launching the steps whose required steps are done (one job,
one job per input path, or one job for all of them), every job status change, and the roll-up of job counts into
step and workflow statuses. Orders to send go to the `Dispatcher`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stepflow_tui.core import launch
from stepflow_tui.core.definitions import (
    ONE_FOR_MANY,
    StepDefinition,
    WorkflowDefinition,
    definition_from_dict,
    resolve_start_parameters,
)
from stepflow_tui.core.dispatch import Dispatcher, retry_delay
from stepflow_tui.core.model import (
    JOB_FINAL,
    STEP_ACTIVE,
    STEP_DONE,
    STEP_FAILED,
    Job,
    JobStatus,
    State,
    StepState,
    StepStatus,
    Workflow,
    WorkflowStatus,
)
from stepflow_tui.core.notifications import (
    NOTIFICATION_MODE,
    Notification,
    hook_notifications,
    step_notification,
)


class Progression:
    """Advances the workflows of one `State`; times come from ``clock``."""

    def __init__(self, state: State, clock: Callable[[], str], dispatcher: Dispatcher,
                 work_directory: str = "") -> None:
        self.state = state
        self.clock = clock
        self.dispatcher = dispatcher
        #: The workers' work directory (StepFlow's ``workers_work_directory``) for steps without ``work_dir``.
        self.work_directory = work_directory
        #: Parsed definitions of the workflows, by id (parsed again from the state when missing).
        self.definitions: dict[int, WorkflowDefinition] = {}
        #: Webhook calls due (notification steps' jobs, hooks): the backend takes and sends them.
        self.notifications: list[Notification] = []

    def definition_of(self, workflow: Workflow) -> WorkflowDefinition:
        """``workflow``'s definition, as it was started."""
        definition = self.definitions.get(workflow.id)
        if definition is None:
            definition = definition_from_dict(workflow.definition, f"state (workflow #{workflow.id})")
            self.definitions[workflow.id] = definition
        return definition

    def job_timeout(self, job: Job) -> float | None:
        """The job's step ``timeout`` in seconds (None: no limit); sent with the order for the worker."""
        workflow = self.state.workflows.get(job.workflow_id)
        if workflow is None:
            return None
        try:
            return self.definition_of(workflow).step(job.step_id).timeout
        except KeyError:
            return None

    def arm_guard(self, job: Job) -> None:
        """Guard a processing job whose step has a timeout."""
        timeout = self.job_timeout(job)
        if timeout:
            self.dispatcher.arm_guard(job.id, timeout)

    def unfinished_jobs(self, step: StepState) -> Iterator[Job]:
        """``step``'s jobs not final yet, in order (each checked when it is reached)."""
        for job_id in step.job_ids:
            job = self.state.jobs.get(job_id)
            if job is not None and job.status not in JOB_FINAL:
                yield job

    # ------------------------------------------------------------------ starting and launching
    def start_workflow(self, definition: WorkflowDefinition, given: Mapping[str, Any]) -> Workflow:
        """Create a workflow from ``definition`` with start parameters ``given`` (raises StartParameterError)
        and launch the steps that can start at once."""
        parameters = resolve_start_parameters(definition, {k: v for k, v in given.items()})
        state = self.state
        now = self.clock()
        workflow = Workflow(
            id=state.next_workflow_id,
            identifier=definition.identifier,
            label=definition.label,
            version=definition.version,
            definition=dict(definition.raw),
            parameters=parameters,
            status=WorkflowStatus.PROCESSING,
            steps=[StepState(id=s.id, name=s.name, label=s.label) for s in definition.steps],
            history=[[WorkflowStatus.PROCESSING.value, now]],
            created_at=now,
            updated_at=now,
        )
        state.next_workflow_id += 1
        state.workflows[workflow.id] = workflow
        self.definitions[workflow.id] = definition
        state.mark_workflow(workflow)
        self.advance(workflow)
        return workflow

    def advance(self, workflow: Workflow) -> None:
        """Launch every pending step whose required steps are done, then roll the status up."""
        if workflow.status == WorkflowStatus.ABORTED:
            return
        definition = self.definition_of(workflow)
        progressed = True
        while progressed:
            progressed = False
            done = {step.id for step in workflow.steps if _done(definition, step)}
            for step_def in definition.steps:
                step = workflow.step(step_def.id)
                if step.status != StepStatus.PENDING:
                    continue
                if all(r in done for r in step_def.required_to_start):
                    self._launch(workflow, step_def, step)
                    progressed = True
        self.roll_up(workflow)

    def _launch(self, workflow: Workflow, step_def: StepDefinition, step: StepState) -> None:
        now = self.clock()
        step.launched_at = now
        step.status = StepStatus.QUEUED
        base = launch.step_variables(self.definition_of(workflow), step_def, workflow_id=workflow.id,
                                     start_parameters=workflow.parameters, outputs=workflow.variables, now=now,
                                     work_directory=self.work_directory)
        parameters = [p for p in step_def.parameters if p.get("type") != "filter"]
        inputs = self._inputs(workflow, step_def) if step_def.parent_ids else None
        try:
            runs = launch.condition_holds(step_def, dict(base, source_paths=inputs or []))
        except launch.LaunchError as error:
            self._create_job(workflow, step_def, step, launch.JobSpec(parameters, str(error)))
            runs = None
        if runs is False:
            # StepFlow's skipped job: shows why; the children find no input and are skipped in turn.
            job = self._create_job(workflow, step_def, step, launch.JobSpec(parameters), send=False)
            job.finished_at = now
            self.set_status(workflow, job, JobStatus.SKIPPED, f"condition is false: {step_def.condition}")
        if runs and (inputs is None or inputs or step_def.mode == NOTIFICATION_MODE):
            for spec in self._job_specs(workflow, step_def, parameters, base, inputs):
                self._create_job(workflow, step_def, step, spec)
        self.refresh_step(workflow, step)  # no jobs (a step with parents and no input): skipped

    def _job_specs(self, workflow: Workflow, step_def: StepDefinition, parameters: list[dict[str, Any]],
                   base: dict[str, Any], inputs: list[str] | None) -> list[launch.JobSpec]:
        paths = inputs if inputs is not None else launch.listed_paths(parameters, base)
        if step_def.mode in (ONE_FOR_MANY, NOTIFICATION_MODE):
            return [launch.one_for_many_spec(step_def, parameters, base, paths)]
        own = [p for p in parameters if p.get("id") != "source_paths"] if paths is not None else parameters
        return launch.one_for_one_specs(step_def, own, base, paths, workflow.id)

    def _inputs(self, workflow: Workflow, step_def: StepDefinition) -> list[str]:
        """The parents' completed jobs' destination paths, in job order, each once, filtered by ``input_filter``.
        A job that reported none produced its order's ``destination_path`` (a Media Cloud AI worker often
        reports nothing: StepFlow takes that parameter too)."""
        paths: list[str] = []
        for parent_id in step_def.parent_ids:
            for job_id in workflow.step(parent_id).job_ids:
                job = self.state.jobs.get(job_id)
                if job is not None and job.status == JobStatus.COMPLETED:
                    given = job.parameter("destination_path")
                    paths.extend(job.destination_paths or ([given] if isinstance(given, str) and given else []))
        paths = list(dict.fromkeys(paths))  # each path once, as StepFlow (segment jobs share destinations)
        for parameter in step_def.parameters:
            if parameter.get("type") == "filter":
                rule = parameter.get("value", parameter.get("default")) or {}
                endings = rule.get("ends_with") if isinstance(rule, dict) else None
                if endings:
                    paths = [p for p in paths if p.endswith(tuple(endings))]
        return paths

    def _create_job(self, workflow: Workflow, step_def: StepDefinition, step: StepState, spec: launch.JobSpec,
                    *, send: bool = True) -> Job:
        state = self.state
        now = self.clock()
        job = Job(id=state.next_job_id, workflow_id=workflow.id, step_id=step.id, job_type=step_def.name,
                  parameters=spec.parameters, history=[[JobStatus.QUEUED.value, now]], created_at=now)
        state.next_job_id += 1
        state.jobs[job.id] = job
        step.job_ids.append(job.id)
        step.counts["total"] += 1
        step.counts[JobStatus.QUEUED.value] += 1
        state.mark_job(job)
        if spec.error is not None:
            job.error = spec.error
            self.set_status(workflow, job, JobStatus.ERROR, spec.error)
        elif send:
            self.send(workflow, job)
        return job

    def send(self, workflow: Workflow, job: Job) -> None:
        """Queue ``job``'s order for the broker — or, for a ``notification`` step, its webhook call."""
        step_def = self.definition_of(workflow).step(job.step_id)
        if step_def.mode != NOTIFICATION_MODE:
            self.dispatcher.enqueue(job)
            return
        try:
            notification = step_notification(job.parameters, workflow_id=workflow.id, job_id=job.id,
                                             label=step_def.label, default_body=self._summary(workflow, job))
        except ValueError as error:
            job.error = str(error)
            job.finished_at = self.clock()
            self.set_status(workflow, job, JobStatus.ERROR, job.error)
            return
        self.notifications.append(notification)

    def _summary(self, workflow: Workflow, job: Job | None = None) -> dict[str, Any]:
        """What a webhook is told by default: the workflow, and the job when there is one."""
        summary: dict[str, Any] = {"workflow_id": workflow.id, "workflow_identifier": workflow.identifier,
                                   "workflow_reference": self.definition_of(workflow).reference,
                                   "status": workflow.status.value}
        if job is not None:
            summary.update(job_id=job.id, job_name=job.job_type, step_id=job.step_id,
                           job_status=job.status.value, error=job.error)
        return summary

    def _hooks(self, workflow: Workflow, event: str, job: Job | None = None) -> None:
        hooks = self.definition_of(workflow).notification_hooks
        if hooks:
            self.notifications.extend(hook_notifications(hooks, event, self._summary(workflow, job)))

    # ------------------------------------------------------------------ failing and queueing again
    def fail(self, workflow: Workflow, job: Job, reason: str, traceback: str | None,
             allow_retry: bool = True) -> None:
        """``job`` failed: retried automatically (at once or after its delay) while its step allows, else error."""
        step_def = self.definition_of(workflow).step(job.step_id)
        job.error = reason
        job.traceback = traceback
        automatic = sum(1 for entry in job.history if entry[0] == JobStatus.RETRYING.value)
        if allow_retry and automatic < step_def.max_retries and workflow.status != WorkflowStatus.ABORTED:
            delay = retry_delay(step_def.retry_delay, automatic)
            note = f"attempt {automatic + 1} failed: {reason}; retry {automatic + 1}/{step_def.max_retries}"
            if delay:
                note += f" in {delay:g} s"
            self.set_status(workflow, job, JobStatus.RETRYING, note)
            job.retries += 1
            if delay:
                self.dispatcher.schedule_retry(job.id, delay)
            else:
                self.requeue(workflow, job, None)
            return
        job.finished_at = self.clock()
        self.set_status(workflow, job, JobStatus.ERROR, reason)

    def requeue(self, workflow: Workflow, job: Job, note: str | None) -> None:
        """Queue ``job`` again for a new order (a retry, or a restart that lost its order)."""
        job.dispatched = False
        job.progress = 0
        job.started_at = None
        job.finished_at = None
        self.set_status(workflow, job, JobStatus.QUEUED, note)
        self.send(workflow, job)

    # ------------------------------------------------------------------ status bookkeeping
    def set_status(self, workflow: Workflow, job: Job, status: JobStatus, note: str | None = None) -> None:
        """Move ``job`` to ``status`` (a history entry even if unchanged), then its step and workflow."""
        old = job.status
        step = workflow.step(job.step_id)
        if old != status:
            step.counts[old.value] -= 1
            step.counts[status.value] += 1
            job.status = status
        self.dispatcher.track(job)  # after `requeue` cleared ``dispatched`` too
        entry = [status.value, self.clock()]
        if note:
            entry.append(note)
        job.history.append(entry)
        if status in JOB_FINAL or status == JobStatus.RETRYING or (status == JobStatus.QUEUED and old != status):
            self.dispatcher.landed(job)
        if status == JobStatus.PROCESSING and old != status:
            self.arm_guard(job)
        elif status != JobStatus.PROCESSING:
            self.dispatcher.disarm_guard(job.id)
        self.state.mark_job(job)
        self.state.mark_workflow(workflow)
        workflow.updated_at = entry[1]
        if old != status and status in (JobStatus.COMPLETED, JobStatus.ERROR):
            self._hooks(workflow, f"job_{status.value}", job)
        before = step.status
        self.refresh_step(workflow, step)
        if step.status != before:
            self.advance(workflow)
        elif workflow.status != WorkflowStatus.ABORTED:
            self.roll_up(workflow)

    def refresh_step(self, workflow: Workflow, step: StepState) -> None:
        """A launched step's status from its job counts."""
        if step.status == StepStatus.PENDING:
            return
        c = step.counts
        active = c["queued"] + c["processing"] + c["retrying"]
        if active:
            started = c["total"] - c["queued"]
            status = StepStatus.PROCESSING if started else StepStatus.QUEUED
        elif c["error"]:
            status = StepStatus.ERROR
        elif c["stopped"]:
            status = StepStatus.STOPPED
        elif c["total"] == 0 or c["skipped"] == c["total"]:
            status = StepStatus.SKIPPED
        else:
            status = StepStatus.COMPLETED
        if status != step.status:
            step.status = status
            step.finished_at = self.clock() if status not in STEP_ACTIVE else None
            self.state.mark_workflow(workflow)

    def roll_up(self, workflow: Workflow) -> None:
        """The workflow's status from its steps' (an aborted workflow stays aborted)."""
        if workflow.status == WorkflowStatus.ABORTED:
            return
        definition = self.definition_of(workflow)
        active = any(step.status in STEP_ACTIVE for step in workflow.steps)
        failed = [step for step in workflow.steps if step.status in STEP_FAILED and not _done(definition, step)]
        if all(_done(definition, step) for step in workflow.steps):
            status = WorkflowStatus.COMPLETED
        elif not active and any(step.status == StepStatus.ERROR for step in failed):
            status = WorkflowStatus.ERROR
        elif not active and failed:
            status = WorkflowStatus.STOPPED  # stopped jobs and no failed one: an operator's cancel, not an error
        elif workflow.paused:
            status = WorkflowStatus.PAUSED
        else:
            status = WorkflowStatus.PROCESSING
        if status != workflow.status:
            now = self.clock()
            workflow.status = status
            workflow.history.append([status.value, now])
            workflow.updated_at = now
            workflow.finished_at = now if workflow.finished else None
            if workflow.finished:
                workflow.paused = False  # nothing left to hold back
            self.state.mark_workflow(workflow)
            if status in (WorkflowStatus.COMPLETED, WorkflowStatus.ERROR):
                self._hooks(workflow, f"workflow_{status.value}")


def _done(definition: WorkflowDefinition, step: StepState) -> bool:
    """Whether ``step`` lets the steps after it start: completed, skipped, or failed with ``allow_failure``."""
    if step.status in STEP_DONE:
        return True
    return step.status == StepStatus.ERROR and definition.step(step.id).allow_failure
