"""The JSON Schema of a workflow definition (workflow.schema.json, beside this module), checked with
`jsonschema`; its first error becomes a `DefinitionError` naming the file, the workflow and the field."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from stepflow_tui.core.definitions.fields import Context
from stepflow_tui.core.definitions.model import DefinitionError

if TYPE_CHECKING:
    import jsonschema

SCHEMA_FILE = "workflow.schema.json"
#: Longest message taken from jsonschema (it quotes the offending value, which may be large).
_MAX_MESSAGE = 200


@cache
def workflow_schema() -> dict[str, Any]:
    """The workflow JSON Schema shipped with stepflow-tui."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator() -> jsonschema.Draft7Validator:
    import jsonschema  # imported on first use: it costs ~50 ms, and most CLI commands load no definitions

    return jsonschema.Draft7Validator(workflow_schema())


def field_path(parts: Any) -> str:
    """``steps[1].parameters[0].value`` from jsonschema's path parts."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(error: jsonschema.ValidationError) -> tuple[str, str]:
    path = field_path(error.absolute_path)
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = next((key for key in error.validator_value if key not in (error.instance or {})), None)
        if missing is not None:
            return (f"{path}.{missing}" if path else missing), f"{missing} is required"
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    return path, message.replace("\n", " ")


def _without_nulls(value: Any) -> Any:
    # The parsers read a null field as an absent one; the schema is told the same.
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def schema_errors(raw: dict[str, Any], ctx: Context) -> list[DefinitionError]:
    """Every place ``raw`` breaks the workflow schema, in document order, as `DefinitionError`s (a null
    field counts as absent)."""
    errors = sorted(_validator().iter_errors(_without_nulls(raw)), key=lambda error: [
        (0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in error.absolute_path])
    result = []
    for error in errors:
        path, message = _message(error)
        result.append(ctx.error(path or None, message))
    return result


def check_schema(raw: dict[str, Any], ctx: Context) -> None:
    """Raise the first schema error of ``raw``, if any."""
    errors = schema_errors(raw, ctx)
    if errors:
        raise errors[0]
