"""Progression: how a workflow advances. Starting it, launching the steps whose required steps are done (one job,
one job per input path, or one job for all of them), every job status change, and the roll-up of job counts into
step and workflow statuses. Orders to send go to the `Dispatcher`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from stepflow_tui.core import templates
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


class Progression:
    """Advances the workflows of one `State`; times come from ``clock``."""

    def __init__(self, state: State, clock: Callable[[], str], dispatcher: Dispatcher) -> None:
        self.state = state
        self.clock = clock
        self.dispatcher = dispatcher
        #: Parsed definitions of the workflows, by id (parsed again from the state when missing).
        self.definitions: dict[int, WorkflowDefinition] = {}

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
            statuses = {step.id: step.status for step in workflow.steps}
            for step_def in definition.steps:
                step = workflow.step(step_def.id)
                if step.status != StepStatus.PENDING:
                    continue
                if all(statuses.get(r) in STEP_DONE for r in step_def.required_to_start):
                    self._launch(workflow, step_def, step)
                    progressed = True
        self.roll_up(workflow)

    def _launch(self, workflow: Workflow, step_def: StepDefinition, step: StepState) -> None:
        now = self.clock()
        step.launched_at = now
        step.status = StepStatus.QUEUED
        base = dict(workflow.parameters)
        base.update(workflow.variables)
        base.update(workflow_id=workflow.id, workflow_identifier=workflow.identifier,
                    step_id=step_def.id, step_name=step_def.name)
        parameters = [p for p in step_def.parameters if p.get("type") != "filter"]
        inputs: list[str] | None = None
        if step_def.parent_ids:
            inputs = self._inputs(workflow, step_def)
            if not inputs:
                self.refresh_step(workflow, step)  # no jobs: skipped
                return
        paths = inputs if inputs is not None else _list_parameter(parameters, "source_paths")
        if step_def.mode == ONE_FOR_MANY:
            variables = dict(base, source_paths=paths or [])
            extra = [] if paths is None else [
                {"id": "source_paths", "type": "array_of_strings", "value": list(paths)}]
            own = [p for p in parameters if p.get("id") != "source_paths"] if paths is not None else parameters
            self._create_job(workflow, step_def, step, own, variables, extra)
        elif paths is None:
            self._create_job(workflow, step_def, step, parameters, base, [])
        else:
            own = [p for p in parameters if p.get("id") != "source_paths"]
            for path in paths:
                variables = dict(base, **templates.input_variables(path))
                extra = [{"id": "source_path", "type": "string", "value": path}]
                self._create_job(workflow, step_def, step, own, variables, extra)
        self.refresh_step(workflow, step)

    def _inputs(self, workflow: Workflow, step_def: StepDefinition) -> list[str]:
        """The parents' jobs' destination paths, in job order, filtered by ``input_filter``."""
        paths: list[str] = []
        for parent_id in step_def.parent_ids:
            for job_id in workflow.step(parent_id).job_ids:
                job = self.state.jobs.get(job_id)
                if job is not None and job.status == JobStatus.COMPLETED:
                    paths.extend(job.destination_paths)
        for parameter in step_def.parameters:
            if parameter.get("type") == "filter":
                rule = parameter.get("value", parameter.get("default")) or {}
                endings = rule.get("ends_with") if isinstance(rule, dict) else None
                if endings:
                    paths = [p for p in paths if p.endswith(tuple(endings))]
        return paths

    def _create_job(self, workflow: Workflow, step_def: StepDefinition, step: StepState,
                    parameters: Iterable[dict[str, Any]], variables: Mapping[str, Any],
                    extra: list[dict[str, Any]]) -> Job:
        state = self.state
        now = self.clock()
        job = Job(id=state.next_job_id, workflow_id=workflow.id, step_id=step.id, job_type=step_def.name,
                  parameters=[], history=[[JobStatus.QUEUED.value, now]], created_at=now)
        state.next_job_id += 1
        error = None
        try:
            job.parameters = templates.render_parameters(parameters, variables) + extra
        except templates.TemplateError as exc:
            job.parameters = [dict(p) for p in parameters] + extra
            error = f"template error: {exc}"
        state.jobs[job.id] = job
        step.job_ids.append(job.id)
        step.counts["total"] += 1
        step.counts[JobStatus.QUEUED.value] += 1
        state.mark_job(job)
        if error is not None:
            job.error = error
            self.set_status(workflow, job, JobStatus.ERROR, error)
        else:
            self.dispatcher.enqueue(job)
        return job

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
        self.dispatcher.enqueue(job)

    # ------------------------------------------------------------------ status bookkeeping
    def set_status(self, workflow: Workflow, job: Job, status: JobStatus, note: str | None = None) -> None:
        """Move ``job`` to ``status`` (a history entry even if unchanged), then its step and workflow."""
        old = job.status
        step = workflow.step(job.step_id)
        if old != status:
            step.counts[old.value] -= 1
            step.counts[status.value] += 1
            job.status = status
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
        statuses = [step.status for step in workflow.steps]
        active = any(s in STEP_ACTIVE for s in statuses)
        if all(s in STEP_DONE for s in statuses):
            status = WorkflowStatus.COMPLETED
        elif not active and StepStatus.ERROR in statuses:
            status = WorkflowStatus.ERROR
        elif not active and any(s in STEP_FAILED for s in statuses):
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


def _list_parameter(parameters: list[dict[str, Any]], parameter_id: str) -> list[str] | None:
    """A list-valued parameter's value as strings (None if absent or not a list)."""
    for parameter in parameters:
        if parameter.get("id") == parameter_id:
            value = parameter.get("value", parameter.get("default"))
            if isinstance(value, list):
                return [str(v) for v in value]
    return None
