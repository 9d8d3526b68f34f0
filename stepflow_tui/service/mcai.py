"""The routes Media Cloud AI workers call at start-up (see docs/service.md and the SDK's reference):

- ``POST /api/sessions`` ``{"session": {"email", "password"}}`` -> ``{"access_token"}``: the password must be
  an API token when one is configured (the access token is then that token); without tokens any login passes.
- ``GET /api/step_flow``: what this backend is; ``version`` is the StepFlow API version this one speaks (the
  SDK ignores the black list below 1.8).
- ``GET /api/step_flow/blacklist`` -> ``{"data": [job ids], "total"}``: jobs whose orders must not run.
- ``GET /api/credentials/{key}`` -> ``{"data": {"id", "key", "value", "inserted_at"}}``: full token only.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

import stepflow_tui

from .auth import FULL, presented_token
from .credentials import CredentialError, check_key
from .errors import ApiError
from .inputs import json_object
from .keys import BACKEND, CREDENTIALS, TOKENS

routes = web.RouteTableDef()
#: The StepFlow version whose API this service answers (>= 1.8: the SDK then asks for the black list).
STEP_FLOW_VERSION = "1.8.1"


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
    return web.json_response({"application": "stepflow-tui", "version": STEP_FLOW_VERSION,
                              "stepflow_tui_version": stepflow_tui.__version__, "broker": backend.broker_display_url, "connection": backend.connection_state})


@routes.get("/api/step_flow/blacklist")
async def blacklist(request: web.Request) -> web.Response:
    """Job ids whose orders must not run."""
    ids = await asyncio.to_thread(request.app[BACKEND].dropped_job_ids)
    return web.json_response({"data": ids, "total": len(ids)})


@routes.get("/api/credentials/{key}")
async def credential(request: web.Request) -> web.Response:
    """A credential by key, to the full token only."""
    tokens = request.app[TOKENS]
    if not tokens.full or tokens.role(presented_token(request)) != FULL:
        raise ApiError(403, "credentials are only served to a client with the full API token "
                            "(STEPFLOW_API_TOKEN, or the <state>.token file)")
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
