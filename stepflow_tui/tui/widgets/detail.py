"""The detail pane: everything known about the selected workflow, step or job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from stepflow_tui.backend import StepStats, StepView, WorkflowDefinition, WorkflowView
from stepflow_tui.tui.formatting import (
    STATUS_ICONS,
    STATUS_STYLES,
    STEP_COUNT_KEYS,
    age,
    parse_time,
    seconds_text,
    short_duration,
    status_text,
    step_status_note,
    workflow_status,
)

TRACEBACK_LINES = 20  # the end of a traceback is where the cause is
LOG_LINES = 50  # of a job's log (the pane scrolls; the export has them all)
MAX_ITEMS = 10  # of a list value (a fan-out step's source_paths may hold 100,000 paths)
MAX_CHARS = 300  # of any one value


def short_value(value: Any) -> str:
    """A value as text, cut to a readable size: long lists show their first items and how many more."""
    if isinstance(value, (list, tuple)):
        shown = ", ".join(short_value(item) for item in value[:MAX_ITEMS])
        more = f", … ({len(value) - MAX_ITEMS:,} more)" if len(value) > MAX_ITEMS else ""
        return f"[{shown}{more}]"
    text = str(value)
    return text if len(text) <= MAX_CHARS else f"{text[:MAX_CHARS]}… ({len(text):,} characters)"


def _fields(rows: list[tuple[str, Any]]) -> Table:
    # one column of padding, not two: at 80 columns a time and its age ("06:15:11Z (23s ago)") then fit on
    # the line beside "finished" instead of wrapping onto two
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for name, value in rows:
        if value is None or value == "":
            value = Text("—", style="dim")
        grid.add_row(name, value if isinstance(value, Text) else Text(short_value(value)))
    return grid


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _parameters(parameters: list[dict[str, Any]] | dict[str, Any]) -> RenderableType:
    if not parameters:
        return Text("none", style="dim")
    if isinstance(parameters, dict):
        return _fields([(key, value) for key, value in parameters.items()])
    rows = []
    for parameter in parameters:
        value = parameter.get("value", parameter.get("default"))
        rows.append((str(parameter.get("id", "?")),
                     Text.assemble(short_value(value), (f"  ({parameter.get('type', '')})", "dim"))))
    return _fields(rows)


def _counts(counts: dict[str, int]) -> Table:
    """One line per status: ``✔ completed  61,234``."""
    rows: list[tuple[str, Any]] = [(f"{STATUS_ICONS[key]} {key}", Text(f"{counts.get(key, 0):,}",
                                                                        style=STATUS_STYLES[key]))
                                   for key in STEP_COUNT_KEYS]
    rows.append(("total", f"{counts.get('total', 0):,}"))
    return _fields(rows)


def short_time(value: str) -> str:
    """``2026-11-27T05:29:55.856568Z`` -> ``2026-11-27 05:29:55Z``: the microseconds made every time wrap in a
    narrow detail pane. A value that is not a time is shown as it is."""
    parsed = parse_time(value)
    if parsed is None:
        return value
    suffix = "Z" if parsed.utcoffset() == UTC.utcoffset(None) else parsed.strftime("%z")
    return parsed.strftime("%Y-%m-%d %H:%M:%S") + suffix


def compact_time(value: str, now: datetime) -> str:
    """``05:29:55Z`` for a time of today (UTC), else ``2026-11-26 05:29:55Z``: the date made every time
    wrap onto two lines in the detail pane at 80 columns, and today is the usual case."""
    parsed = parse_time(value)
    if parsed is None:
        return value
    if parsed.astimezone(UTC).date() == now.astimezone(UTC).date():
        return parsed.astimezone(UTC).strftime("%H:%M:%SZ")
    return short_time(value)


def _when(value: str | None, now: datetime) -> Text | None:
    if not value:
        return None
    # never wrapped: cut at the end (the age) rather than put half a time on the next line
    return Text.assemble(compact_time(value, now), (f" ({age(value, now)} ago)", "dim"), no_wrap=True,
                         overflow="ellipsis")


def workflow_detail(view: WorkflowView, now: datetime) -> RenderableType:
    """Parameters, status, counts and times of a workflow."""
    header = Text.assemble((f"Workflow #{view.id}  ", "bold"), (view.identifier, "bold cyan"))
    duration = None
    start, end = parse_time(view.created_at), parse_time(view.finished_at) or now
    if start:
        duration = short_duration((end - start).total_seconds())
    # Only the statuses some step has get a column (completed always): with all seven the counts took the
    # whole pane and Rich squeezed them to nothing beside a long step label. The label is the column that
    # shrinks (cut with "…"), never the counts.
    keys = [key for key in STEP_COUNT_KEYS
            if key == "completed" or any(step.counts.get(key, 0) for step in view.steps)]
    steps = Table(box=None, padding=(0, 1), show_edge=False)
    steps.add_column("step")
    steps.add_column("", no_wrap=True)
    for key in keys:
        steps.add_column(STATUS_ICONS[key], justify="right", style=STATUS_STYLES[key], no_wrap=True)
    steps.add_column("total", justify="right", no_wrap=True)
    for step in view.steps:
        steps.add_row(Text(f"{step.id} {step.label or step.name}", no_wrap=True, overflow="ellipsis"),
                      status_text(step.status, with_name=False),
                      *(str(step.counts.get(key, 0)) for key in (*keys, "total")))
    return Group(
        header,
        Text(view.label, style="italic"),
        _fields([
            ("status", status_text(workflow_status(view))),
            ("progress", f"{view.done}/{view.total} jobs done, {view.counts.get('error', 0)} failed"),
            ("version", f"v{view.version}"),
            ("created", _when(view.created_at, now)),
            ("updated", _when(view.updated_at, now)),
            ("finished", _when(view.finished_at, now)),
            ("duration", duration),
        ]),
        _section("Parameters"),
        _parameters(view.parameters),
        _section("Steps"),
        steps,
    )


def _durations(stats: StepStats) -> RenderableType:
    """min / median / p95 / max, throughput and the slowest jobs of a step."""
    if not stats.timed:
        return Text("no finished job yet", style="dim")
    rows: list[tuple[str, Any]] = [
        ("jobs timed", f"{stats.timed:,}"),
        ("min / median", f"{seconds_text(stats.minimum or 0)} / {seconds_text(stats.median or 0)}"),
        ("p95 / max", f"{seconds_text(stats.p95 or 0)} / {seconds_text(stats.maximum or 0)}"),
        ("throughput", f"{stats.throughput:.2f} jobs/s" if stats.throughput else None),
    ]
    slowest = Table(box=None, padding=(0, 1), show_edge=False, show_header=False)
    slowest.add_column(no_wrap=True)
    slowest.add_column(justify="right", no_wrap=True)
    slowest.add_column(no_wrap=True, overflow="ellipsis")
    for job in stats.slowest:
        slowest.add_row(f"#{job.id}", seconds_text(job.duration or 0), Text(job.input or "", style="dim"))
    return Group(_fields(rows), Text("slowest", style="bold"), slowest)


def step_detail(view: WorkflowView, step: StepView, definition: WorkflowDefinition | None,
                stats: StepStats | None = None) -> RenderableType:
    """Definition parameters, counts and (once read) the durations of a step."""
    step_definition = None
    if definition is not None:
        try:
            step_definition = definition.step(step.id)
        except KeyError:
            step_definition = None
    status = status_text(step.status)
    if note := step_status_note(step):
        status.append(f" ({note})", style="dim")
    rows: list[tuple[str, Any]] = [
        ("status", status),
        ("job type", step.name),
        ("queue", f"job_{step.name}"),
        ("jobs", step.job_count),
    ]
    if step_definition is not None:
        names = {other.id: f"{other.id} {other.label or other.name}" for other in view.steps}
        inputs = ", ".join(names.get(parent, str(parent)) for parent in step_definition.parent_ids)
        # required_to_start gates the launch on its own: "parents none" hid a step waiting for step 2
        waits = ", ".join(names.get(other, str(other)) for other in step_definition.required_to_start)
        rows += [("mode", step_definition.mode), ("inputs from", inputs or "its parameters (no parent step)"),
                 ("starts after", waits or "the workflow's start"),
                 ("max retries", step_definition.max_retries), ("timeout", step_definition.timeout)]
    return Group(
        Text.assemble((f"Step {step.id} ", "bold"), (step.label or step.name, "bold cyan"),
                      (f"  of workflow #{view.id} {view.identifier}", "dim")),
        _fields(rows),
        _section("Durations"),  # above the counts: those are on the step's line already
        _durations(stats) if stats is not None else Text("reading…", style="dim"),
        _section("Counts"),
        _counts(step.counts),
        _section("Parameters (definition)"),
        _parameters(list(step_definition.parameters) if step_definition else []),
    )


def traceback_excerpt(traceback: str) -> list[str]:
    """The last `TRACEBACK_LINES` lines of a traceback, without the ``^^^^`` marker lines: they only line
    up when nothing wraps, and in a narrow pane they wrapped into lines of carets between the code."""
    lines = [line for line in str(traceback).rstrip().splitlines()
             if line.strip() and set(line.strip()) - set("^~")]
    excerpt = lines[-TRACEBACK_LINES:]
    if len(lines) > len(excerpt):
        excerpt.insert(0, f"… {len(lines) - len(excerpt)} lines above")
    return excerpt


def _history(record: dict[str, Any], now: datetime) -> Table:
    """One line per status change: the status, when, how long after the first entry, and the note."""
    history = Table(box=None, padding=(0, 1), show_edge=False, show_header=False)
    history.add_column(no_wrap=True)
    history.add_column(style="dim", no_wrap=True)
    history.add_column(style="dim", no_wrap=True, justify="right")
    history.add_column()
    first = None
    for entry in record.get("history") or []:
        status, when = (list(entry) + ["", ""])[:2]
        note = str(entry[2]) if len(entry) > 2 else ""
        moment = parse_time(when) if isinstance(when, str) else None
        first = first or moment
        # the offset from the first entry tells how long it queued and ran without reading two clocks
        offset = f"+{short_duration((moment - first).total_seconds())}" if moment and first else ""
        history.add_row(status_text(status), compact_time(when, now) if isinstance(when, str) else str(when),
                        offset, note)
    return history


def _job_log(lines: list[str]) -> Text:
    """The last `LOG_LINES` lines the job's implementation logged (a worker of ours sends up to 200 with the
    result; a foreign one sends none)."""
    if not lines:
        return Text("none", style="dim")
    shown = lines[-LOG_LINES:]
    text = Text(f"… {len(lines) - len(shown)} lines above\n" if len(lines) > len(shown) else "", style="dim")
    for line in shown:
        text.append(line + "\n", style="red" if " ERROR " in line or " WARNING " in line else "")
    text.rstrip()
    return text


def _rendered_by_plugin(record: dict[str, Any], renderer: Callable[[dict[str, Any]], Any]) -> RenderableType:
    """A plugin's view of the job (`register_output_renderers`); what it raises is shown instead."""
    try:
        shown = renderer(record)
    except Exception as error:  # noqa: BLE001 - a plugin's bug must not blank the detail pane
        return Text(f"the renderer of {record.get('job_type')!r} failed: {type(error).__name__}: {error}",
                    style="red")
    return shown if isinstance(shown, (str, Text)) or hasattr(shown, "__rich_console__") else Text(str(shown))


def job_detail(record: dict[str, Any], now: datetime,
               renderer: Callable[[dict[str, Any]], Any] | None = None) -> RenderableType:
    """A job: its error and traceback first (what an operator opens a failed job for), then status, worker,
    times, history, parameters, outputs and destination paths."""
    parts: list[RenderableType] = [
        Text.assemble((f"Job #{record['id']}  ", "bold"), (record.get("job_type", ""), "bold cyan"),
                      (f"  step {record.get('step_id')} of workflow #{record.get('workflow_id')}", "dim")),
    ]
    if record.get("error"):
        body: list[RenderableType] = [Text(str(record["error"]), style="bold red")]
        if record.get("traceback"):
            body.append(Text("\n".join(traceback_excerpt(record["traceback"])), style="red"))
        parts.append(Panel(Group(*body), title="Error", title_align="left", border_style="red",
                           padding=(0, 1), expand=True))
    elif record.get("traceback"):
        parts += [_section("Traceback"), Text("\n".join(traceback_excerpt(record["traceback"])), style="red")]
    duration = record.get("execution_duration")
    parts.append(_fields([
        ("status", status_text(record.get("status", "?"))),
        ("progress", f"{record.get('progress', 0)}%"),
        ("worker", record.get("worker")),
        ("duration", f"{duration:.2f}s" if isinstance(duration, (int, float)) else None),
        ("attempts", f"{record.get('attempts', 0)} (retries {record.get('retries', 0)})"),
        ("created", _when(record.get("created_at"), now)),
        ("started", _when(record.get("started_at"), now)),
        ("finished", _when(record.get("finished_at"), now)),
    ]))
    parts += [_section("History"), _history(record, now)]
    parts += [_section("Log"), _job_log(record.get("logs") or [])]
    parts += [_section("Parameters"), _parameters(record.get("parameters") or [])]
    if renderer is not None:  # a plugin shows this job type's outputs its own way, above the raw ones
        parts += [_section(f"{record.get('job_type', '')} says"), _rendered_by_plugin(record, renderer)]
    parts += [_section("Outputs"), _parameters(record.get("outputs") or [])]
    paths = record.get("destination_paths") or []
    listed = "\n".join(short_value(path) for path in paths[:MAX_ITEMS])
    if len(paths) > MAX_ITEMS:
        listed += f"\n… {len(paths) - MAX_ITEMS:,} more"
    parts += [_section("Destination paths"), Text(listed) if paths else Text("none", style="dim")]
    return Group(*parts)


class DetailPane(VerticalScroll):
    """Scrollable detail of the selection; the screen hands it a renderable."""

    #: The first thing a new user sees on an empty state: how to begin.
    WELCOME = Text("Select a workflow, step or job.\n\nNo workflows yet? Press s to start one, ? for every key.",
                   style="dim")

    def compose(self):
        yield Static(self.WELCOME, id="detail-body")

    def show(self, renderable: RenderableType) -> None:
        self.query_one("#detail-body", Static).update(renderable)
