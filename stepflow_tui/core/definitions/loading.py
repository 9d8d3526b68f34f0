"""Loading workflow definitions: files and parsed JSON → validated `WorkflowDefinition`s.

Each workflow is parsed field by field (messages that say what to write instead), then checked against the
JSON Schema (StepFlow's rules, `schema.py`), then across steps (ids, references, cycles, `steps.py`).
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import replace
from typing import Any

from stepflow_tui.core.definitions.fields import (
    Context,
    check_keys,
    is_int,
    logger,
    optional_string,
    required_string,
)
from stepflow_tui.core.definitions.model import (
    VERSION_KEYS,
    DefinitionError,
    StartParameter,
    WorkflowDefinition,
)
from stepflow_tui.core.definitions.parameters import (
    TEMPLATE_TYPES,
    parse_parameters,
    parse_start_parameters,
)
from stepflow_tui.core.definitions.schema import check_schema
from stepflow_tui.core.definitions.steps import check_steps, parse_step

IDENTIFIER_PATTERN = re.compile(r"^[a-z0-9_]+$")
_WORKFLOW_KEYS = frozenset({"identifier", "label", "version_major", "version_minor", "version_micro", "tags",
                            "start_parameters", "steps", "schema_version", "icon", "reference", "parameters",
                            "notification_hooks", "is_live", "description", "$schema"})
# StepFlow fields that change nothing a workflow computes here: accepted and ignored, with a warning.
_IGNORED_WORKFLOW_KEYS = frozenset({"rights"})
_EEX_PLACES = re.compile(r"^(steps\[\d+\]\.)?parameters\[\d+\]\.(value|default)(\[\d+\])?$|^steps\[\d+\]\.condition$")


def _eex_allowed(raw: dict[str, Any], path: str) -> bool:
    """``<%`` is evaluated in template parameters and step conditions only."""
    if not _EEX_PLACES.match(path):
        return False
    if path.endswith(".condition"):
        return True
    owner: Any = raw
    for part in re.findall(r"(\w+)\[(\d+)\]", path.rsplit(".", 1)[0]):
        owner = owner[part[0]][int(part[1])]
    return isinstance(owner, dict) and owner.get("type") in TEMPLATE_TYPES


def _find_eex(value: Any, path: str, raw: dict[str, Any]) -> str | None:
    """The path of the first string holding ``<%`` where StepFlow does not evaluate it, if any."""
    if isinstance(value, str):
        return path if "<%" in value and not _eex_allowed(raw, path) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))
        found = _find_eex(item, here, raw)
        if found:
            return found
    return None


def _start_parameter_json(parameter: StartParameter) -> dict[str, Any]:
    item: dict[str, Any] = {"id": parameter.id, "label": parameter.label, "type": parameter.type,
                            "required": parameter.required}
    if parameter.default is not None:
        item["default"] = copy.deepcopy(parameter.default)
    if parameter.item_labels:
        item["items"] = [{"id": id_, "label": label} for id_, label in zip(parameter.items, parameter.item_labels,
                                                                           strict=True)]
    elif parameter.items:
        item["items"] = list(parameter.items)
    return item


def _normalise(definition: WorkflowDefinition) -> dict[str, Any]:
    """The canonical JSON of a definition: defaults made explicit, ignored fields dropped, so that
    ``definition_from_dict(raw)`` gives the same definition (without warnings) even if defaults change."""
    steps = []
    for step in definition.steps:
        raw_step: dict[str, Any] = {
            "id": step.id, "name": step.name, "label": step.label, "parent_ids": list(step.parent_ids),
            "required_to_start": list(step.required_to_start), "mode": step.mode,
            "parameters": copy.deepcopy(list(step.parameters)), "max_retries": step.max_retries,
            "retry_delay": step.retry_delay,
        }
        optional = {"timeout": step.timeout, "icon": step.icon, "condition": step.condition,
                    "multiple_jobs": step.multiple_jobs, "work_dir": step.work_dir,
                    "allow_failure": step.allow_failure or None,
                    "skip_destination_path": step.skip_destination_path or None}
        raw_step.update({key: value for key, value in optional.items() if value is not None})
        steps.append(raw_step)
    result: dict[str, Any] = {
        "identifier": definition.identifier, "label": definition.label,
        # the version keys the definition gave (all three when it gave none: the defaults made explicit)
        **dict(list(zip(VERSION_KEYS, (definition.version_major, definition.version_minor,
                                       definition.version_micro), strict=True))[:definition.version_parts or 3]),
        "tags": list(definition.tags),
        "start_parameters": [_start_parameter_json(parameter) for parameter in definition.start_parameters],
        "steps": steps,
    }
    optional_workflow = {"schema_version": definition.schema_version, "icon": definition.icon,
                         "reference": definition.reference,
                         "parameters": copy.deepcopy(list(definition.parameters)) or None,
                         "notification_hooks": copy.deepcopy(list(definition.notification_hooks)) or None}
    result.update({key: value for key, value in optional_workflow.items() if value is not None})
    return result


def _identify(raw: Any, source: str, where: str) -> tuple[Context, str]:
    """The context naming the workflow, and its checked identifier."""
    ctx = Context(source, None)
    if not isinstance(raw, dict):
        raise DefinitionError(f"a workflow must be a JSON object, not {type(raw).__name__}", source=source,
                              field_path=where or None)
    identifier = raw.get("identifier")
    ctx.workflow = identifier if isinstance(identifier, str) and identifier else (where or "workflow")
    if identifier is None:
        raise ctx.error("identifier", "identifier is required")
    if not isinstance(identifier, str) or not IDENTIFIER_PATTERN.fullmatch(identifier):
        raise ctx.error("identifier", f"identifier {identifier!r} must match ^[a-z0-9_]+$")
    return ctx, identifier


def _workflow_fields(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    """The workflow-level fields besides identifier, start parameters and steps."""
    label = required_string(ctx, raw, "label", "")
    versions: dict[str, int] = {}
    for key, default in zip(VERSION_KEYS, (0, 0, 1), strict=True):
        versions[key] = raw.get(key, default)
        if not is_int(versions[key]) or versions[key] < 0:
            raise ctx.error(key, f"must be an integer >= 0, not {versions[key]!r}")
    # shown as stated: a part given implies the parts before it; none given shows the whole default
    versions["version_parts"] = max((index + 1 for index, key in enumerate(VERSION_KEYS) if key in raw),
                                    default=3)
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ctx.error("tags", f"must be a list of strings, not {tags!r}")
    if raw.get("is_live") is True:
        raise ctx.error("is_live", "live workflows are not supported (is_live must be false or absent)")
    hooks = raw.get("notification_hooks") or []
    for index, hook in enumerate(hooks if isinstance(hooks, list) else []):
        if isinstance(hook, dict) and hook.get("credentials"):
            ctx.warn(f"notification_hooks[{index}].credentials", "not sent by stepflow-tui: the hook is called "
                                                                  "without them")
    return {"label": label, "tags": tuple(tags), **versions,
            "schema_version": optional_string(ctx, raw, "schema_version", ""),
            "icon": optional_string(ctx, raw, "icon", ""), "reference": optional_string(ctx, raw, "reference", ""),
            "parameters": parse_parameters(ctx, raw.get("parameters"), "parameters"),
            "notification_hooks": tuple(copy.deepcopy(hooks)) if isinstance(hooks, list) else ()}


def _parse_workflow(raw: Any, source: str, where: str) -> WorkflowDefinition:
    ctx, identifier = _identify(raw, source, where)
    eex = _find_eex(raw, "", raw)
    if eex:
        raise ctx.error(eex, "EEx expressions ('<%') are only evaluated in template parameters and step "
                             "conditions: use {name} templates here")
    check_keys(ctx, raw, "", _WORKFLOW_KEYS, _IGNORED_WORKFLOW_KEYS)
    fields = _workflow_fields(ctx, raw)
    start_parameters = parse_start_parameters(ctx, raw.get("start_parameters"))
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ctx.error("steps", "steps must be a non-empty list of steps")
    steps = tuple(parse_step(ctx, step, index) for index, step in enumerate(raw_steps))
    check_schema(raw, ctx)
    check_steps(ctx, steps)
    definition = WorkflowDefinition(identifier=identifier, start_parameters=start_parameters, steps=steps,
                                    source=source, **fields)
    return replace(definition, raw=_normalise(definition))


def definition_from_dict(raw: dict[str, Any], source: str) -> WorkflowDefinition:
    """Validate one workflow's JSON object (for instance the snapshot stored with a running workflow) and
    return its `WorkflowDefinition`; raise `DefinitionError` if it is malformed."""
    return _parse_workflow(raw, source, "")


def _workflow_items(data: Any, source: str) -> tuple[list[Any], str]:
    """The workflow objects of a file's JSON, and the prefix of their field paths."""
    if isinstance(data, dict) and "workflows" in data:
        extra = sorted(set(data) - {"workflows", "$schema", "description"})
        if extra:
            logger.warning("%s: unknown top-level fields ignored: %s", source, ", ".join(extra))
        if not isinstance(data["workflows"], list):
            raise DefinitionError(f"must be a list of workflows, not {type(data['workflows']).__name__}",
                                  source=source, field_path="workflows")
        return data["workflows"], "workflows"
    if isinstance(data, dict):
        return [data], ""
    if isinstance(data, list):
        return data, "workflows"
    raise DefinitionError(f"expected a list of workflows or a workflow object, not {type(data).__name__}",
                          source=source)


#: Deepest nesting of lists and objects a definitions file may have (StepFlow's own need a dozen).
MAX_DEPTH = 100


def nesting_depth(value: Any, limit: int) -> int:
    """How deep lists and objects nest in ``value`` (a scalar is 0), counted without recursion; stops
    counting past ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, list | dict) or depth > limit + 1:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_definitions(data: Any, source: str) -> list[WorkflowDefinition]:
    """Validate parsed JSON — a list of workflows, ``{"workflows": [...]}`` or one workflow object — and
    return its definitions. Raise `DefinitionError` (naming ``source``, the workflow and the field) on the
    first problem, including a workflow identifier given twice."""
    depth = nesting_depth(data, MAX_DEPTH)
    if depth > MAX_DEPTH:  # copies and validation recurse: refused here, by name, not by a RecursionError
        raise DefinitionError(f"nested more than {MAX_DEPTH} levels deep", source=source)
    items, prefix = _workflow_items(data, source)
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
    except (json.JSONDecodeError, RecursionError) as error:
        where = (f" at line {error.lineno}, column {error.colno}: {error.msg}"
                 if isinstance(error, json.JSONDecodeError) else ": nested too deeply")
        raise DefinitionError(f"invalid JSON{where}", source=source) from None
    except ValueError as error:  # an integer of more than 4,300 digits (Python's guard against slow parsing)
        raise DefinitionError(f"invalid JSON: {str(error).split(';')[0]}", source=source) from None
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
