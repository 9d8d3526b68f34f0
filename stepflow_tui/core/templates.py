"""Template substitution for step parameters: ``{name}`` is replaced by a variable's value.

Substitution only, never evaluation: there is no ``str.format`` (which can reach attributes and indexes), no
``eval``, no expression syntax. ``{{`` and ``}}`` stand for literal braces; any other brace is an error, so a
typo is reported instead of being sent to a worker half-rendered.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: A variable name inside braces.
NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = re.compile(NAME_PATTERN)

#: Variables the engine computes per job (start parameters and job outputs come on top of these).
JOB_VARIABLES = (
    "workflow_id",
    "workflow_identifier",
    "workflow_reference",
    "work_directory",
    "date_time",
    "date",
    "step_id",
    "step_name",
    "job_id",
    "source_path",
    "source_paths",
    "filename",
    "extension",
    "name",
    "sdk_start_index",
    "sdk_stop_index",
)


class TemplateError(ValueError):
    """A template is malformed or names a variable that does not exist (one-line message)."""


def _tokens(template: str) -> Iterator[tuple[str, str]]:
    """Split ``template`` into ("text", literal) and ("var", name) tokens; raise TemplateError on bad braces."""
    index = 0
    text: list[str] = []
    length = len(template)
    while index < length:
        char = template[index]
        if char == "{":
            if template.startswith("{{", index):
                text.append("{")
                index += 2
                continue
            end = template.find("}", index + 1)
            name = template[index + 1 : end] if end != -1 else ""
            if end == -1 or not _NAME.fullmatch(name):
                snippet = template[index : end + 1] if end != -1 else template[index:]
                raise TemplateError(
                    f"malformed placeholder {snippet!r} in {template!r} "
                    "(use {name} with a variable name, or {{ and }} for literal braces)"
                )
            if text:
                yield "text", "".join(text)
                text = []
            yield "var", name
            index = end + 1
        elif char == "}":
            if template.startswith("}}", index):
                text.append("}")
                index += 2
                continue
            raise TemplateError(f"unmatched '}}' in {template!r} (use }}}} for a literal brace)")
        else:
            text.append(char)
            index += 1
    if text:
        yield "text", "".join(text)


def check_template(template: str) -> None:
    """Raise `TemplateError` if ``template`` is malformed (unmatched or invalid braces)."""
    for _ in _tokens(template):
        pass


def find_variables(template: str) -> list[str]:
    """The variable names used in ``template``, in order of first use, without duplicates."""
    names: list[str] = []
    for kind, value in _tokens(template):
        if kind == "var" and value not in names:
            names.append(value)
    return names


def format_value(value: Any) -> str:
    """How a variable's value appears in rendered text: strings as they are, None as "", lists, dicts and
    booleans as compact JSON (so a list of paths stays parseable), numbers through ``str``."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | list | tuple | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Substitute every ``{name}`` of ``template`` with ``variables[name]``.

    ``{{`` / ``}}`` give literal braces. An unknown name raises ``TemplateError("unknown template variable
    'x' in '...'")``; a malformed brace raises `TemplateError` too.
    """
    parts: list[str] = []
    for kind, value in _tokens(template):
        if kind == "text":
            parts.append(value)
        elif value in variables:
            parts.append(format_value(variables[value]))
        else:
            known = ", ".join(sorted(variables)) or "none"
            raise TemplateError(f"unknown template variable {value!r} in {template!r} (known: {known})")
    return "".join(parts)


def render_value(value: Any, variables: Mapping[str, Any]) -> Any:
    """Render a parameter value: a string is rendered, a list is rendered item by item (recursively),
    anything else (numbers, booleans, dicts, None) is returned unchanged."""
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, list | tuple):
        return [render_value(item, variables) for item in value]
    return value


def _file_variables(filename: str) -> dict[str, str]:
    """``filename``, its ``extension`` (with its dot, as StepFlow: ".mp4", "" if none) and ``name`` (without it)."""
    name, extension = posixpath.splitext(filename)
    return {"filename": filename, "extension": extension, "name": name}


def path_variables(source_path: str) -> dict[str, str]:
    """``filename`` (basename), ``extension`` and ``name`` of a path (a trailing "/" names its folder). POSIX
    separators: paths are the workers' paths."""
    return _file_variables(posixpath.basename(source_path.rstrip("/")) if source_path.strip("/") else "")


def input_variables(path: str) -> dict[str, str]:
    """The engine's template variables of one input path: ``source_path``, ``filename``, ``extension``,
    ``name``. A backslash counts as a separator; a path ending in "/" has an empty filename."""
    return {"source_path": path, **_file_variables(posixpath.basename(path.replace("\\", "/")))}


def render_parameters(parameters: Iterable[dict[str, Any]], variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The order's parameter list: ``template`` values rendered with their ``<%= … %>`` expressions (sent as
    ``string``), ``array_of_templates`` as ``array_of_strings``, others as given (``value``, else ``default``).
    A credential reference keeps its ``store``: the worker resolves it (the order never holds a secret)."""
    out = []
    for parameter in parameters:
        kind = parameter.get("type", "string")
        value = parameter.get("value", parameter.get("default"))
        if kind == "template" and isinstance(value, str):
            value, kind = render_with_expressions(value, variables), "string"
        elif kind == "array_of_templates" and isinstance(value, list):
            value, kind = [render_with_expressions(str(v), variables) for v in value], "array_of_strings"
        rendered = {"id": parameter["id"], "type": kind, "value": value}
        if "store" in parameter:
            rendered["store"] = parameter["store"]
        out.append(rendered)
    return out


def template_variables(
    source_path: str | None = None,
    *,
    source_paths: list[str] | None = None,
    workflow_id: int | None = None,
    workflow_identifier: str | None = None,
    step_id: int | None = None,
    step_name: str | None = None,
    job_id: int | None = None,
    start_parameters: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a job's templates see.

    Start parameter values first, then workflow variables (outputs of completed jobs) over them, then the
    per-job built-ins over both — but a built-in is only set when known (a job without an input has no
    ``source_path``, so a start parameter of that name shows through).
    """
    result: dict[str, Any] = {}
    result.update(start_parameters or {})
    result.update(variables or {})
    builtins: dict[str, Any] = {
        "workflow_id": workflow_id,
        "workflow_identifier": workflow_identifier,
        "step_id": step_id,
        "step_name": step_name,
        "job_id": job_id,
        "source_paths": list(source_paths) if source_paths is not None else None,
    }
    result.update({key: value for key, value in builtins.items() if value is not None})
    if source_path is not None:
        result["source_path"] = source_path
        result.update(path_variables(source_path))
    return result


# --- StepFlow's ``<%= … %>`` expressions inside templates ---------------------------------------------------

_EEX_TAG = re.compile(r"<%(=?)(.*?)%>", re.DOTALL)


def split_expressions(template: str) -> list[tuple[str, str]]:
    """Split ``template`` into ("text", part) and ("expression", source) pieces. Only output tags
    ``<%= … %>`` are expressions; a statement tag ``<% … %>`` or an unclosed ``<%`` raises `TemplateError`."""
    pieces: list[tuple[str, str]] = []
    position = 0
    for match in _EEX_TAG.finditer(template):
        if not match.group(1):
            raise TemplateError(f"EEx statement {match.group(0)!r} in {template!r} is not supported "
                                "(only <%= expression %>)")
        if match.start() > position:
            pieces.append(("text", template[position:match.start()]))
        pieces.append(("expression", match.group(2)))
        position = match.end()
    rest = template[position:]
    if "<%" in rest:
        raise TemplateError(f"unclosed '<%' in {template!r} (an expression is written <%= … %>)")
    if rest or not pieces:
        pieces.append(("text", rest))
    return pieces


def check_template_with_expressions(template: str) -> list[str]:
    """Check a template that may hold ``<%= … %>`` expressions: its ``{name}`` parts and every expression
    (against the safe subset of `core.expressions`). Return the variable names the expressions read; raise
    `TemplateError` naming the expression that is not supported."""
    from stepflow_tui.core.expressions import ExpressionError, compile_expression

    names: list[str] = []
    for kind, piece in split_expressions(template):
        if kind == "text":
            check_template(piece)
            continue
        try:
            names.extend(name for name in compile_expression(piece).names if name not in names)
        except ExpressionError as error:
            raise TemplateError(str(error)) from None
    return names


def render_with_expressions(template: str, variables: Mapping[str, Any]) -> str:
    """Render ``template`` as StepFlow does: ``{name}`` parts substituted, each ``<%= … %>`` evaluated by the
    safe evaluator over ``variables`` and inserted as `format_value` shows it. Errors are `TemplateError`."""
    from stepflow_tui.core.expressions import ExpressionError, compile_expression

    parts: list[str] = []
    for kind, piece in split_expressions(template):
        if kind == "text":
            parts.append(render(piece, variables))
            continue
        try:
            parts.append(format_value(compile_expression(piece).evaluate(variables)))
        except ExpressionError as error:
            raise TemplateError(str(error)) from None
    return "".join(parts)
