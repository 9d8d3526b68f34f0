"""Step parameters, workflow parameters and start parameters: their parsing and value checks."""

from __future__ import annotations

import copy
import re
from typing import Any

from stepflow_tui.core.definitions.fields import Context, check_keys, is_int, is_number, required_string
from stepflow_tui.core.definitions.model import START_PARAMETER_TYPES, StartParameter
from stepflow_tui.core.templates import NAME_PATTERN, TemplateError, check_template_with_expressions

#: Parameter types, and what their ``value`` / ``default`` must look like (None: anything).
PARAMETER_TYPES: dict[str, str | None] = {
    "string": "string",
    "template": "template",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array_of_strings": "list of strings",
    "array_of_templates": "list of templates",
    "array_of_integers": "list of integers",
    "filter": "filter",
    "credential": "string",
    "select_input": None,
    "requirements": None,
    "extended": None,
    "array_of_media_segments": None,
}
#: Parameter types rendered by the engine before an order is sent (they arrive as string / array_of_strings).
TEMPLATE_TYPES = ("template", "array_of_templates")

PARAMETER_KEYS = frozenset({"id", "type", "value", "default", "label", "required", "description", "store"})
_START_PARAMETER_KEYS = frozenset({"id", "label", "type", "default", "required", "items", "description",
                                   "accept", "icon", "step", "value", "work_dir"})


def _value_fits(kind: str | None, value: Any) -> bool:
    if kind in ("string", "template"):
        return isinstance(value, str)
    if kind == "integer":
        return is_int(value)
    if kind == "number":
        return is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("list of strings", "list of templates"):
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    if kind == "list of integers":
        return isinstance(value, list) and all(is_int(item) for item in value)
    return True


def check_parameter_value(ctx: Context, kind: str | None, value: Any, field_path: str) -> None:
    """Check ``value`` against the shape its parameter type promises (None: no check); templates are checked
    with their ``<%= … %>`` expressions."""
    if kind == "filter":
        ends_with = value.get("ends_with") if isinstance(value, dict) else None
        if not (isinstance(value, dict) and set(value) <= {"ends_with"} and isinstance(ends_with, list)
                and all(isinstance(item, str) for item in ends_with)):
            raise ctx.error(field_path, f'a filter must be {{"ends_with": [".ext", ...]}}, not {value!r}')
    if not _value_fits(kind, value):
        raise ctx.error(field_path, f"must be a {kind}, not {value!r}")
    if kind in ("template", "list of templates"):
        for index, template in enumerate([value] if isinstance(value, str) else value):
            try:
                check_template_with_expressions(template)
            except TemplateError as error:
                raise ctx.error(field_path if isinstance(value, str) else f"{field_path}[{index}]",
                                str(error)) from None


def parse_parameters(ctx: Context, value: Any, path: str) -> tuple[dict[str, Any], ...]:
    """The parameters list at ``path`` (a step's or the workflow's), checked, as plain dicts."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error(path, f"parameters must be a list of objects, not {value!r}")
    parameters: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, parameter in enumerate(value):
        here = f"{path}[{index}]"
        if not isinstance(parameter, dict):
            raise ctx.error(here, f"a parameter must be an object with id and type, not {parameter!r}")
        parameter_id = required_string(ctx, parameter, "id", here)
        if parameter_id in seen:
            raise ctx.error(f"{here}.id", f"duplicate parameter id {parameter_id!r}")
        seen.add(parameter_id)
        kind = required_string(ctx, parameter, "type", here)
        check_keys(ctx, parameter, here, PARAMETER_KEYS)
        if kind not in PARAMETER_TYPES:
            ctx.warn(f"{here}.type", f"unknown parameter type {kind!r}, passed to the worker as given")
        for key in ("value", "default"):
            if key in parameter and parameter[key] is not None:
                check_parameter_value(ctx, PARAMETER_TYPES.get(kind), parameter[key], f"{here}.{key}")
        parameters.append({key: copy.deepcopy(item) for key, item in parameter.items() if key in PARAMETER_KEYS})
    return tuple(parameters)


def _choice_items(ctx: Context, raw_items: Any, here: str) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """Ids and labels of a choice: StepFlow's ``[{"id", "label"}]`` or our list of strings or numbers."""
    if isinstance(raw_items, list) and raw_items and all(isinstance(item, dict) for item in raw_items):
        ids, labels = [], []
        for index, item in enumerate(raw_items):
            item_id = item.get("id")
            if not (isinstance(item_id, str) or is_number(item_id)):
                raise ctx.error(f"{here}.items[{index}].id", f"a choice item id must be a string, not {item_id!r}")
            label = item.get("label", str(item_id))
            if not isinstance(label, str):
                raise ctx.error(f"{here}.items[{index}].label", f"a label must be a string, not {label!r}")
            ids.append(item_id)
            labels.append(label)
        return tuple(ids), tuple(labels)
    if (not isinstance(raw_items, list) or not raw_items
            or not all(isinstance(choice, str) or is_number(choice) for choice in raw_items)):
        raise ctx.error(f"{here}.items", "a choice needs items: a non-empty list of strings or numbers, "
                                         'or of {"id", "label"} objects')
    return tuple(raw_items), ()


def _check_start_default(ctx: Context, kind: str, default: Any, items: tuple[Any, ...], here: str) -> None:
    if default is None:
        return
    if kind == "number" and not is_number(default):
        raise ctx.error(f"{here}.default", f"default of a number must be a number, not {default!r}")
    if kind in ("string", "file") and not isinstance(default, str):
        raise ctx.error(f"{here}.default", f"default of a {kind} must be a string, not {default!r}")
    if kind == "choice" and default not in items:
        raise ctx.error(f"{here}.default", f"default {default!r} is not one of the items {list(items)}")


def _parse_start_parameter(ctx: Context, item: Any, here: str) -> StartParameter:
    if not isinstance(item, dict):
        raise ctx.error(here, f"a start parameter must be an object, not {item!r}")
    parameter_id = required_string(ctx, item, "id", here)
    if not re.fullmatch(NAME_PATTERN, parameter_id):
        raise ctx.error(f"{here}.id", f"{parameter_id!r} is not usable as a template variable "
                                      "(letters, digits and _; not starting with a digit)")
    check_keys(ctx, item, here, _START_PARAMETER_KEYS)
    label = item.get("label", parameter_id)
    if not isinstance(label, str) or not label.strip():
        raise ctx.error(f"{here}.label", f"label must be a non-empty string, not {label!r}")
    kind = item.get("type", "string")
    if kind not in START_PARAMETER_TYPES:
        raise ctx.error(f"{here}.type", f"type {kind!r} is not one of {', '.join(START_PARAMETER_TYPES)}")
    required = item.get("required", False)
    if not isinstance(required, bool):
        raise ctx.error(f"{here}.required", f"required must be true or false, not {required!r}")
    items: tuple[Any, ...] = ()
    labels: tuple[str, ...] = ()
    if kind == "choice":
        items, labels = _choice_items(ctx, item.get("items"), here)
    elif item.get("items") is not None:
        ctx.warn(f"{here}.items", f"items only apply to a choice, ignored for type {kind!r}")
    default = item.get("default")
    _check_start_default(ctx, kind, default, items, here)
    return StartParameter(id=parameter_id, label=label, type=kind, default=copy.deepcopy(default),
                          required=required, items=items, item_labels=labels)


def parse_start_parameters(ctx: Context, value: Any) -> tuple[StartParameter, ...]:
    """The workflow's ``start_parameters``, checked (ids unique and usable as template variables)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error("start_parameters", f"must be a list of objects, not {value!r}")
    result: list[StartParameter] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        here = f"start_parameters[{index}]"
        parameter = _parse_start_parameter(ctx, item, here)
        if parameter.id in seen:
            raise ctx.error(f"{here}.id", f"duplicate start parameter id {parameter.id!r}")
        seen.add(parameter.id)
        result.append(parameter)
    return tuple(result)
