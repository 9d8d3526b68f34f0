"""Workflow definitions (a subset of the StepFlow format): the data classes, loading and validation.

`load_definitions(path)` reads a workflows.json and returns validated `WorkflowDefinition`s; any problem raises
`DefinitionError`, whose message names the file, the workflow and the field.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stepflow_tui.core.templates import NAME_PATTERN, TemplateError, check_template

ONE_FOR_ONE = "one_for_one"
ONE_FOR_MANY = "one_for_many"
START_PARAMETER_TYPES = ("string", "number", "choice", "file")


class DefinitionError(ValueError):
    """A workflow definition is malformed. ``str(error)`` is a one-line message fit for a user."""

    def __init__(self, message: str, *, source: str | None = None, workflow: str | None = None,
                 field_path: str | None = None) -> None:
        self.source = source
        self.workflow = workflow
        self.field_path = field_path
        self.detail = message
        where = []
        if source:
            where.append(source)
        if workflow:
            where.append(f"workflow {workflow!r}")
        if field_path:
            where.append(f"field {field_path!r}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class StartParameterError(ValueError):
    """Start parameters given to a workflow are missing or invalid (message names workflow and parameter)."""


@dataclass(frozen=True)
class StartParameter:
    id: str
    label: str
    type: str = "string"  # string | number | choice | file
    default: Any = None
    required: bool = False
    items: tuple[Any, ...] = ()  # allowed values for ``choice``


@dataclass(frozen=True)
class StepDefinition:
    id: int
    name: str  # job type; a leading ``job_`` is stripped on load (``job_transfer`` == ``transfer``)
    label: str
    parent_ids: tuple[int, ...] = ()
    required_to_start: tuple[int, ...] = ()  # defaults to parent_ids when absent
    mode: str = ONE_FOR_ONE
    parameters: tuple[dict[str, Any], ...] = ()  # [{"id", "type", "value"?, "default"?}]
    max_retries: int = 0
    retry_delay: float = 0.0
    timeout: float | None = None

    @property
    def queue(self) -> str:
        return f"job_{self.name}"


@dataclass(frozen=True)
class WorkflowDefinition:
    identifier: str
    label: str
    version_major: int = 0
    version_minor: int = 0
    version_micro: int = 1
    version_parts: int = 3  # how many of major/minor/micro the JSON gave (up to the last one given)
    tags: tuple[str, ...] = ()
    start_parameters: tuple[StartParameter, ...] = ()
    steps: tuple[StepDefinition, ...] = ()
    source: str = ""  # where it was loaded from (file path or ``plugin:<name>``)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # the JSON as given

    @property
    def version(self) -> str:
        """The version as the definition states it: ``version_major: 1`` alone is ``1``, not ``1.0.1``."""
        parts = (self.version_major, self.version_minor, self.version_micro)
        return ".".join(str(part) for part in parts[:self.version_parts or 3])

    def step(self, step_id: int) -> StepDefinition:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


# --------------------------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------------------------

logger = logging.getLogger("stepflow_tui.definitions")

IDENTIFIER_PATTERN = re.compile(r"^[a-z0-9_]+$")
JOB_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
MODES = (ONE_FOR_ONE, ONE_FOR_MANY)
#: StepFlow modes we know but do not run.
UNSUPPORTED_MODES = ("notification", "workflow_one_for_one", "workflow_one_for_many")

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
    "select_input": None,
    "requirements": None,
    "extended": None,
    "array_of_media_segments": None,
}
#: Parameter types rendered by the engine before an order is sent (they arrive as string / array_of_strings).
TEMPLATE_TYPES = ("template", "array_of_templates")

VERSION_KEYS = ("version_major", "version_minor", "version_micro")
_WORKFLOW_KEYS = frozenset({"identifier", "label", "version_major", "version_minor", "version_micro", "tags",
                            "start_parameters", "steps"})
_STEP_KEYS = frozenset({"id", "name", "label", "parent_ids", "required_to_start", "mode", "parameters",
                        "max_retries", "retry_delay", "timeout"})
_PARAMETER_KEYS = frozenset({"id", "type", "value", "default", "label", "required", "description"})
_START_PARAMETER_KEYS = frozenset({"id", "label", "type", "default", "required", "items", "description"})
# StepFlow fields we accept and ignore (with a warning): they change nothing a workflow computes here.
_IGNORED_WORKFLOW_KEYS = frozenset({"icon", "rights", "notification_hooks", "reference", "is_live",
                                    "schema_version", "parameters", "skip_destination_path", "work_dir",
                                    "allow_failure", "description", "$schema"})
_IGNORED_STEP_KEYS = frozenset({"icon", "skip_destination_path", "work_dir", "allow_failure", "description"})
# StepFlow fields that would change what a workflow does: running without them would misread the definition.
_REFUSED_STEP_KEYS = {
    "condition": "step conditions are not supported (remove it, or split the workflow)",
    "multiple_jobs": "multiple_jobs (segment fan-out) is not supported",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


class _Context:
    """Where we are, to build errors and warnings that name the file, the workflow and the field."""

    def __init__(self, source: str, workflow: str | None) -> None:
        self.source = source
        self.workflow = workflow

    def error(self, field_path: str | None, message: str) -> DefinitionError:
        return DefinitionError(message, source=self.source, workflow=self.workflow, field_path=field_path)

    def warn(self, field_path: str, message: str) -> None:
        where = [self.source] if self.source else []
        if self.workflow:
            where.append(f"workflow {self.workflow!r}")
        where.append(f"field {field_path!r}")
        logger.warning("%s: %s", ": ".join(where), message)


def _find_eex(value: Any, path: str) -> str | None:
    """The path of the first string holding an EEx tag ``<%`` (StepFlow's evaluated templates), if any."""
    if isinstance(value, str):
        return path if "<%" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_eex(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find_eex(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _check_keys(ctx: _Context, data: dict[str, Any], path: str, known: frozenset[str],
                ignored: frozenset[str] = frozenset()) -> None:
    prefix = f"{path}." if path else ""
    for key in data:
        if key in known:
            continue
        if key in ignored:
            ctx.warn(f"{prefix}{key}", "not supported by stepflow-tui, ignored")
        else:
            ctx.warn(f"{prefix}{key}", "unknown field, ignored")


def _required_string(ctx: _Context, data: dict[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    field_path = f"{path}.{key}" if path else key
    if value is None:
        raise ctx.error(field_path, f"{key} is required")
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(field_path, f"{key} must be a non-empty string, not {value!r}")
    return value


def _int_list(ctx: _Context, value: Any, field_path: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(_is_int(item) for item in value):
        raise ctx.error(field_path, f"must be a list of step ids (integers), not {value!r}")
    return tuple(value)


def _check_parameter_value(ctx: _Context, kind: str | None, value: Any, field_path: str) -> None:
    """Check ``value`` against the shape its parameter type promises (None: no check)."""
    ok = True
    if kind in ("string", "template"):
        ok = isinstance(value, str)
    elif kind == "integer":
        ok = _is_int(value)
    elif kind == "number":
        ok = _is_number(value)
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in ("list of strings", "list of templates"):
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind == "list of integers":
        ok = isinstance(value, list) and all(_is_int(item) for item in value)
    elif kind == "filter":
        ends_with = value.get("ends_with") if isinstance(value, dict) else None
        ok = (isinstance(value, dict) and set(value) <= {"ends_with"} and isinstance(ends_with, list)
              and all(isinstance(item, str) for item in ends_with))
        if not ok:
            raise ctx.error(field_path, f'a filter must be {{"ends_with": [".ext", ...]}}, not {value!r}')
    if not ok:
        raise ctx.error(field_path, f"must be a {kind}, not {value!r}")
    if kind in ("template", "list of templates"):
        for index, template in enumerate([value] if isinstance(value, str) else value):
            try:
                check_template(template)
            except TemplateError as error:
                raise ctx.error(field_path if isinstance(value, str) else f"{field_path}[{index}]",
                                str(error)) from None


def _parse_parameters(ctx: _Context, value: Any, path: str) -> tuple[dict[str, Any], ...]:
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
        parameter_id = _required_string(ctx, parameter, "id", here)
        if parameter_id in seen:
            raise ctx.error(f"{here}.id", f"duplicate parameter id {parameter_id!r}")
        seen.add(parameter_id)
        kind = _required_string(ctx, parameter, "type", here)
        if kind == "credential" or "store" in parameter:
            raise ctx.error(here, f"parameter {parameter_id!r}: credential stores are not supported "
                                  "(pass the value directly, or let the worker read its own secret)")
        _check_keys(ctx, parameter, here, _PARAMETER_KEYS)
        if kind not in PARAMETER_TYPES:
            ctx.warn(f"{here}.type", f"unknown parameter type {kind!r}, passed to the worker as given")
        for key in ("value", "default"):
            if key in parameter and parameter[key] is not None:
                _check_parameter_value(ctx, PARAMETER_TYPES.get(kind), parameter[key], f"{here}.{key}")
        if "value" not in parameter and "default" not in parameter:
            ctx.warn(here, f"parameter {parameter_id!r} has neither value nor default")
        parameters.append({key: copy.deepcopy(item) for key, item in parameter.items() if key in _PARAMETER_KEYS})
    return tuple(parameters)


def _parse_start_parameters(ctx: _Context, value: Any) -> tuple[StartParameter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ctx.error("start_parameters", f"must be a list of objects, not {value!r}")
    result: list[StartParameter] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        here = f"start_parameters[{index}]"
        if not isinstance(item, dict):
            raise ctx.error(here, f"a start parameter must be an object, not {item!r}")
        parameter_id = _required_string(ctx, item, "id", here)
        if not re.fullmatch(NAME_PATTERN, parameter_id):
            raise ctx.error(f"{here}.id", f"{parameter_id!r} is not usable as a template variable "
                                          "(letters, digits and _; not starting with a digit)")
        if parameter_id in seen:
            raise ctx.error(f"{here}.id", f"duplicate start parameter id {parameter_id!r}")
        seen.add(parameter_id)
        _check_keys(ctx, item, here, _START_PARAMETER_KEYS)
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
        if kind == "choice":
            raw_items = item.get("items")
            if (not isinstance(raw_items, list) or not raw_items
                    or not all(isinstance(choice, str) or _is_number(choice) for choice in raw_items)):
                raise ctx.error(f"{here}.items", "a choice needs items: a non-empty list of strings or numbers")
            items = tuple(raw_items)
        elif item.get("items") is not None:
            ctx.warn(f"{here}.items", f"items only apply to a choice, ignored for type {kind!r}")
        default = item.get("default")
        if default is not None:
            if kind == "number" and not _is_number(default):
                raise ctx.error(f"{here}.default", f"default of a number must be a number, not {default!r}")
            if kind in ("string", "file") and not isinstance(default, str):
                raise ctx.error(f"{here}.default", f"default of a {kind} must be a string, not {default!r}")
            if kind == "choice" and default not in items:
                raise ctx.error(f"{here}.default", f"default {default!r} is not one of the items {list(items)}")
        result.append(StartParameter(id=parameter_id, label=label, type=kind, default=copy.deepcopy(default),
                                     required=required, items=items))
    return tuple(result)


def _parse_step(ctx: _Context, raw: Any, index: int) -> StepDefinition:
    here = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise ctx.error(here, f"a step must be an object, not {raw!r}")
    step_id = raw.get("id")
    if not _is_int(step_id):
        raise ctx.error(f"{here}.id", f"step id must be an integer, not {step_id!r}")
    name = _required_string(ctx, raw, "name", here).strip().removeprefix("job_")
    if not name:
        raise ctx.error(f"{here}.name", "the job type name is empty after removing its 'job_' prefix")
    if not JOB_TYPE_PATTERN.fullmatch(name):
        # The name becomes a queue name and a routing key: keep it to characters both take as they are.
        raise ctx.error(f"{here}.name", f"job type {name!r} may only hold letters, digits, '_', '-' and '.'")
    for key, reason in _REFUSED_STEP_KEYS.items():
        if raw.get(key) not in (None, False, "", [], {}):
            raise ctx.error(f"{here}.{key}", reason)
    _check_keys(ctx, raw, here, _STEP_KEYS | frozenset(_REFUSED_STEP_KEYS), _IGNORED_STEP_KEYS)
    label = raw.get("label", name)
    if not isinstance(label, str) or not label.strip():
        raise ctx.error(f"{here}.label", f"label must be a non-empty string, not {label!r}")
    mode = raw.get("mode", ONE_FOR_ONE)
    if mode in UNSUPPORTED_MODES:
        raise ctx.error(f"{here}.mode", f"mode {mode!r} is not supported (supported: {', '.join(MODES)})")
    if mode not in MODES:
        raise ctx.error(f"{here}.mode", f"unknown mode {mode!r} (allowed: {', '.join(MODES)})")
    parent_ids = _int_list(ctx, raw.get("parent_ids", []), f"{here}.parent_ids")
    # Decision — gating (docs/architecture.md): absent means "wait for the parents"; [] means "start at once".
    if raw.get("required_to_start") is None:
        required_to_start = parent_ids
    else:
        required_to_start = _int_list(ctx, raw["required_to_start"], f"{here}.required_to_start")
    max_retries = raw.get("max_retries", 0)
    if not _is_int(max_retries) or max_retries < 0:
        raise ctx.error(f"{here}.max_retries", f"must be an integer >= 0, not {max_retries!r}")
    retry_delay = raw.get("retry_delay", 0.0)
    if not _is_number(retry_delay) or retry_delay < 0:
        raise ctx.error(f"{here}.retry_delay", f"must be a number of seconds >= 0, not {retry_delay!r}")
    timeout = raw.get("timeout")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise ctx.error(f"{here}.timeout", f"must be a number of seconds > 0 (or absent), not {timeout!r}")
    return StepDefinition(
        id=step_id, name=name, label=label, parent_ids=parent_ids, required_to_start=required_to_start,
        mode=mode, parameters=_parse_parameters(ctx, raw.get("parameters"), f"{here}.parameters"),
        max_retries=max_retries, retry_delay=float(retry_delay),
        timeout=float(timeout) if timeout is not None else None,
    )


def _find_cycle(steps: tuple[StepDefinition, ...]) -> list[int] | None:
    """A cycle through parent_ids / required_to_start edges, as step ids (first repeated at the end)."""
    depends = {step.id: sorted(set(step.parent_ids) | set(step.required_to_start)) for step in steps}
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    path: list[int] = []

    def visit(step_id: int) -> list[int] | None:
        state[step_id] = 1
        path.append(step_id)
        for parent in depends[step_id]:
            if state.get(parent) == 1:
                return path[path.index(parent):] + [parent]
            if parent not in state:
                found = visit(parent)
                if found:
                    return found
        path.pop()
        state[step_id] = 2
        return None

    for step in steps:
        if step.id not in state:
            found = visit(step.id)
            if found:
                return found
    return None


def _check_steps(ctx: _Context, steps: tuple[StepDefinition, ...]) -> None:
    ids: dict[int, int] = {}
    for index, step in enumerate(steps):
        if step.id in ids:
            raise ctx.error(f"steps[{index}].id", f"duplicate step id {step.id} (also steps[{ids[step.id]}])")
        ids[step.id] = index
    for index, step in enumerate(steps):
        for key in ("parent_ids", "required_to_start"):
            for other in getattr(step, key):
                if other not in ids:
                    raise ctx.error(f"steps[{index}].{key}", f"step {other} does not exist "
                                                             f"(steps: {', '.join(map(str, ids))})")
    cycle = _find_cycle(steps)
    if cycle:
        # Edges point from a step to what it waits for: print them the way data flows.
        flow = " -> ".join(str(step_id) for step_id in reversed(cycle))
        raise ctx.error("steps", f"the steps form a cycle: {flow}")


def _normalise(definition: WorkflowDefinition) -> dict[str, Any]:
    """The canonical JSON of a definition: defaults made explicit, ignored fields dropped, so that
    ``definition_from_dict(raw)`` gives the same definition (without warnings) even if defaults change."""
    start_parameters = []
    for parameter in definition.start_parameters:
        item: dict[str, Any] = {"id": parameter.id, "label": parameter.label, "type": parameter.type,
                                "required": parameter.required}
        if parameter.default is not None:
            item["default"] = copy.deepcopy(parameter.default)
        if parameter.items:
            item["items"] = list(parameter.items)
        start_parameters.append(item)
    steps = []
    for step in definition.steps:
        raw_step: dict[str, Any] = {
            "id": step.id, "name": step.name, "label": step.label, "parent_ids": list(step.parent_ids),
            "required_to_start": list(step.required_to_start), "mode": step.mode,
            "parameters": copy.deepcopy(list(step.parameters)), "max_retries": step.max_retries,
            "retry_delay": step.retry_delay,
        }
        if step.timeout is not None:
            raw_step["timeout"] = step.timeout
        steps.append(raw_step)
    return {
        "identifier": definition.identifier, "label": definition.label,
        **dict(list(zip(VERSION_KEYS, (definition.version_major, definition.version_minor,
                                       definition.version_micro), strict=True))[:definition.version_parts or 3]),
        "tags": list(definition.tags),
        "start_parameters": start_parameters, "steps": steps,
    }


def _parse_workflow(raw: Any, source: str, where: str) -> WorkflowDefinition:
    ctx = _Context(source, None)
    if not isinstance(raw, dict):
        raise DefinitionError(f"a workflow must be a JSON object, not {type(raw).__name__}", source=source,
                              field_path=where or None)
    identifier = raw.get("identifier")
    ctx.workflow = identifier if isinstance(identifier, str) and identifier else (where or "workflow")
    if identifier is None:
        raise ctx.error("identifier", "identifier is required")
    if not isinstance(identifier, str) or not IDENTIFIER_PATTERN.fullmatch(identifier):
        raise ctx.error("identifier", f"identifier {identifier!r} must match ^[a-z0-9_]+$")
    eex = _find_eex(raw, "")
    if eex:
        raise ctx.error(eex, "EEx expressions ('<%') are not supported: use {name} templates")
    _check_keys(ctx, raw, "", _WORKFLOW_KEYS, _IGNORED_WORKFLOW_KEYS)
    label = _required_string(ctx, raw, "label", "")
    versions: dict[str, int] = {}
    for key, default in zip(VERSION_KEYS, (0, 0, 1), strict=True):
        versions[key] = raw.get(key, default)
        if not _is_int(versions[key]) or versions[key] < 0:
            raise ctx.error(key, f"must be an integer >= 0, not {versions[key]!r}")
    # shown as stated: a part given implies the parts before it; none given shows the whole default
    versions["version_parts"] = max((index + 1 for index, key in enumerate(VERSION_KEYS) if key in raw),
                                    default=3)
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ctx.error("tags", f"must be a list of strings, not {tags!r}")
    start_parameters = _parse_start_parameters(ctx, raw.get("start_parameters"))
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ctx.error("steps", "steps must be a non-empty list of steps")
    steps = tuple(_parse_step(ctx, step, index) for index, step in enumerate(raw_steps))
    _check_steps(ctx, steps)
    definition = WorkflowDefinition(
        identifier=identifier, label=label, tags=tuple(tags), start_parameters=start_parameters,
        steps=steps, source=source, **versions,
    )
    return replace(definition, raw=_normalise(definition))


def definition_from_dict(raw: dict[str, Any], source: str) -> WorkflowDefinition:
    """Validate one workflow's JSON object (for instance the snapshot stored with a running workflow) and
    return its `WorkflowDefinition`; raise `DefinitionError` if it is malformed."""
    return _parse_workflow(raw, source, "")


def parse_definitions(data: Any, source: str) -> list[WorkflowDefinition]:
    """Validate parsed JSON — a list of workflows, ``{"workflows": [...]}`` or one workflow object — and
    return its definitions. Raise `DefinitionError` (naming ``source``, the workflow and the field) on the
    first problem, including a workflow identifier given twice."""
    prefix = "workflows"
    if isinstance(data, dict) and "workflows" in data:
        extra = sorted(set(data) - {"workflows", "$schema", "description"})
        if extra:
            logger.warning("%s: unknown top-level fields ignored: %s", source, ", ".join(extra))
        items = data["workflows"]
        if not isinstance(items, list):
            raise DefinitionError(f"must be a list of workflows, not {type(items).__name__}", source=source,
                                  field_path="workflows")
    elif isinstance(data, dict):
        items, prefix = [data], ""
    elif isinstance(data, list):
        items = data
    else:
        raise DefinitionError(f"expected a list of workflows or a workflow object, not {type(data).__name__}",
                              source=source)
    definitions: list[WorkflowDefinition] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"{prefix}[{index}]" if prefix else ""
        definition = _parse_workflow(item, source, where)
        if definition.identifier in seen:
            raise DefinitionError(f"duplicate workflow identifier (also {prefix}[{seen[definition.identifier]}])",
                                  source=source, workflow=definition.identifier, field_path=f"{where}.identifier")
        seen[definition.identifier] = index
        definitions.append(definition)
    return definitions


def load_definitions(path: str | os.PathLike[str]) -> list[WorkflowDefinition]:
    """Read and validate a workflows.json. Any problem — missing or unreadable file, bad JSON (with its
    line and column), invalid definition — raises `DefinitionError` naming the file."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DefinitionError("file not found", source=source) from None
    except UnicodeDecodeError as error:
        raise DefinitionError(f"not UTF-8 text ({error.reason} at byte {error.start})", source=source) from None
    except OSError as error:
        raise DefinitionError(f"cannot read the file: {error.strerror or error}", source=source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DefinitionError(f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
                              source=source) from None
    return parse_definitions(data, source)


def merge_definitions(sources: list[list[WorkflowDefinition]]) -> dict[str, WorkflowDefinition]:
    """Merge definition lists by identifier, in order: a later source overrides an earlier one (the CLI
    passes plugin definitions first, then the user's file), and each override is logged."""
    merged: dict[str, WorkflowDefinition] = {}
    for definitions in sources:
        for definition in definitions:
            previous = merged.get(definition.identifier)
            if previous is not None:
                logger.info("workflow %r from %s overrides the one from %s", definition.identifier,
                            definition.source or "?", previous.source or "?")
            merged[definition.identifier] = definition
    return merged


def _number(text: Any) -> int | float:
    if _is_number(text):
        return text
    stripped = str(text).strip()
    try:
        return int(stripped)
    except ValueError:
        value = float(stripped)
        if not math.isfinite(value):
            raise
        return value


def resolve_start_parameters(definition: WorkflowDefinition, given: Mapping[str, Any]) -> dict[str, Any]:
    """The start parameter values of a workflow: ``given`` (strings from a form or ``-p key=value``) with
    defaults applied, numbers converted to int / float and choices checked against their items. An empty
    string counts as not given. Raise `StartParameterError` (naming the workflow and the parameter) for an
    unknown key, a missing required value or a bad value. Optional parameters without value are None."""
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
        if parameter.type == "number":
            try:
                value = _number(value)
            except ValueError:
                raise StartParameterError(f"{workflow}: start parameter {parameter.id!r} ({parameter.label}) "
                                          f"must be a number, not {value!r}") from None
        elif parameter.type == "choice":
            matches = [item for item in parameter.items if item == value or str(item) == str(value)]
            if not matches:
                choices = ", ".join(str(item) for item in parameter.items)
                raise StartParameterError(f"{workflow}: start parameter {parameter.id!r} ({parameter.label}) "
                                          f"must be one of {choices}, not {value!r}")
            value = matches[0]
        elif not isinstance(value, str):
            value = str(value)
        values[parameter.id] = value
    return values
