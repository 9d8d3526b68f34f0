"""The engine: how a workflow advances. Pure logic over a `State` — no I/O, no clock of its own.

The backend feeds it decoded messages and operator commands; the engine mutates the state, marks what changed
(for the store) and queues the jobs whose orders must be sent (``take_outbox``). Every message handler is
idempotent: a message about an unknown job or a job already final changes nothing and returns False, so a
redelivery after a crash is harmless.
"""

from __future__ import annotations

import posixpath
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from stepflow_tui.core import templates
from stepflow_tui.core.definitions import (
    ONE_FOR_MANY,
    StepDefinition,
    WorkflowDefinition,
    definition_from_dict,
    resolve_start_parameters,
)
from stepflow_tui.core.model import (
    JOB_FINAL,
    Job,
    JobStatus,
    State,
    StepState,
    StepStatus,
    Workflow,
    WorkflowStatus,
)
from stepflow_tui.core.protocol import JobCompleted, JobFailed, JobProgression

ACTIVE_JOB = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING})
RETRYABLE = frozenset({JobStatus.ERROR, JobStatus.STOPPED})
#: A progression changes nothing for a job in these (a retrying job waits for its new order).
NO_PROGRESS = JOB_FINAL | {JobStatus.RETRYING}


class EngineError(ValueError):
    """An operator command that cannot be carried out (message says why)."""


TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # what `utc_now` gives: 2026-11-27T10:00:05.123456Z

#: (second, its text up to the seconds): strftime costs ~3 µs, and the engine takes the time several times a job.
_second_text: tuple[int, str] = (-1, "")


def utc_now() -> str:
    global _second_text
    now = time.time()
    second = int(now)
    cached = _second_text
    if cached[0] != second:
        cached = _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"


def format_time(moment: datetime) -> str:
    """A datetime (UTC) in the engine's format."""
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond:06d}Z")


def seconds_before(when: str, seconds: float) -> str:
    """``when`` (an engine time) moved back by ``seconds``; ``when`` itself if it is not in the engine's format."""
    if not when.endswith("Z"):
        return when
    try:
        return format_time(datetime.fromisoformat(when[:-1]) - timedelta(seconds=max(0.0, float(seconds))))
    except (ValueError, OverflowError):  # not our format, or a duration beyond the calendar
        return when


class Engine:
    def __init__(self, state: State, clock: Callable[[], str] = utc_now,
                 monotonic: Callable[[], float] | None = None) -> None:
        import time

        self.state = state
        self.clock = clock
        self.monotonic = monotonic or time.monotonic
        self._definitions: dict[int, WorkflowDefinition] = {}
        # Jobs queued and not yet sent, per workflow, in order. Sending is bounded by the backend's window.
        self._ready: dict[int, deque[int]] = {}
        # Automatic retries waiting for their delay: job id -> monotonic due time.
        self._retry_due: dict[int, float] = {}
        #: Jobs sent (dispatched) and not final yet: the backend keeps this under its window.
        self.in_flight = 0
        self._in_flight_ids: set[int] = set()
        # Backend-side timeout guard: processing job id -> monotonic time after which it is failed. Only jobs
        # whose step sets a timeout; a worker that ignores the order's timeout header is caught here.
        self._guard_due: dict[int, float] = {}

    # ------------------------------------------------------------------ workflows
    def definition_of(self, workflow: Workflow) -> WorkflowDefinition:
        definition = self._definitions.get(workflow.id)
        if definition is None:
            definition = definition_from_dict(workflow.definition, f"state (workflow #{workflow.id})")
            self._definitions[workflow.id] = definition
        return definition

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
        self._definitions[workflow.id] = definition
        state.mark_workflow(workflow)
        self._advance(workflow)
        return workflow

    def _advance(self, workflow: Workflow) -> None:
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
                if all(statuses.get(r) in (StepStatus.COMPLETED, StepStatus.SKIPPED)
                       for r in step_def.required_to_start):
                    self._launch(workflow, step_def, step)
                    progressed = True
        self._roll_up(workflow)

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
                self._refresh_step(workflow, step)  # no jobs: skipped
                return
        if step_def.mode == ONE_FOR_MANY:
            paths = inputs if inputs is not None else self._list_parameter(parameters, "source_paths")
            variables = dict(base, source_paths=paths or [])
            extra = [] if paths is None else [
                {"id": "source_paths", "type": "array_of_strings", "value": list(paths)}]
            own = [p for p in parameters if p.get("id") != "source_paths"] if paths is not None else parameters
            self._create_job(workflow, step_def, step, own, variables, extra)
        else:
            paths = inputs if inputs is not None else self._list_parameter(parameters, "source_paths")
            if paths is None:
                self._create_job(workflow, step_def, step, parameters, base, [])
            else:
                own = [p for p in parameters if p.get("id") != "source_paths"]
                for path in paths:
                    variables = dict(base, **path_variables(path))
                    extra = [{"id": "source_path", "type": "string", "value": path}]
                    self._create_job(workflow, step_def, step, own, variables, extra)
        self._refresh_step(workflow, step)

    @staticmethod
    def _list_parameter(parameters: list[dict[str, Any]], parameter_id: str) -> list[str] | None:
        for parameter in parameters:
            if parameter.get("id") == parameter_id:
                value = parameter.get("value", parameter.get("default"))
                if isinstance(value, list):
                    return [str(v) for v in value]
        return None

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
            job.parameters = render_parameters(parameters, variables) + extra
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
            self._set_status(workflow, job, JobStatus.ERROR, error)
        else:
            self._ready.setdefault(workflow.id, deque()).append(job.id)
        return job

    # ------------------------------------------------------------------ dispatching
    def take_outbox(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs whose orders should be sent now, fairly across workflows that are not
        paused. Call `mark_dispatched` once the broker confirmed them."""
        self._release_due_retries()
        out: list[Job] = []
        if limit <= 0:
            return out
        jobs = self.state.jobs
        # A job id may sit in a ready queue twice (cancelled before it was sent, then retried): one order only.
        taken: set[int] = set()
        progressed = True
        while len(out) < limit and progressed:
            progressed = False
            for workflow_id in list(self._ready):
                queue = self._ready[workflow_id]
                workflow = self.state.workflows.get(workflow_id)
                if workflow is None or workflow.finished:
                    del self._ready[workflow_id]
                    continue
                if workflow.paused:
                    continue
                share = max(1, (limit - len(out)) // max(1, len(self._ready)))
                while queue and share and len(out) < limit:
                    job = jobs.get(queue.popleft())
                    if job is None or job.status != JobStatus.QUEUED or job.dispatched or job.id in taken:
                        continue
                    taken.add(job.id)
                    out.append(job)
                    share -= 1
                    progressed = True
                if not queue:
                    del self._ready[workflow_id]
        return out

    def requeue_unsent(self, jobs: Iterable[Job]) -> None:
        """Orders that could not be published go back to the front of their queues."""
        for job in reversed(list(jobs)):
            self._ready.setdefault(job.workflow_id, deque()).appendleft(job.id)

    def mark_dispatched(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            if job.status in JOB_FINAL or job.dispatched:
                continue
            job.dispatched = True
            job.attempts += 1
            self.state.mark_job(job)
            if job.id not in self._in_flight_ids:
                self._in_flight_ids.add(job.id)
                self.in_flight += 1

    def _landed(self, job: Job) -> None:
        if job.id in self._in_flight_ids:
            self._in_flight_ids.discard(job.id)
            self.in_flight -= 1

    def pending_count(self) -> int:
        """Jobs waiting to be sent (not counting paused workflows' jobs)."""
        return sum(len(q) for wf, q in self._ready.items()
                   if not getattr(self.state.workflows.get(wf), "paused", True))

    def next_retry_in(self) -> float | None:
        """Seconds until the next delayed automatic retry is due (None when none waits)."""
        if not self._retry_due:
            return None
        return max(0.0, min(self._retry_due.values()) - self.monotonic())

    def _release_due_retries(self) -> None:
        if not self._retry_due:
            return
        now = self.monotonic()
        for job_id, due in list(self._retry_due.items()):
            if due <= now:
                del self._retry_due[job_id]
                job = self.state.jobs.get(job_id)
                if job is not None and job.status == JobStatus.RETRYING:
                    workflow = self.state.workflows[job.workflow_id]
                    self._requeue(workflow, job, "retry")

    # ------------------------------------------------------------------ messages
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
        found = self._open_job(message.job_id, closed=NO_PROGRESS)
        if found is None:
            return False
        job, workflow = found
        if message.instance_id:
            job.worker = message.instance_id
        job.progress = max(0, min(100, int(message.progression)))
        if job.status == JobStatus.QUEUED:
            job.started_at = self.clock()
            self._set_status(workflow, job, JobStatus.PROCESSING)
        self.state.mark_job(job)
        return True

    def on_completed(self, message: JobCompleted) -> bool:
        found = self._open_job(message.job_id)
        if found is None:
            return False
        job, workflow = found
        now = self.clock()
        self._started_unseen(job, now, message.execution_duration)
        job.progress = 100
        job.execution_duration = message.execution_duration
        job.destination_paths = [str(p) for p in message.destination_paths]
        job.outputs = list(message.parameters)
        job.error = None
        job.traceback = None
        job.finished_at = now
        job.started_at = job.started_at or now
        if message.instance_id:
            job.worker = message.instance_id
        for output in job.outputs:
            if isinstance(output, dict) and "id" in output:
                workflow.variables[str(output["id"])] = output.get("value")
        self._set_status(workflow, job, JobStatus.COMPLETED)
        return True

    @staticmethod
    def _started_unseen(job: Job, now: str, duration: float) -> None:
        """A result for a job never reported processing: a worker sends no progression 0 when the result is
        ready by the time it publishes (docs/worker.md). Record the start the result implies (its end minus
        its execution duration, never before the job was queued), so the history still reads
        queued → processing → final."""
        if job.status != JobStatus.QUEUED:
            return
        started = seconds_before(now, duration or 0.0)
        queued = job.history[-1][1] if job.history and len(job.history[-1]) > 1 else None
        if isinstance(queued, str) and started < queued:
            started = queued  # e.g. a late result of an earlier attempt, after a retry queued the job again
        job.started_at = started
        job.history.append([JobStatus.PROCESSING.value, started])

    def on_failed(self, message: JobFailed) -> bool:
        found = self._open_job(message.job_id)
        if found is None:
            return False
        job, workflow = found
        if message.instance_id:  # a worker had it (not the backend cancelling a job still queued)
            self._started_unseen(job, self.clock(), message.execution_duration)
            job.worker = message.instance_id
        job.execution_duration = message.execution_duration
        if message.stopped:
            job.error = message.message or "stopped"
            job.finished_at = self.clock()
            self._set_status(workflow, job, JobStatus.STOPPED, job.error)
            return True
        self._fail(workflow, job, message.message, message.traceback)
        return True

    def on_queue_not_found(self, job_id: int) -> bool:
        """An order reached no job queue: no worker has ever declared that job type's queue."""
        found = self._open_job(job_id)
        if found is None:
            return False
        job, workflow = found
        reason = (f"no queue for job type {job.job_type!r}: no worker serves job_{job.job_type} "
                  f"(start one with: stepflow worker --job-type {job.job_type})")
        self._fail(workflow, job, reason, None, allow_retry=False)
        return True

    def fail_job(self, job_id: int, reason: str, *, allow_retry: bool = True) -> bool:
        """Fail a job from the backend's side (lost worker, timeout); retried if its step allows."""
        found = self._open_job(job_id)
        if found is None:
            return False
        self._fail(found[1], found[0], reason, None, allow_retry=allow_retry)
        return True

    # ------------------------------------------------------------------ timeouts and lost workers
    def job_timeout(self, job: Job) -> float | None:
        """The job's step ``timeout`` in seconds (None: no limit); sent with the order for the worker."""
        workflow = self.state.workflows.get(job.workflow_id)
        if workflow is None:
            return None
        try:
            return self.definition_of(workflow).step(job.step_id).timeout
        except KeyError:
            return None

    def _arm_guard(self, workflow: Workflow, job: Job) -> None:
        timeout = self.job_timeout(job)
        if timeout:
            self._guard_due[job.id] = self.monotonic() + guard_seconds(timeout)

    def fail_overdue(self) -> list[Job]:
        """Fail every job processing longer than its step's timeout plus a margin (`guard_seconds`): its worker
        ignored the order's timeout header or is stuck. Retried if the step allows. Returns the failed jobs."""
        if not self._guard_due:
            return []
        now = self.monotonic()
        failed = []
        for job_id, due in list(self._guard_due.items()):
            if due > now:
                continue
            del self._guard_due[job_id]
            job = self.state.jobs.get(job_id)
            if job is None or job.status != JobStatus.PROCESSING:
                continue
            timeout = self.job_timeout(job) or 0.0
            if self.fail_job(job_id, timeout_reason(timeout)):
                failed.append(job)
        return failed

    def processing_jobs_of(self, instance_id: str) -> list[Job]:
        """Jobs processing and last reported on by worker ``instance_id``."""
        return [job for job in self.state.jobs.values()
                if job.status == JobStatus.PROCESSING and job.worker == instance_id]

    def _fail(self, workflow: Workflow, job: Job, reason: str, traceback: str | None,
              allow_retry: bool = True) -> None:
        step_def = self.definition_of(workflow).step(job.step_id)
        job.error = reason
        job.traceback = traceback
        automatic = sum(1 for entry in job.history if entry[0] == JobStatus.RETRYING.value)
        if allow_retry and automatic < step_def.max_retries and workflow.status != WorkflowStatus.ABORTED:
            delay = step_def.retry_delay * (2 ** automatic) if step_def.retry_delay else 0.0
            delay = min(delay, 3600.0)
            note = f"attempt {automatic + 1} failed: {reason}; retry {automatic + 1}/{step_def.max_retries}"
            if delay:
                note += f" in {delay:g} s"
            self._set_status(workflow, job, JobStatus.RETRYING, note)
            job.retries += 1
            if delay:
                self._retry_due[job.id] = self.monotonic() + delay
            else:
                self._requeue(workflow, job, None)
            return
        job.finished_at = self.clock()
        self._set_status(workflow, job, JobStatus.ERROR, reason)

    def _requeue(self, workflow: Workflow, job: Job, note: str | None) -> None:
        job.dispatched = False
        job.progress = 0
        job.started_at = None
        job.finished_at = None
        self._set_status(workflow, job, JobStatus.QUEUED, note)
        self._ready.setdefault(workflow.id, deque()).append(job.id)

    # ------------------------------------------------------------------ status bookkeeping
    def _set_status(self, workflow: Workflow, job: Job, status: JobStatus, note: str | None = None) -> None:
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
            self._landed(job)
        if status == JobStatus.PROCESSING and old != status:
            self._arm_guard(workflow, job)
        elif status != JobStatus.PROCESSING:
            self._guard_due.pop(job.id, None)
        self.state.mark_job(job)
        self.state.mark_workflow(workflow)
        workflow.updated_at = entry[1]
        before = step.status
        self._refresh_step(workflow, step)
        if step.status != before:
            self._advance(workflow)
        elif workflow.status != WorkflowStatus.ABORTED:
            self._roll_up(workflow)

    def _refresh_step(self, workflow: Workflow, step: StepState) -> None:
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
            step.finished_at = self.clock() if status not in (StepStatus.QUEUED, StepStatus.PROCESSING) else None
            self.state.mark_workflow(workflow)

    def _roll_up(self, workflow: Workflow) -> None:
        if workflow.status == WorkflowStatus.ABORTED:
            return
        statuses = [step.status for step in workflow.steps]
        active = any(s in (StepStatus.QUEUED, StepStatus.PROCESSING) for s in statuses)
        if all(s in (StepStatus.COMPLETED, StepStatus.SKIPPED) for s in statuses):
            status = WorkflowStatus.COMPLETED
        elif not active and StepStatus.ERROR in statuses:
            status = WorkflowStatus.ERROR
        elif not active and StepStatus.STOPPED in statuses:
            status = WorkflowStatus.STOPPED  # an operator's cancel is not a failure
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

    # ------------------------------------------------------------------ operator commands
    def workflow(self, workflow_id: int) -> Workflow:
        workflow = self.state.workflows.get(workflow_id)
        if workflow is None:
            raise EngineError(f"no workflow #{workflow_id}")
        return workflow

    def failed_jobs(self, workflow_id: int, step_id: int | None = None) -> list[Job]:
        workflow = self.workflow(workflow_id)
        jobs = []
        for step in workflow.steps:
            if step_id is not None and step.id != step_id:
                continue
            if not (step.counts["error"] or step.counts["stopped"]):
                continue
            jobs.extend(j for j in (self.state.jobs.get(i) for i in step.job_ids)
                        if j is not None and j.status in RETRYABLE)
        return jobs

    def retry_job(self, job_id: int) -> Job:
        job = self.state.jobs.get(job_id)
        if job is None:
            raise EngineError(f"no job #{job_id}")
        if job.status not in RETRYABLE:
            raise EngineError(f"job #{job_id} is {job.status.value}: only a job in error or stopped can be retried")
        workflow = self.workflow(job.workflow_id)
        if workflow.status == WorkflowStatus.ABORTED:
            raise EngineError(f"workflow #{workflow.id} was aborted: its jobs cannot be retried")
        job.retries += 1
        job.error = None
        job.traceback = None
        self._requeue(workflow, job, "retried by operator")
        if workflow.status in (WorkflowStatus.ERROR, WorkflowStatus.STOPPED, WorkflowStatus.COMPLETED):
            workflow.finished_at = None
        return job

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> int:
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
        now = self.clock()
        for step in workflow.steps:
            for job_id in step.job_ids:
                job = self.state.jobs.get(job_id)
                if job is None or job.status in JOB_FINAL:
                    continue
                if job.status == JobStatus.PROCESSING:
                    running.append(job)
                self._retry_due.pop(job.id, None)
                self._guard_due.pop(job.id, None)
                old = job.status
                step.counts[old.value] -= 1
                step.counts[JobStatus.STOPPED.value] += 1
                job.status = JobStatus.STOPPED
                job.error = "workflow aborted"
                job.finished_at = now
                job.history.append([JobStatus.STOPPED.value, now, "workflow aborted"])
                self._landed(job)
                self.state.mark_job(job)
            if step.status == StepStatus.PENDING:
                step.status = StepStatus.SKIPPED
            elif step.status in (StepStatus.QUEUED, StepStatus.PROCESSING):
                step.status = StepStatus.STOPPED
                step.finished_at = now
        self._ready.pop(workflow.id, None)
        workflow.status = WorkflowStatus.ABORTED
        workflow.history.append([WorkflowStatus.ABORTED.value, now])
        workflow.updated_at = now
        workflow.finished_at = now
        self.state.mark_workflow(workflow)
        return running

    def pause(self, workflow_id: int) -> None:
        workflow = self.workflow(workflow_id)
        if workflow.finished:
            raise EngineError(f"workflow #{workflow_id} is {workflow.status.value}: nothing to pause")
        if not workflow.paused:
            workflow.paused = True
            self.state.mark_workflow(workflow)
            self._roll_up(workflow)

    def resume(self, workflow_id: int) -> None:
        workflow = self.workflow(workflow_id)
        if workflow.paused:
            workflow.paused = False
            self.state.mark_workflow(workflow)
            self._roll_up(workflow)

    def delete(self, workflow_id: int) -> None:
        workflow = self.workflow(workflow_id)
        if not workflow.finished:
            raise EngineError(f"workflow #{workflow_id} is {workflow.status.value}: abort it before deleting")
        for step in workflow.steps:
            for job_id in step.job_ids:
                if self.state.jobs.pop(job_id, None) is not None:
                    self.state.deleted_jobs.add(job_id)
                    self.state.dirty_jobs.discard(job_id)
                    self._retry_due.pop(job_id, None)
                    self._guard_due.pop(job_id, None)
        del self.state.workflows[workflow_id]
        self._definitions.pop(workflow_id, None)
        self._ready.pop(workflow_id, None)
        self.state.dirty_workflows.discard(workflow_id)
        self.state.deleted_workflows.add(workflow_id)

    # ------------------------------------------------------------------ restart
    def resume_unfinished(self, *, orders_survived: bool) -> int:
        """After a (re)start: queue again what must be sent. ``orders_survived`` is True on a durable broker
        (orders already sent are still in RabbitMQ); False on ``memory://``, where every unfinished job is sent
        again (processing ones went down with the process). Returns how many jobs were queued to send."""
        count = 0
        for workflow in self.state.workflows.values():
            if workflow.finished:
                continue
            self._advance(workflow)
            for step in workflow.steps:
                for job_id in step.job_ids:
                    job = self.state.jobs.get(job_id)
                    if job is None or job.status in JOB_FINAL:
                        continue
                    if job.status == JobStatus.RETRYING:
                        self._requeue(workflow, job, "retry after restart")
                        count += 1
                    elif not job.dispatched:
                        self._ready.setdefault(workflow.id, deque()).append(job.id)
                        count += 1
                    elif orders_survived:
                        self._in_flight_ids.add(job.id)
                        self.in_flight += 1
                        if job.status == JobStatus.PROCESSING:
                            self._arm_guard(workflow, job)  # from now: when it started is not known here
                    else:
                        self._requeue(workflow, job, "sent again after restart")
                        count += 1
        return count




def guard_seconds(timeout: float) -> float:
    """How long the backend lets a job with step ``timeout`` process before failing it itself: the worker's own
    timeout plus a margin (network, a slow report), at least 10 s."""
    return timeout + max(10.0, timeout / 2)


def timeout_reason(timeout: float) -> str:
    """The error of a job that ran out of time (the worker and the backend say the same)."""
    return f"timed out after {timeout:g} s"


def path_variables(path: str) -> dict[str, str]:
    """Template variables of one input path: source_path, filename, extension, name (stem)."""
    filename = posixpath.basename(path.replace("\\", "/"))
    name, extension = posixpath.splitext(filename)
    return {"source_path": path, "filename": filename, "extension": extension, "name": name}


def render_parameters(parameters: Iterable[dict[str, Any]], variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The order's parameter list: ``template`` values rendered (sent as ``string``), ``array_of_templates``
    as ``array_of_strings``, others as given (``value``, else ``default``)."""
    out = []
    for parameter in parameters:
        kind = parameter.get("type", "string")
        value = parameter.get("value", parameter.get("default"))
        if kind == "template" and isinstance(value, str):
            value, kind = templates.render(value, variables), "string"
        elif kind == "array_of_templates" and isinstance(value, list):
            value, kind = [templates.render(str(v), variables) for v in value], "array_of_strings"
        out.append({"id": parameter["id"], "type": kind, "value": value})
    return out
