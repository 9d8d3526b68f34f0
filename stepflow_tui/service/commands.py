"""Command routes: start, retry (job, step, workflow), abort, pause, resume, delete, cancel, redrive, prune.
Each checks the body, answers 404 for an unknown id, then waits for the backend's future (its `EngineError`
becomes 409 for the wrong state, see `errors.engine_error`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from stepflow_tui.core.definitions import StartParameterError, resolve_start_parameters
from stepflow_tui.core.model import WORKFLOW_FINAL

from .errors import ApiError
from .inputs import field, json_object, path_id
from .keys import BACKEND, STOPPING
from .resources import found_or_404, workflow_or_404

routes = web.RouteTableDef()
#: How long a command may wait for the backend's thread before the client gets a 503.
COMMAND_TIMEOUT = 60.0


async def run_command(request: web.Request, command: Callable[[], Future]) -> Any:
    """Send a command to the backend and wait for its result without blocking the event loop."""
    if request.app[STOPPING].get("stopping"):
        raise ApiError(503, "the service is stopping: commands are refused")
    try:
        return await asyncio.wait_for(asyncio.wrap_future(command()), COMMAND_TIMEOUT)
    except TimeoutError:
        raise ApiError(503, f"the backend did not answer within {COMMAND_TIMEOUT:.0f} s") from None


async def job_or_404(request: web.Request, job_id: int) -> dict[str, Any]:
    """The job's full record; 404 when there is none."""
    return await found_or_404(request, "job", job_id)


@routes.post("/api/workflows")
async def start(request: web.Request) -> web.Response:
    """Start a workflow: 201 with its id."""
    body = await json_object(request)
    identifier = field(body, "identifier", str, required=True)
    parameters = field(body, "parameters", dict, default={})
    backend = request.app[BACKEND]
    definition = next((d for d in backend.definitions() if d.identifier == identifier), None)
    if definition is None:
        raise ApiError(400, f"unknown workflow {identifier[:100]!r}: GET /api/definitions lists them",
                       "identifier")
    try:
        resolved = resolve_start_parameters(definition, parameters)
    except StartParameterError as exc:
        raise ApiError(400, str(exc), "parameters") from None
    workflow_id = await run_command(request, lambda: backend.start_workflow(identifier, resolved))
    return web.json_response({"id": workflow_id}, status=201,
                             headers={"Location": f"/api/workflows/{workflow_id}"})


@routes.post("/api/jobs/{job_id}/retry")
async def retry_job(request: web.Request) -> web.Response:
    """Retry one job in error or stopped."""
    job_id = path_id(request, "job_id")
    await job_or_404(request, job_id)
    await run_command(request, lambda: request.app[BACKEND].retry_job(job_id))
    return web.json_response({"retried": 1})


@routes.post("/api/jobs/{job_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """Cancel a queued or running job."""
    job_id = path_id(request, "job_id")
    await job_or_404(request, job_id)
    await run_command(request, lambda: request.app[BACKEND].cancel_job(job_id))
    return web.json_response({"cancelled": job_id})


@routes.post("/api/workflows/{workflow_id}/retry")
async def retry_workflow(request: web.Request) -> web.Response:
    """Retry the failed jobs of a workflow (of one step with step_id)."""
    workflow_id = path_id(request, "workflow_id")
    body = await json_object(request, required=False)
    step_id = field(body, "step_id", int)
    view = await workflow_or_404(request, workflow_id)
    if step_id is not None and all(step.id != step_id for step in view.steps):
        raise ApiError(400, f"workflow #{workflow_id} has no step {step_id}", "step_id")
    count = await run_command(request, lambda: request.app[BACKEND].retry_failed(workflow_id, step_id))
    return web.json_response({"retried": count})


def _workflow_command(action: str) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        workflow_id = path_id(request, "workflow_id")
        await workflow_or_404(request, workflow_id)
        await run_command(request, lambda: getattr(request.app[BACKEND], action)(workflow_id))
        view = await asyncio.to_thread(request.app[BACKEND].workflow, workflow_id)
        return web.json_response({"id": workflow_id, "status": view.status if view else "deleted"})

    handler.__name__ = f"{action}_workflow"
    handler.__doc__ = f"{action.capitalize()} a workflow."
    return handler


for _action in ("abort", "pause", "resume"):
    routes.post(f"/api/workflows/{{workflow_id}}/{_action}")(_workflow_command(_action))
routes.delete("/api/workflows/{workflow_id}")(_workflow_command("delete"))


@routes.post("/api/dead-letters/redrive")
async def redrive(request: web.Request) -> web.Response:
    """Send dead letters back to the queues they died in (or count them with dry_run)."""
    body = await json_object(request, required=False)
    queue = field(body, "queue", str)
    dry_run = field(body, "dry_run", bool, default=False)
    counts = await run_command(request, lambda: request.app[BACKEND].redrive_dead_letters(queue, dry_run))
    return web.json_response({"counts": counts, "dry_run": dry_run})


def prunable_ids(views: list[Any], older_than: float, now: datetime) -> list[int]:
    """`ops.prunable` on workflow views (status strings instead of the model's `finished`)."""
    from stepflow_tui import ops

    final = {status.value for status in WORKFLOW_FINAL}
    state = SimpleNamespace(workflows={v.id: SimpleNamespace(
        id=v.id, finished=v.status in final, finished_at=v.finished_at, updated_at=v.updated_at) for v in views})
    return ops.prunable(state, older_than, now)


@routes.post("/api/prune")
async def prune(request: web.Request) -> web.Response:
    """Delete finished workflows older than ``older_than`` (e.g. ``"30d"``), one `Backend.delete` each."""
    from stepflow_tui import ops

    body = await json_object(request)
    text = field(body, "older_than", str, required=True)
    dry_run = field(body, "dry_run", bool, default=False)
    try:
        age = ops.parse_age(text)
    except ValueError as exc:
        raise ApiError(400, str(exc).replace("--older-than", "older_than"), "older_than") from None
    backend = request.app[BACKEND]
    views = await asyncio.to_thread(backend.workflows)
    ids = prunable_ids(views, age, datetime.now(UTC))
    chosen = set(ids)
    jobs = sum(step.job_count for v in views if v.id in chosen for step in v.steps)
    if not dry_run:
        if backend.read_only:
            raise ApiError(403, "read-only mode: prune refused (dry_run only counts)")
        for workflow_id in ids:
            await run_command(request, lambda i=workflow_id: backend.delete(i))
    return web.json_response({"workflow_ids": ids, "jobs": jobs, "dry_run": dry_run})

