"""Reading what a client sent (path ids, query parameters, JSON bodies), each failure a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import ApiError

#: Ids are positive and fit in 63 bits; a bigger number cannot name anything (404).
MAX_ID = 2**63 - 1
MAX_LIMIT = 10_000


def _integer(text: str, field: str) -> int:
    if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 40:
        raise ApiError(400, f"{field} must be an integer, not {text[:40]!r}", field)
    return int(text)


def path_id(request: web.Request, name: str) -> int:
    """An id from the path; 400 if it is not an integer, 404 if it cannot name anything."""
    value = _integer(request.match_info[name], name)
    if not 0 <= value <= MAX_ID:
        raise ApiError(404, f"no such {name.removesuffix('_id')} #{value}")
    return value


def query_int(request: web.Request, name: str, default: int | None, *, minimum: int = 0,
              maximum: int = MAX_ID) -> int | None:
    """An integer query parameter within [minimum, maximum], or ``default`` when absent."""
    text = request.query.get(name)
    if text is None or text == "":
        return default
    value = _integer(text, name)
    if not minimum <= value <= maximum:
        raise ApiError(400, f"{name} must be between {minimum} and {maximum}, not {value}", name)
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter that must be one of ``choices`` (None when absent)."""
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}, not {value[:40]!r}", name)
    return value


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object (``{}`` for an empty body when not ``required``)."""
    raw = await request.read()  # the app's client_max_size turns a huge body into a 413
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON object is required as the request body", "body")
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not valid UTF-8", "body") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {str(exc)[:100]}", "body") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(data).__name__}", "body")
    try:
        # JSON's \ud800 escapes give lone surrogates, which no file or message can hold: refuse them here
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "the body holds an invalid \\u escape (a lone surrogate)", "body") from None
    return data


_TYPES: dict[type, str] = {str: "a string", bool: "true or false", dict: "an object", int: "an integer"}


def field(body: dict[str, Any], name: str, kind: type, *, required: bool = False, default: Any = None) -> Any:
    """``body[name]`` checked to be of ``kind`` (bools are not integers)."""
    if name not in body or body[name] is None:
        if required:
            raise ApiError(400, f"{name} is required", name)
        return default
    value = body[name]
    wrong = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    if wrong:
        raise ApiError(400, f"{name} must be {_TYPES.get(kind, kind.__name__)}, not {type(value).__name__}", name)
    if kind is int and not 0 <= value <= MAX_ID:
        raise ApiError(400, f"{name} is out of range", name)
    return value
