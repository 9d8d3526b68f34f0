"""What a launched step sends: the template variables StepFlow gives a step, its condition, and the parameters
of each of its jobs (one per input, per media segment, or one for all). Pure: the caller gives the time.

StepFlow's launcher (ex_step_flow: lib/step_flow/step/launch.ex, helpers.ex) is the reference; where we
differ, docs/definitions.md says so.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stepflow_tui.core import templates
from stepflow_tui.core.definitions import StepDefinition, WorkflowDefinition
from stepflow_tui.core.definitions.steps import condition_expression
from stepflow_tui.core.expressions import ExpressionError, evaluate_condition

#: Step parameter types whose values are template variables, as StepFlow's ``intern_template_process``.
STEP_VARIABLE_TYPES = ("string", "integer", "number", "boolean")


class LaunchError(ValueError):
    """A step cannot be launched as written (a condition that is not true or false, bad segments)."""


@dataclass(frozen=True)
class JobSpec:
    """One job to create: its order's parameters, or the error that fails it at once."""

    parameters: list[dict[str, Any]]
    error: str | None = None


def dates(now: str) -> dict[str, str]:
    """StepFlow's ``date_time`` (``2026_01_31__12_05_09``) and ``date`` (``2026_01_31``) of an ISO time."""
    day, _, clock = now.partition("T")
    day = day.replace("-", "_")
    return {"date_time": f"{day}__{clock[:8].replace(':', '_')}", "date": day}


def _value(parameter: Mapping[str, Any]) -> Any:
    return parameter.get("value", parameter.get("default"))


def step_variables(definition: WorkflowDefinition, step_def: StepDefinition, *, workflow_id: int,
                   start_parameters: Mapping[str, Any], outputs: Mapping[str, Any], now: str,
                   work_directory: str = "") -> dict[str, Any]:
    """The variables every job of ``step_def`` sees, later rows winning: the workflow ``parameters``' values,
    the start parameters, the outputs of completed jobs, the built-ins (``workflow_id``, ``workflow_reference``,
    ``work_directory``: the step's ``work_dir``, else the workers' ``work_directory``; dates…), then the step's
    own plain parameters (StepFlow's order)."""
    variables: dict[str, Any] = {}
    for parameter in definition.parameters:
        if "id" in parameter and _value(parameter) is not None:
            variables[str(parameter["id"])] = _value(parameter)
    variables.update(start_parameters)
    variables.update(outputs)
    variables.update(workflow_id=workflow_id, workflow_identifier=definition.identifier,
                     workflow_reference=definition.reference or "", step_id=step_def.id,
                     step_name=step_def.name, work_directory=step_def.work_dir or work_directory, **dates(now))
    for parameter in step_def.parameters:
        if parameter.get("type") in STEP_VARIABLE_TYPES and "store" not in parameter:
            variables[str(parameter["id"])] = _value(parameter)
    return variables


def condition_holds(step_def: StepDefinition, variables: Mapping[str, Any]) -> bool:
    """Whether ``step_def`` runs: no condition, or one that gives true. Raises `LaunchError` when it gives
    anything else or cannot be evaluated (StepFlow: "bad step condition")."""
    if not step_def.condition:
        return True
    try:
        return evaluate_condition(condition_expression(step_def.condition), variables)
    except ExpressionError as error:
        raise LaunchError(f"step condition: {error}") from None


def segments_of(step_def: StepDefinition, variables: Mapping[str, Any]) -> list[tuple[int, int]] | None:
    """The media segments a ``multiple_jobs`` step fans out over, as (start, end); None when the step has no
    ``multiple_jobs`` or the parameter holds nothing yet (StepFlow then launches as usual)."""
    if not step_def.multiple_jobs:
        return None
    value = variables.get(step_def.multiple_jobs)
    if value is None:
        return None
    if not isinstance(value, list):
        raise LaunchError(f"multiple_jobs: {step_def.multiple_jobs!r} is not a list of media segments")
    found = []
    for index, segment in enumerate(value):
        start = segment.get("start") if isinstance(segment, dict) else None
        end = segment.get("end") if isinstance(segment, dict) else None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            raise LaunchError(f"multiple_jobs: {step_def.multiple_jobs}[{index}] is not "
                              f"{{\"start\": integer, \"end\": integer}}: {segment!r}")
        found.append((start, end))
    return found


def listed_paths(parameters: Sequence[dict[str, Any]], variables: Mapping[str, Any]) -> list[str] | None:
    """A root step's inputs: its ``source_paths`` parameter, each item rendered when it is an
    ``array_of_templates`` (as StepFlow's launcher); None when there is no such list (one job)."""
    for parameter in parameters:
        if parameter.get("id") == "source_paths":
            value = _value(parameter)
            if not isinstance(value, list):
                return None
            if parameter.get("type") == "array_of_templates":
                try:
                    return [templates.render_with_expressions(str(v), variables) for v in value]
                except templates.TemplateError:
                    return None  # the job renders the parameter again and fails with the reason
            return [str(v) for v in value]
    return None


def _generated_destination(step_def: StepDefinition, variables: Mapping[str, Any], workflow_id: int,
                           source_path: str) -> str | None:
    """StepFlow's generated ``destination_path`` of a job with an input: ``<work_directory>/<workflow id>/`` +
    the rendered ``destination_filename``'s base name, or the input's; none with ``skip_destination_path``."""
    if step_def.skip_destination_path:
        return None
    if any(p.get("id") == "destination_path" for p in step_def.parameters):
        return None  # the step's own destination_path is rendered with the other parameters
    filename = next((p for p in step_def.parameters if p.get("id") == "destination_filename"
                     and p.get("type") == "template"), None)
    base = f"{str(variables.get('work_directory') or '').rstrip('/')}/{workflow_id}/"
    name = templates.render_with_expressions(str(_value(filename)), variables) if filename else source_path
    return base + posixpath.basename(name.replace("\\", "/"))


def _spec(parameters: Sequence[dict[str, Any]], variables: Mapping[str, Any],
          extra: list[dict[str, Any]]) -> JobSpec:
    try:
        return JobSpec(templates.render_parameters(parameters, variables) + extra)
    except templates.TemplateError as exc:
        return JobSpec([dict(p) for p in parameters] + extra, f"template error: {exc}")


def _segment_extra(segment: tuple[int, int] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if segment is None:
        return {}, []
    start, stop = segment
    return ({"sdk_start_index": start, "sdk_stop_index": stop},
            [{"id": "sdk_start_index", "type": "integer", "value": start},
             {"id": "sdk_stop_index", "type": "integer", "value": stop}])


def one_for_one_specs(step_def: StepDefinition, parameters: Sequence[dict[str, Any]],
                      base: Mapping[str, Any], paths: list[str] | None, workflow_id: int) -> list[JobSpec]:
    """One job per input path (one job when there is none), times one per media segment when the step has
    ``multiple_jobs`` and its parameter holds segments; each with ``sdk_start_index`` / ``sdk_stop_index``."""
    segments: list[tuple[int, int] | None]
    try:
        found = segments_of(step_def, base)
    except LaunchError as error:
        return [JobSpec([dict(p) for p in parameters], str(error))]
    segments = list(found) if found is not None else [None]
    specs = []
    for segment in segments:
        segment_variables, segment_parameters = _segment_extra(segment)
        for path in (paths if paths is not None else [None]):
            variables = dict(base, **segment_variables)
            extra = list(segment_parameters)
            if path is not None:
                variables.update(templates.input_variables(path))
                extra.append({"id": "source_path", "type": "string", "value": path})
                try:
                    destination = _generated_destination(step_def, variables, workflow_id, path)
                except templates.TemplateError as exc:
                    specs.append(JobSpec([dict(p) for p in parameters] + extra, f"template error: {exc}"))
                    continue
                if destination is not None:
                    extra.append({"id": "destination_path", "type": "string", "value": destination})
            specs.append(_spec(parameters, variables, extra))
    return specs


def one_for_many_spec(step_def: StepDefinition, parameters: Sequence[dict[str, Any]],
                      base: Mapping[str, Any], paths: list[str] | None) -> JobSpec:
    """The one job of a ``one_for_many`` step, with every input as ``source_paths``."""
    variables = dict(base, source_paths=paths or [])
    if paths is None:
        return _spec(parameters, variables, [])
    own = [p for p in parameters if p.get("id") != "source_paths"]
    return _spec(own, variables, [{"id": "source_paths", "type": "array_of_strings", "value": list(paths)}])
