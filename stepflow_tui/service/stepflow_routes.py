"""StepFlow's REST API (media-io/ex_step_flow, lib/step_flow/router.ex, mounted under ``/api/step_flow``), with
its request and response shapes, so that systems written for StepFlow drive this backend unchanged:

- ``GET /definitions`` (page, size, mode, search, versions[]), ``GET /definitions/{identifier}``,
  ``POST /definitions`` (a workflow definition, validated, kept in ``<state>.definitions.json``)
- ``POST /workflows`` and ``POST /launch_workflow`` ``{"workflow_identifier", "parameters": {id: value},
  "reference"}``; ``GET /workflows`` (page, size and StepFlow's filters); ``GET``/``DELETE /workflows/{id}``
- ``POST /workflows/{id}/events`` ``{"event": "abort" | "stop" | "retry" (with "job_id") | "delete" |
  "pause" | "resume"}``; ``GET /workflows_statistics``; ``GET /worker_definitions``; ``GET /jobs``

Errors as StepFlow renders them: ``{"errors": [{"reason", "message"}]}``, 422 for what the client sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from stepflow_tui.core.definitions import DefinitionError, StartParameterError, resolve_start_parameters
from stepflow_tui.core.engine import EngineError

from . import stepflow_queries as queries
from .commands import run_command
from .encoding import json_bytes
from .errors import ApiError, Handler, engine_error
from .inputs import json_object, path_id
from .keys import BACKEND
from .stepflow_files import StepFlowFiles
from .stepflow_queries import ChangesetError, StepFlowError
from .stepflow_views import definition_json, error_body, workflow_json

log = logging.getLogger("stepflow_tui.service")
PREFIX = "/api/step_flow"
FILES: web.AppKey[StepFlowFiles] = web.AppKey("stepflow_files", StepFlowFiles)
FINAL_STATUSES = ("completed", "error", "aborted")
routes = web.RouteTableDef()


def stepflow_errors(handler: Handler) -> Handler:
    """Render every error a client can cause in StepFlow's shape (a body StepFlow would refuse is a 422)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StepFlowError as exc:
            return web.json_response(error_body(exc.reason, exc.message), status=exc.status)
        except ChangesetError as exc:
            return web.json_response({"errors": {exc.field: [exc.message]}}, status=422)
        except ApiError as exc:
            status = 422 if exc.status == 400 else exc.status
            return web.json_response(error_body(exc.message), status=status)
        except (DefinitionError, StartParameterError) as exc:
            return web.json_response(error_body(str(exc)), status=422)
        except EngineError as exc:  # 404 unknown id, 403 read-only, 409 wrong state, 503 not now
            error = engine_error(exc)
            return web.json_response(error_body(error.message, "Refused"), status=error.status)

    return wrapped


def _route(method: str, path: str) -> Any:
    def register(handler: Handler) -> Handler:
        routes.route(method, PREFIX + path)(stepflow_errors(handler))
        return handler
    return register


async def _json_in_thread(request: web.Request, read: Any, *args: Any) -> web.Response:
    """``read(backend, files, *args)`` as ``web.json_response`` answers it, read and encoded in a thread (these
    answers can be large: `encoding`)."""
    def body() -> bytes:
        return json_bytes(read(request.app[BACKEND], request.app[FILES], *args))

    return web.Response(body=await asyncio.to_thread(body), content_type="application/json", charset="utf-8")


def _definition(backend: Any, identifier: Any) -> Any:
    return next((d for d in backend.definitions() if d.identifier == identifier), None)


@_route("GET", "/definitions")
async def definitions(request: web.Request) -> web.Response:
    """Workflow definitions, paged (size -1: all) and filtered by search and versions, as StepFlow lists them."""
    return await _json_in_thread(request, queries.definitions_page, request.query)


@_route("GET", "/definitions/{identifier}")
async def definition(request: web.Request) -> web.Response:
    """One definition with its steps."""
    found = await asyncio.to_thread(_definition, request.app[BACKEND], request.match_info["identifier"])
    if found is None:
        raise StepFlowError(422, "Unable to locate workflow with this identifier")
    return web.json_response({"data": definition_json(found, "with_steps")})


@_route("POST", "/definitions")
async def add_definition(request: web.Request) -> web.Response:
    """Add (or replace, by identifier) a workflow definition: validated, then kept across restarts."""
    if request.app[BACKEND].read_only:
        raise StepFlowError(403, "read-only mode: definitions cannot be added", "Forbidden")
    body = await json_object(request)
    raw = body.get("workflow_definition", body)  # a bare definition, or wrapped as a Phoenix client sends it
    if not isinstance(raw, dict):
        raise StepFlowError(422, "workflow_definition must be a JSON object")
    files = request.app[FILES]
    added = await asyncio.to_thread(files.add_definition, raw)
    # one dict store: atomic under the GIL, as the readers' copies of the dict (Backend.definitions) are
    request.app[BACKEND].config.definitions[added.identifier] = added
    return web.json_response({"data": definition_json(added, "with_steps")}, status=201)


@_route("POST", "/workflows")
async def launch(request: web.Request) -> web.Response:
    """Launch a workflow by ``workflow_identifier``; its ``parameters`` merged into the definition's."""
    body = await json_object(request)
    backend = request.app[BACKEND]
    identifier = body.get("workflow_identifier")
    if not isinstance(identifier, str) or not identifier:
        raise StepFlowError(422, "Missing Workflow identifier parameter")
    found = await asyncio.to_thread(_definition, backend, identifier)
    if found is None:
        raise StepFlowError(422, "Unable to locate workflow with this identifier")
    given = body.get("parameters") or {}
    reference = body.get("reference")
    if not isinstance(given, dict):
        raise StepFlowError(422, "parameters must be an object {parameter id: value}")
    if reference is not None and not isinstance(reference, str):
        raise ChangesetError("reference", "is invalid")
    if not reference:  # the workflow's changeset requires it (an empty string is blank to Ecto)
        raise ChangesetError("reference", "can't be blank")
    known = {parameter.id for parameter in found.start_parameters}
    ignored = sorted(set(given) - known)
    if ignored:  # StepFlow's merge keeps only the definition's parameters
        log.info("launch %s: parameters that are not start parameters ignored: %s", identifier, ignored)
    values = resolve_start_parameters(found, {k: v for k, v in given.items() if k in known})
    workflow_id = await run_command(request, lambda: backend.start_workflow(identifier, values))
    files = request.app[FILES]
    await asyncio.to_thread(files.set_reference, workflow_id, reference)
    view = await asyncio.to_thread(backend.workflow, workflow_id)
    return web.json_response({"data": workflow_json(view, found, reference, created=True)}, status=201)


routes.post(PREFIX + "/launch_workflow")(stepflow_errors(launch))


@_route("GET", "/workflows")
async def workflows(request: web.Request) -> web.Response:
    """Workflows, newest first, paged and filtered as StepFlow's list_workflows."""
    return await _json_in_thread(request, queries.workflows_page, request.query)


async def _workflow_view(request: web.Request) -> Any:
    workflow_id = path_id(request, "id")
    view = await asyncio.to_thread(request.app[BACKEND].workflow, workflow_id)
    if view is None:
        raise StepFlowError(404, f"Unable to locate workflow #{workflow_id}", "Not found")
    return view


@_route("GET", "/workflows/{id}")
async def workflow(request: web.Request) -> web.Response:
    """One workflow with its steps, jobs and their status history."""
    view = await _workflow_view(request)

    def document(backend: Any, files: StepFlowFiles) -> dict[str, Any]:
        return {"data": queries.workflow_with_jobs(backend, files, view)}

    return await _json_in_thread(request, document)


@_route("PUT", "/workflows/{id}")
async def update(request: web.Request) -> web.Response:
    """Refused, as StepFlow refuses it."""
    raise StepFlowError(403, "Forbidden to update workflow with this identifier")


async def _abort(request: web.Request, view: Any) -> None:
    """Abort unless it has ended (StepFlow answers ok for a workflow with nothing left to stop)."""
    backend = request.app[BACKEND]
    if view.status in FINAL_STATUSES:
        return
    try:
        await run_command(request, lambda: backend.abort(view.id))
    except EngineError:
        now = await asyncio.to_thread(backend.workflow, view.id)
        if now is not None and now.status not in FINAL_STATUSES:
            raise  # not the race with its last job: a real refusal


async def _delete(request: web.Request, view: Any) -> None:
    backend = request.app[BACKEND]
    await _abort(request, view)  # StepFlow deletes a running workflow: stop its jobs first
    await run_command(request, lambda: backend.delete(view.id))
    await asyncio.to_thread(request.app[FILES].set_reference, view.id, None)


@_route("DELETE", "/workflows/{id}")
async def delete(request: web.Request) -> web.Response:
    """Delete a workflow (aborted first when it still runs): 204."""
    await _delete(request, await _workflow_view(request))
    return web.Response(status=204)


def _job_id(body: dict[str, Any]) -> int:
    value = body.get("job_id")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**63:
        raise StepFlowError(422, "retry needs job_id, the id of a job of this workflow")
    return value


@_route("POST", "/workflows/{id}/events")
async def events(request: web.Request) -> web.Response:
    """abort / stop, retry (job_id), delete, pause, resume."""
    view = await _workflow_view(request)
    body = await json_object(request)
    event, backend = body.get("event"), request.app[BACKEND]
    if event in ("abort", "stop"):
        await _abort(request, view)
    elif event == "retry":
        job_id = _job_id(body)
        record = await asyncio.to_thread(backend.job, job_id)
        if record is None or record["workflow_id"] != view.id:
            raise StepFlowError(422, f"workflow #{view.id} has no job #{job_id}")
        if record["status"] not in ("error", "stopped"):
            return web.json_response({"status": "error", "message": "illegal operation: job "
                                      f"#{job_id} is {record['status']}"}, status=403)
        await run_command(request, lambda: backend.retry_job(job_id))
    elif event == "delete":
        await _delete(request, view)
    elif event in ("pause", "resume"):
        await run_command(request, lambda: getattr(backend, event)(view.id))
    else:
        raise StepFlowError(422, "event is not supported",
                            "expected abort, stop, retry (with job_id), delete, pause or resume")
    return web.json_response({"status": "ok"})


@_route("GET", "/workflows_statistics")
async def statistics(request: web.Request) -> web.Response:
    """Processing / completed / error counts between start_date and end_date, in time_interval bins."""
    return await _json_in_thread(request, queries.statistics, request.query)


@_route("GET", "/worker_definitions")
async def worker_definitions(request: web.Request) -> web.Response:
    """The workers that announced themselves (worker discovery), one definition per job queue, paged."""
    return await _json_in_thread(request, queries.worker_definitions_page, request.query)


@_route("GET", "/jobs")
async def jobs(request: web.Request) -> web.Response:
    """Jobs, newest first, filtered by workflow_id, job_type and step_id, paged."""
    return await _json_in_thread(request, queries.jobs_page, request.query)


def setup_stepflow(app: web.Application) -> None:
    """Add StepFlow's routes to ``app``; the definitions posted earlier (beside the state) join the backend's."""
    backend = app[BACKEND]
    state_path = getattr(getattr(backend, "config", None), "db_path", None)
    files = StepFlowFiles(Path(state_path) if state_path is not None else None)
    for posted in files.load():
        known = backend.config.definitions.get(posted.identifier)
        if known is not None:
            log.info("workflow %r posted through the API overrides the one from %s", posted.identifier, known.source)
        backend.config.definitions[posted.identifier] = posted
    app[FILES] = files
    app.add_routes(routes)
