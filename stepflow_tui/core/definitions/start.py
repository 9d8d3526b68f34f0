"""Resolving the start parameter values a workflow is started with (from a form or ``-p key=value``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from stepflow_tui.core.definitions.fields import is_number
from stepflow_tui.core.definitions.model import StartParameter, StartParameterError, WorkflowDefinition


def _number(text: Any) -> int | float:
    if is_number(text):
        return text
    stripped = str(text).strip()
    try:
        return int(stripped)
    except ValueError:
        value = float(stripped)
        if not math.isfinite(value):
            raise
        return value


def _resolve_one(workflow: str, parameter: StartParameter, value: Any) -> Any:
    if parameter.type == "number":
        try:
            return _number(value)
        except ValueError:
            raise StartParameterError(f"{workflow}: start parameter {parameter.id!r} ({parameter.label}) "
                                      f"must be a number, not {value!r}") from None
    if parameter.type == "choice":
        matches = [item for item in parameter.items if item == value or str(item) == str(value)]
        if not matches:
            choices = ", ".join(str(item) for item in parameter.items)
            raise StartParameterError(f"{workflow}: start parameter {parameter.id!r} ({parameter.label}) "
                                      f"must be one of {choices}, not {value!r}")
        return matches[0]
    return value if isinstance(value, str) else str(value)


def resolve_start_parameters(definition: WorkflowDefinition, given: Mapping[str, Any]) -> dict[str, Any]:
    """The start parameter values of a workflow: ``given`` (strings from a form or ``-p key=value``) with
    defaults applied, numbers converted to int / float and choices checked against their items (ids). An
    empty string counts as not given. Raise `StartParameterError` (naming the workflow and the parameter)
    for an unknown key, a missing required value or a bad value. Optional parameters without value are None."""
    workflow = f"workflow {definition.identifier!r}"
    known = {parameter.id: parameter for parameter in definition.start_parameters}
    for key in given:
        if key not in known:
            names = ", ".join(known) or "none"
            raise StartParameterError(f"{workflow}: unknown start parameter {key!r} (known: {names})")
    values: dict[str, Any] = {}
    for parameter in definition.start_parameters:
        value = given.get(parameter.id)
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None:
            if parameter.default is None and parameter.required:
                raise StartParameterError(f"{workflow}: missing required start parameter {parameter.id!r} "
                                          f"({parameter.label})")
            values[parameter.id] = copy.deepcopy(parameter.default)
            continue
        values[parameter.id] = _resolve_one(workflow, parameter, value)
    return values
