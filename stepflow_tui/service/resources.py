"""Read routes: health, definitions, workflows (paged, filtered), a step's jobs (as `Backend.jobs` pages),
jobs, workers, queues and dead letters. Backend reads copy under its lock: they run in a thread."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiohttp import web

import stepflow_tui
from stepflow_tui.backend.views import job_to_dict, stats_to_dict, worker_to_dict, workflow_to_dict
from stepflow_tui.core.model import JobStatus, WorkflowStatus

from .errors import ApiError
from .inputs import MAX_LIMIT, path_id, query_choice, query_int
from .keys import BACKEND, TOKENS

routes = web.RouteTableDef()
JOB_STATUSES = tuple(s.value for s in JobStatus)
WORKFLOW_STATUSES = tuple(s.value for s in WorkflowStatus)
DEFAULT_PAGE = 200
DEAD_LETTERS_SHOWN = 100


def definition_to_dict(definition: Any) -> dict[str, Any]:
    """A workflow definition as its canonical JSON (what `definition_from_dict` reads back) and its source."""
    return {**definition.raw, "version": definition.version, "source": definition.source}


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    """Service health: version, broker (masked), connection, read-only mode, whether tokens are required."""
    backend = request.app[BACKEND]
    return web.json_response({"status": "ok", "version": stepflow_tui.__version__,
                              "broker": backend.broker_display_url, "connection": backend.connection_state,
                              "read_only": bool(backend.read_only), "auth": request.app[TOKENS].required})


async def listing(request: web.Request, read: str, to_dict: Any) -> web.Response:
    """``{"data": [...], "total"}`` of a backend read that lists everything (``read`` names the method)."""
    found = await asyncio.to_thread(getattr(request.app[BACKEND], read))
    return web.json_response({"data": [to_dict(item) for item in found], "total": len(found)})


@routes.get("/api/definitions")
async def definitions(request: web.Request) -> web.Response:
    """Every workflow definition."""
    return await listing(request, "definitions", definition_to_dict)


@routes.get("/api/definitions/{identifier}")
async def definition(request: web.Request) -> web.Response:
    """One workflow definition by identifier."""
    identifier = request.match_info["identifier"]
    for found in await asyncio.to_thread(request.app[BACKEND].definitions):
        if found.identifier == identifier:
            return web.json_response(definition_to_dict(found))
    raise ApiError(404, f"no workflow definition {identifier[:100]!r}")


@routes.get("/api/workflows")
async def workflows(request: web.Request) -> web.Response:
    """Workflows, newest first, filtered by status and identifier, paged."""
    status = query_choice(request, "status", WORKFLOW_STATUSES)
    identifier = request.query.get("identifier") or None
    offset = query_int(request, "offset", 0)
    limit = query_int(request, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_LIMIT)
    views = await asyncio.to_thread(request.app[BACKEND].workflows)
    matching = [v for v in views if (status is None or v.status == status)
                and (identifier is None or v.identifier == identifier)]
    matching.reverse()  # newest first, as a list of runs is read
    page = matching[offset:offset + limit]
    return web.json_response({"data": [workflow_to_dict(v) for v in page], "total": len(matching),
                              "offset": offset, "limit": limit})


async def found_or_404(request: web.Request, read: str, item_id: int) -> Any:
    """``backend.<read>(item_id)`` (``workflow`` or ``job``); 404 when it gives None."""
    found = await asyncio.to_thread(getattr(request.app[BACKEND], read), item_id)
    if found is None:
        raise ApiError(404, f"no {read} #{item_id}")
    return found


async def workflow_or_404(request: web.Request, workflow_id: int) -> Any:
    """The workflow's view; 404 when there is none."""
    return await found_or_404(request, "workflow", workflow_id)


@routes.get("/api/workflows/{workflow_id}")
async def workflow(request: web.Request) -> web.Response:
    """One workflow with its steps, plus how many of its jobs may still move it."""
    workflow_id = path_id(request, "workflow_id")
    backend = request.app[BACKEND]

    def read() -> tuple[Any, int]:
        # one trip to a thread for both reads: each trip is a hand-off of the GIL, which costs most under load
        # ``running``: jobs that may still move it while it is paused (what `stepflow wait` watches)
        return backend.workflow(workflow_id), backend.running_count(workflow_id)

    view, running = await asyncio.to_thread(read)
    if view is None:
        raise ApiError(404, f"no workflow #{workflow_id}")
    return web.json_response({**workflow_to_dict(view), "running": running})


@routes.get("/api/workflows/{workflow_id}/steps/{step_id}/jobs")
async def step_jobs(request: web.Request) -> web.Response:
    """A page of a step's jobs, as `Backend.jobs` gives it."""
    workflow_id, step_id = path_id(request, "workflow_id"), path_id(request, "step_id")
    page = {"offset": query_int(request, "offset", 0),
            "limit": query_int(request, "limit", DEFAULT_PAGE, minimum=1, maximum=MAX_LIMIT),
            "status": query_choice(request, "status", JOB_STATUSES),
            "after": query_int(request, "after", None), "before": query_int(request, "before", None)}
    if page["after"] is not None and page["before"] is not None:
        raise ApiError(400, "give after or before, not both", "before")
    view = await workflow_or_404(request, workflow_id)
    if all(step.id != step_id for step in view.steps):
        raise ApiError(404, f"workflow #{workflow_id} has no step {step_id}")
    jobs = await asyncio.to_thread(request.app[BACKEND].jobs, workflow_id, step_id, **page)
    return web.json_response({"data": [job_to_dict(j) for j in jobs]})


@routes.get("/api/workflows/{workflow_id}/steps/{step_id}/stats")
async def step_stats(request: web.Request) -> web.Response:
    """How long a step's finished jobs took (`Backend.step_stats`)."""
    workflow_id, step_id = path_id(request, "workflow_id"), path_id(request, "step_id")
    stats = await asyncio.to_thread(request.app[BACKEND].step_stats, workflow_id, step_id)
    if stats is None:
        raise ApiError(404, f"no step {step_id} in workflow #{workflow_id}")
    return web.json_response(stats_to_dict(stats))


@routes.get("/api/search/jobs")
async def search_jobs(request: web.Request) -> web.Response:
    """Jobs by id or parameter value (`Backend.find_jobs`): ``?text=img_0042&limit=20``."""
    text = request.query.get("text", "")
    limit = query_int(request, "limit", 20, minimum=1, maximum=MAX_LIMIT)
    jobs = await asyncio.to_thread(request.app[BACKEND].find_jobs, text, limit)
    return web.json_response({"data": [job_to_dict(job) for job in jobs]})


@routes.get("/api/jobs/{job_id}")
async def job(request: web.Request) -> web.Response:
    """A job's full record."""
    return web.json_response(await found_or_404(request, "job", path_id(request, "job_id")))


@routes.get("/api/workers")
async def workers(request: web.Request) -> web.Response:
    """The workers seen."""
    return await listing(request, "workers", worker_to_dict)


@routes.get("/api/queues")
async def queues(request: web.Request) -> web.Response:
    """The states of the queues."""
    return await listing(request, "queue_states", dataclasses.asdict)


def _peek_dead_letters(broker_url: str, limit: int) -> tuple[int | None, list[dict[str, Any]]]:
    from stepflow_tui import ops
    from stepflow_tui.broker.base import connect

    conn = connect(broker_url, name="stepflow-service-dead-letters")
    try:
        total = ops.dead_letter_count(conn)
        letters = ops.peek_dead_letters(conn, limit) if total else []
    finally:
        conn.close()  # whatever was taken and not requeued yet goes back
    return total, [letter.to_dict() for letter in letters]


@routes.get("/api/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    """The first dead letters (peeked: taken and requeued on a connection of its own)."""
    from stepflow_tui.broker.base import BrokerError

    limit = query_int(request, "limit", DEAD_LETTERS_SHOWN, maximum=MAX_LIMIT)
    broker_url = request.app[BACKEND].config.broker_url
    try:
        total, letters = await asyncio.to_thread(_peek_dead_letters, broker_url, limit)
    except BrokerError as exc:
        raise ApiError(503, f"cannot read the dead letters now: {exc}") from None
    return web.json_response({"data": letters, "total": total or 0, "exists": total is not None})
