"""JSON text for the store and the wire: orjson's speed, and every Python string storable.

Python hands us strings that are not valid Unicode: a non-UTF-8 file name or command-line argument decodes
to lone surrogates (``'caf\\udce9'``, PEP 383), and a peer may send ``"\\udce9"`` escapes. orjson refuses them
both ways, and UTF-8 cannot encode them. Here they are written as JSON escapes (``\\udce9``, plain ASCII) and
read back to the same string, so a path survives the round trip worker -> backend -> state -> worker.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: What `dumps` raises for a value JSON cannot hold (too large, too deep, not a JSON type).
UNSTORABLE = (TypeError, ValueError, RecursionError)


def dumps(value: Any) -> str:
    """Compact JSON text. Lone surrogates become ``\\uXXXX`` escapes; raises ``ValueError`` (an integer of
    more than 4,300 digits), ``RecursionError`` (nesting deeper than the stack) or ``TypeError``."""
    try:
        # As text, not orjson's bytes: each bytes object orjson returns keeps a larger allocation, and the store
        # caches many serialised documents (docs/performance.md).
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        # orjson.JSONEncodeError: lone surrogates, integers beyond 64 bits, nesting beyond 254. Rare: the
        # standard library, ASCII only so that the text always encodes to UTF-8.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def dumps_bytes(value: Any) -> bytes:
    """`dumps` as UTF-8 bytes (the wire)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def loads(raw: bytes | str) -> Any:
    """Parse JSON. Raises ``ValueError`` for invalid JSON (``RecursionError`` if nested too deep)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # The standard library also accepts lone surrogate escapes (see above), NaN, Infinity and integers
        # beyond 64 bits; truly invalid JSON raises its ValueError from here.
        return json.loads(raw)


def unstorable(value: Any) -> str | None:
    """Why ``value`` cannot be written as JSON (one line), or None when it can."""
    try:
        dumps(value)
    except UNSTORABLE as error:
        return f"{type(error).__name__}: {str(error)[:200]}"
    return None


def printable(text: str) -> str:
    """``text`` with lone surrogates shown as ``\\udcXX`` escapes, safe to print or draw on any terminal."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
