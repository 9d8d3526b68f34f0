"""Reads of the state for other threads (under the store's lock), and the immutable views they return."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from stepflow_tui.backend.step_stats import step_stats
from stepflow_tui.backend.views import JobView, StepStats, StepView, WorkflowView
from stepflow_tui.core.engine import Engine, EngineError
from stepflow_tui.core.model import Job, State, Workflow


class StateReader:
    """Thread-safe reads of the backend's state: each one holds the store's lock and returns copies."""

    def __init__(self, lock: AbstractContextManager[Any], state: State, engine: Engine) -> None:
        self._lock = lock
        self._state = state
        self._engine = engine

    def workflows(self) -> list[WorkflowView]:
        """Every workflow, by id."""
        with self._lock:
            return [workflow_view(w) for w in sorted(self._state.workflows.values(), key=lambda w: w.id)]

    def workflow(self, workflow_id: int) -> WorkflowView | None:
        """One workflow, or None."""
        with self._lock:
            workflow = self._state.workflows.get(workflow_id)
            return workflow_view(workflow) if workflow is not None else None

    def jobs(self, workflow_id: int, step_id: int, offset: int, limit: int, status: str | None,
             after: int | None, before: int | None) -> list[JobView]:
        """A page of a step's jobs (see `Backend.jobs`)."""
        with self._lock:
            workflow = self._state.workflows.get(workflow_id)
            if workflow is None:
                return []
            try:
                job_ids = workflow.step(step_id).job_ids
            except KeyError:
                return []
            page = _page(job_ids, self._state.jobs, offset, limit, status, after, before)
            return [job_view(job) for job in page]

    def job(self, job_id: int) -> dict | None:
        """A job's full record (``Job.to_dict()``), a copy; or None."""
        with self._lock:
            job = self._state.jobs.get(job_id)
            return None if job is None else _deep_copy(job.to_dict())

    def find_jobs(self, text: str, limit: int) -> list[JobView]:
        """Jobs whose id is ``text`` (``14`` or ``#14``) or one of whose parameter values contains it (case
        ignored), newest workflows first, with their position in their step."""
        needle = text.strip().lower()
        if not needle:
            return []
        with self._lock:
            jobs = self._state.jobs
            wanted = needle.removeprefix("#")
            exact = jobs.get(int(wanted)) if wanted.isdigit() else None
            found = [] if exact is None else [_positioned(exact, self._state.workflows.get(exact.workflow_id))]
            for workflow in sorted(self._state.workflows.values(), key=lambda w: -w.id):
                for step in workflow.steps:
                    for position, job_id in enumerate(step.job_ids):
                        if len(found) >= limit:
                            return found
                        job = jobs.get(job_id)
                        if job is not None and job is not exact and _mentions(job, needle):
                            found.append(dataclasses.replace(job_view(job), position=position))
            return found

    def step_stats(self, workflow_id: int, step_id: int) -> StepStats | None:
        """Duration statistics of a step's jobs; None for an unknown step."""
        with self._lock:
            workflow = self._state.workflows.get(workflow_id)
            try:
                job_ids = workflow.step(step_id).job_ids if workflow is not None else None
            except KeyError:
                job_ids = None
            if job_ids is None:
                return None
            jobs = self._state.jobs
            return step_stats((jobs[i] for i in job_ids if i in jobs), job_view)

    def running_count(self, workflow_id: int) -> int:
        """Jobs of the workflow that may still move it while it is paused: orders sent and not finished,
        or reported processing."""
        with self._lock:
            return self._engine.running_count(workflow_id)

    def count_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        """Failed jobs of the workflow (of one step when given); 0 for an unknown workflow."""
        with self._lock:
            try:
                return len(self._engine.failed_jobs(workflow_id, step_id))
            except EngineError:
                return 0


def _page(job_ids: list[int], jobs: dict[int, Any], offset: int, limit: int, status: str | None,
          after: int | None, before: int | None) -> list[Any]:
    """See `Backend.jobs`."""
    def matching(ids: Iterable[int]) -> Iterator[Any]:
        return (jobs[i] for i in ids if i in jobs and (status is None or jobs[i].status.value == status))

    if after is not None or before is not None:
        anchor = after if after is not None else before
        try:
            position = job_ids.index(anchor)
        except ValueError:
            return []
        if after is not None:
            return list(itertools.islice(matching(job_ids[position + 1:]), limit))
        found = list(itertools.islice(matching(reversed(job_ids[:position])), limit))
        return found[::-1]
    if status is None:
        return list(matching(job_ids[offset:offset + limit]))
    return list(itertools.islice(matching(job_ids), offset, offset + limit))


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def workflow_view(workflow: Workflow) -> WorkflowView:
    """The immutable view of a workflow and its steps."""
    steps = tuple(StepView(id=s.id, name=s.name, label=s.label, status=s.status.value, counts=dict(s.counts),
                           job_count=len(s.job_ids), launched_at=s.launched_at, finished_at=s.finished_at)
                  for s in workflow.steps)
    return WorkflowView(id=workflow.id, identifier=workflow.identifier, label=workflow.label,
                        version=workflow.version, status=workflow.status.value, paused=workflow.paused,
                        parameters=dict(workflow.parameters), counts=workflow.counts(), steps=steps,
                        created_at=workflow.created_at, updated_at=workflow.updated_at,
                        finished_at=workflow.finished_at)


def job_view(job: Job) -> JobView:
    """The immutable view of a job (for lists)."""
    source = job.parameter("source_path")
    return JobView(id=job.id, workflow_id=job.workflow_id, step_id=job.step_id, job_type=job.job_type,
                   status=job.status.value, progress=job.progress, error=job.error,
                   input=source if isinstance(source, str) else None, worker=job.worker,
                   duration=job.execution_duration, started_at=job.started_at)


def _mentions(job: Job, needle: str) -> bool:
    """Whether one of the job's parameter values contains ``needle`` (already lower case)."""
    return any(needle in str(parameter.get("value", "")).lower() for parameter in job.parameters)


def _positioned(job: Job, workflow: Workflow | None) -> JobView:
    """The view of ``job`` with its index among its step's jobs."""
    position = None
    if workflow is not None:
        try:
            position = workflow.step(job.step_id).job_ids.index(job.id)
        except (KeyError, ValueError):
            position = None
    return dataclasses.replace(job_view(job), position=position)
