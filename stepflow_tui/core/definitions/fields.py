"""Shared helpers of the definition parsers: where we are (for messages) and the small field checks."""

from __future__ import annotations

import logging
import math
from typing import Any

from stepflow_tui.core.definitions.model import DefinitionError

logger = logging.getLogger("stepflow_tui.definitions")


def is_int(value: Any) -> bool:
    """An integer that is not a boolean (JSON ``true`` is a bool in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a boolean."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


class Context:
    """Where we are, to build errors and warnings that name the file, the workflow and the field."""

    def __init__(self, source: str, workflow: str | None) -> None:
        self.source = source
        self.workflow = workflow

    def error(self, field_path: str | None, message: str) -> DefinitionError:
        """A `DefinitionError` at ``field_path`` of the current workflow."""
        return DefinitionError(message, source=self.source, workflow=self.workflow, field_path=field_path)

    def warn(self, field_path: str, message: str) -> None:
        """Log a warning naming the file, the workflow and ``field_path``."""
        where = [self.source] if self.source else []
        if self.workflow:
            where.append(f"workflow {self.workflow!r}")
        where.append(f"field {field_path!r}")
        logger.warning("%s: %s", ": ".join(where), message)


def check_keys(ctx: Context, data: dict[str, Any], path: str, known: frozenset[str],
               ignored: frozenset[str] = frozenset()) -> None:
    """Warn about keys that are neither ``known`` nor ``ignored`` (and about ``ignored`` ones, as such)."""
    prefix = f"{path}." if path else ""
    for key in data:
        if key in known:
            continue
        if key in ignored:
            ctx.warn(f"{prefix}{key}", "not supported by stepflow-tui, ignored")
        else:
            ctx.warn(f"{prefix}{key}", "unknown field, ignored")


def required_string(ctx: Context, data: dict[str, Any], key: str, path: str) -> str:
    """``data[key]`` as a non-empty string, or a `DefinitionError`."""
    value = data.get(key)
    field_path = f"{path}.{key}" if path else key
    if value is None:
        raise ctx.error(field_path, f"{key} is required")
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(field_path, f"{key} must be a non-empty string, not {value!r}")
    return value


def optional_string(ctx: Context, data: dict[str, Any], key: str, path: str) -> str | None:
    """``data[key]`` if it is a string, None if absent, else a `DefinitionError`."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ctx.error(f"{path}.{key}" if path else key, f"{key} must be a string, not {value!r}")
    return value


def int_list(ctx: Context, value: Any, field_path: str) -> tuple[int, ...]:
    """A list of step ids, or a `DefinitionError`."""
    if not isinstance(value, list) or not all(is_int(item) for item in value):
        raise ctx.error(field_path, f"must be a list of step ids (integers), not {value!r}")
    return tuple(value)
