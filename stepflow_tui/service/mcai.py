"""The routes Media Cloud AI workers call at start-up (see docs/service.md and the SDK's reference):

- ``POST /api/sessions`` ``{"session": {"email", "password"}}`` -> ``{"access_token"}``: the password must be
  an API token when one is configured (the access token is then that token); without tokens any login passes.
- ``GET /api/step_flow``: what this backend is.
- ``GET /api/step_flow/blacklist`` -> ``{"data": [job ids], "total"}``: jobs whose orders must not run.
- ``GET /api/credentials/{key}`` -> ``{"data": {"id", "key", "value", "inserted_at"}}``: full token only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

import stepflow_tui

from .auth import FULL, presented_token
from .credentials import CredentialError, check_key
from .errors import ApiError
from .inputs import json_object
from .keys import BACKEND, CREDENTIALS, TOKENS

routes = web.RouteTableDef()
#: At most this many job ids in the drop list (as the backend keeps the most recent ones).
MAX_DROPS = 100_000
_PAGE = 5000


@routes.post("/api/sessions")
async def sessions(request: web.Request) -> web.Response:
    """The Media Cloud AI login: the password must be an API token (when any is configured)."""
    body = await json_object(request)
    session = body.get("session")
    if not isinstance(session, dict):
        raise ApiError(400, "session must be an object {email, password}", "session")
    password = session.get("password")
    if not isinstance(password, str):
        raise ApiError(400, "session.password must be a string", "session.password")
    tokens = request.app[TOKENS]
    if not tokens.required:
        return web.json_response({"access_token": "stepflow-no-token-required"})
    if tokens.role(password) is None:
        raise ApiError(401, "wrong password: give an API token as the password")
    return web.json_response({"access_token": password})


@routes.get("/api/step_flow")
async def step_flow(request: web.Request) -> web.Response:
    """What this backend is, for Media Cloud AI workers."""
    backend = request.app[BACKEND]
    return web.json_response({"application": "stepflow-tui", "version": stepflow_tui.__version__,
                              "broker": backend.broker_display_url, "connection": backend.connection_state})


def drop_list(backend: Any) -> list[int]:
    """Job ids whose orders must not run: the backend's own list when it offers one, else every job now
    ``stopped`` (cancelled, or left unfinished by an abort), from the public reads, most recent last."""
    own = getattr(backend, "dropped_job_ids", None)
    if callable(own):
        return list(own())
    found: list[int] = []
    for view in backend.workflows():
        for step in view.steps:
            if not step.counts.get("stopped"):
                continue
            after: int | None = None
            while True:
                page = (backend.jobs(view.id, step.id, 0, _PAGE, status="stopped") if after is None
                        else backend.jobs(view.id, step.id, 0, _PAGE, status="stopped", after=after))
                found.extend(job.id for job in page)
                if len(page) < _PAGE:
                    break
                after = page[-1].id
    return found[-MAX_DROPS:]


@routes.get("/api/step_flow/blacklist")
async def blacklist(request: web.Request) -> web.Response:
    """Job ids whose orders must not run."""
    ids = await asyncio.to_thread(drop_list, request.app[BACKEND])
    return web.json_response({"data": ids, "total": len(ids)})


@routes.get("/api/credentials/{key}")
async def credential(request: web.Request) -> web.Response:
    """A credential by key, to the full token only."""
    tokens = request.app[TOKENS]
    if not tokens.full or tokens.role(presented_token(request)) != FULL:
        raise ApiError(403, "credentials are only served to a client with the full API token "
                            "(configure STEPFLOW_API_TOKEN)")
    store = request.app[CREDENTIALS]
    key = request.match_info["key"]
    try:
        check_key(key)
    except CredentialError as exc:
        raise ApiError(400, str(exc), "key") from None
    try:
        found = await asyncio.to_thread(store.get, key) if store is not None else None
    except CredentialError as exc:  # the file is unreadable: the service's problem, not the client's
        raise ApiError(503, str(exc)) from None
    if found is None:
        raise ApiError(404, f"no credential {key[:100]!r}")
    return web.json_response({"data": found.to_dict()})
