"""Steps: parsing one step, and the checks across steps (unique ids, references, cycles, segment fan-out)."""

from __future__ import annotations

import re
from typing import Any

from stepflow_tui.core.definitions.fields import (
    Context,
    check_keys,
    int_list,
    is_int,
    is_number,
    optional_string,
    required_string,
)
from stepflow_tui.core.definitions.model import NOTIFICATION, ONE_FOR_MANY, ONE_FOR_ONE, StepDefinition
from stepflow_tui.core.definitions.parameters import parse_parameters
from stepflow_tui.core.expressions import ExpressionError, compile_expression

JOB_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
MODES = (ONE_FOR_ONE, ONE_FOR_MANY, NOTIFICATION)
#: StepFlow's sub-workflow modes: not run by this version (refused, naming the mode).
UNSUPPORTED_MODES = ("workflow_one_for_one", "workflow_one_for_many")
#: Variables a ``multiple_jobs`` step adds to each of its jobs (StepFlow's launcher).
SEGMENT_VARIABLES = ("sdk_start_index", "sdk_stop_index")

_STEP_KEYS = frozenset({"id", "name", "label", "parent_ids", "required_to_start", "mode", "parameters",
                        "max_retries", "retry_delay", "timeout", "icon", "condition", "multiple_jobs",
                        "allow_failure", "skip_destination_path", "work_dir", "description"})
_EEX_WRAPPER = re.compile(r"^\s*<%=(.*)%>\s*$", re.DOTALL)


def condition_expression(condition: str) -> str:
    """The expression of a step condition, written bare or wrapped in ``<%= … %>``."""
    wrapped = _EEX_WRAPPER.match(condition)
    return wrapped.group(1) if wrapped else condition


def _parse_condition(ctx: Context, raw: dict[str, Any], here: str) -> str | None:
    condition = optional_string(ctx, raw, "condition", here)
    if condition is None or not condition.strip():
        return None
    try:
        compile_expression(condition_expression(condition))
    except ExpressionError as error:
        raise ctx.error(f"{here}.condition", str(error)) from None
    return condition


def _parse_limits(ctx: Context, raw: dict[str, Any], here: str) -> tuple[int, float, float | None]:
    max_retries = raw.get("max_retries", 0)
    if not is_int(max_retries) or max_retries < 0:
        raise ctx.error(f"{here}.max_retries", f"must be an integer >= 0, not {max_retries!r}")
    retry_delay = raw.get("retry_delay", 0.0)
    if not is_number(retry_delay) or retry_delay < 0:
        raise ctx.error(f"{here}.retry_delay", f"must be a number of seconds >= 0, not {retry_delay!r}")
    timeout = raw.get("timeout")
    if timeout is not None and (not is_number(timeout) or timeout <= 0):
        raise ctx.error(f"{here}.timeout", f"must be a number of seconds > 0 (or absent), not {timeout!r}")
    return max_retries, float(retry_delay), float(timeout) if timeout is not None else None


def _parse_flag(ctx: Context, raw: dict[str, Any], key: str, here: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ctx.error(f"{here}.{key}", f"{key} must be true or false, not {value!r}")
    return value


def _parse_name(ctx: Context, raw: dict[str, Any], here: str) -> str:
    name = required_string(ctx, raw, "name", here).strip().removeprefix("job_")
    if not name:
        raise ctx.error(f"{here}.name", "the job type name is empty after removing its 'job_' prefix")
    if not JOB_TYPE_PATTERN.fullmatch(name):
        # The name becomes a queue name and a routing key: keep it to characters both take as they are.
        raise ctx.error(f"{here}.name", f"job type {name!r} may only hold letters, digits, '_', '-' and '.'")
    return name


def _parse_mode(ctx: Context, raw: dict[str, Any], here: str) -> str:
    mode = raw.get("mode", ONE_FOR_ONE)
    if mode in UNSUPPORTED_MODES:
        raise ctx.error(f"{here}.mode", f"mode {mode!r} (a sub-workflow) is not supported by stepflow-tui "
                                        f"(supported: {', '.join(MODES)})")
    if mode not in MODES:
        raise ctx.error(f"{here}.mode", f"unknown mode {mode!r} (allowed: {', '.join(MODES)})")
    return mode


def parse_step(ctx: Context, raw: Any, index: int) -> StepDefinition:
    """One step of ``steps``, checked on its own (references are checked by `check_steps`)."""
    here = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise ctx.error(here, f"a step must be an object, not {raw!r}")
    step_id = raw.get("id")
    if not is_int(step_id):
        raise ctx.error(f"{here}.id", f"step id must be an integer, not {step_id!r}")
    name = _parse_name(ctx, raw, here)
    check_keys(ctx, raw, here, _STEP_KEYS)
    label = raw.get("label", name)
    if not isinstance(label, str) or not label.strip():
        raise ctx.error(f"{here}.label", f"label must be a non-empty string, not {label!r}")
    mode = _parse_mode(ctx, raw, here)
    parent_ids = int_list(ctx, raw.get("parent_ids", []), f"{here}.parent_ids")
    # Decision — gating (docs/architecture.md): absent means "wait for the parents"; [] means "start at once".
    if raw.get("required_to_start") is None:
        required_to_start = parent_ids
    else:
        required_to_start = int_list(ctx, raw["required_to_start"], f"{here}.required_to_start")
    max_retries, retry_delay, timeout = _parse_limits(ctx, raw, here)
    multiple_jobs = optional_string(ctx, raw, "multiple_jobs", here) or None
    step = StepDefinition(
        id=step_id, name=name, label=label, parent_ids=parent_ids, required_to_start=required_to_start,
        mode=mode, parameters=parse_parameters(ctx, raw.get("parameters"), f"{here}.parameters"),
        max_retries=max_retries, retry_delay=retry_delay, timeout=timeout,
        icon=optional_string(ctx, raw, "icon", here), condition=_parse_condition(ctx, raw, here),
        multiple_jobs=multiple_jobs, allow_failure=_parse_flag(ctx, raw, "allow_failure", here),
        skip_destination_path=_parse_flag(ctx, raw, "skip_destination_path", here),
        work_dir=optional_string(ctx, raw, "work_dir", here),
    )
    return step


def find_cycle(steps: tuple[StepDefinition, ...]) -> list[int] | None:
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


def _segment_variables_used(step: StepDefinition) -> str | None:
    """The first segment variable a step's templates or condition read, if any."""
    texts = [step.condition or ""]
    for parameter in step.parameters:
        for key in ("value", "default"):
            item = parameter.get(key)
            texts.extend(item if isinstance(item, list) else [item])
    for text in texts:
        if isinstance(text, str):
            for name in SEGMENT_VARIABLES:
                if re.search(rf"\b{name}\b", text):
                    return name
    return None


def check_steps(ctx: Context, steps: tuple[StepDefinition, ...]) -> None:
    """Checks across steps: unique ids, existing references, no cycle, segment variables only with
    ``multiple_jobs``."""
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
        used = _segment_variables_used(step)
        if used and not step.multiple_jobs:
            raise ctx.error(f"steps[{index}]", f"{used} is only set for a step with multiple_jobs")
    cycle = find_cycle(steps)
    if cycle:
        # Edges point from a step to what it waits for: print them the way data flows.
        flow = " -> ".join(str(step_id) for step_id in reversed(cycle))
        raise ctx.error("steps", f"the steps form a cycle: {flow}")
