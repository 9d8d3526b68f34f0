"""JSON bodies encoded a piece at a time, in a thread: the same text as ``json.dumps``.

json's encoder holds the GIL for a whole call: one call on a StepFlow workflow of 100,000 jobs (49 MB) stopped
every other thread (the event loop, the broker thread) for half a second, and holding the whole document as
Python objects first made the garbage collector rescan it again and again. `json_bytes` encodes long lists a
slice at a time and splices text already encoded (`Encoded`: a workflow's jobs, encoded a page at a time as
they are read).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

SLICE = 200  # items of a long list encoded per call


@dataclass(frozen=True, slots=True)
class Encoded:
    """A JSON value already encoded: its ``json.dumps`` text, in parts (joined once, by `json_bytes`, which
    splices it as it is within two levels of dicts and lists, never as an item of a list longer than a slice)."""

    parts: tuple[str, ...]


def encoded_list(pieces: Iterable[str]) -> Encoded:
    """A JSON array from the encoded texts of its parts, each ``json.dumps(part_list)[1:-1]`` (empty ones
    skipped): the text ``json.dumps`` gives the whole list."""
    parts = ["["]
    for piece in pieces:
        if piece:
            parts += (", ", piece) if len(parts) > 1 else (piece,)
    parts.append("]")
    return Encoded(tuple(parts))


def json_bytes(value: Any) -> bytes:
    """``json.dumps(value)`` as UTF-8, with `Encoded` parts spliced and long lists encoded a slice at a time."""
    # a piece at a time, then one join: a 49 MB text copied whole holds the GIL each time
    return b"".join(piece.encode("utf-8") for piece in _pieces(value))


def _pieces(value: Any) -> Iterator[str]:
    if isinstance(value, Encoded):
        yield from value.parts
    elif type(value) is list and len(value) > SLICE:
        yield from encoded_list(json.dumps(value[start:start + SLICE])[1:-1]
                                for start in range(0, len(value), SLICE)).parts
    elif not _splits(value):
        yield json.dumps(value)
    elif type(value) is dict:
        for index, (key, item) in enumerate(value.items()):
            yield ("{" if index == 0 else ", ") + json.dumps(key) + ": "
            yield from _pieces(item)
        yield "}"
    else:
        for index, item in enumerate(value):
            yield "[" if index == 0 else ", "
            yield from _pieces(item)
        yield "]"


def _splits(value: Any, lookahead: int = 2) -> bool:
    """Whether ``value`` (a dict with string keys, or a list) holds, within ``lookahead`` levels, `Encoded` text
    or a list longer than a slice."""
    if type(value) is dict and all(type(key) is str for key in value):
        items: Any = value.values()
    elif type(value) is list:
        items = value
    else:
        return False
    return any(isinstance(item, Encoded) or (type(item) is list and len(item) > SLICE)
               or (lookahead > 0 and _splits(item, lookahead - 1)) for item in items)
