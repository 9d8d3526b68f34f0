"""JSON errors: every failure a client can cause becomes ``{"error": {"status", "message", "field"?}}`` with
the right status, never a traceback. `error_middleware` converts what the handlers raise."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from stepflow_tui.core.engine import EngineError

log = logging.getLogger("stepflow_tui.service")

#: Largest request body accepted (commands are small JSON objects).
MAX_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An error to send to the client as it is."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"status": status, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def error_response(status: int, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error response."""
    return web.json_response(error_body(status, message, field), status=status, headers=headers)


_NOT_FOUND = re.compile(r"^no (job|workflow) #")
_REFUSED = re.compile(r"^read-only mode")
_NOT_RUNNING = re.compile(r"^(the backend is not running|not connected to)")


def engine_error(exc: Exception) -> ApiError:
    """Map a command's failure (the backend's `EngineError` / ValueError messages) to a status: 404 for an
    unknown id, 403 for read-only mode, 503 when the backend cannot act now, 409 for the wrong state."""
    message = str(exc)
    if _NOT_FOUND.match(message):
        return ApiError(404, message)
    if _REFUSED.match(message):
        return ApiError(403, message)
    if _NOT_RUNNING.match(message):
        return ApiError(503, message)
    return ApiError(409, message)


_HTTP_MESSAGES = {404: "no such resource", 405: "method not allowed on this resource",
                  413: f"request body too large (at most {MAX_BODY} bytes)"}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every exception into a JSON error; log unexpected ones (without the request's body)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _HTTP_MESSAGES.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, message, headers=headers)
    except (EngineError, ValueError) as exc:
        error = engine_error(exc)
        return error_response(error.status, error.message, error.field)
    except Exception:  # a bug of ours: the client gets a 500 without details, the log gets the traceback
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error (see the service's log)")
