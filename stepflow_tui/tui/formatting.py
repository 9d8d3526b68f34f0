"""Pure helpers that turn views into the text of tree lines and detail fields (no widgets here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from rich.text import Text

from stepflow_tui.backend import WORKFLOW_FINAL, JobView, StepView, WorkflowView

#: Icon and style of every status (jobs, steps, workflows share the vocabulary).
STATUS_ICONS: dict[str, str] = {
    "pending": "◌",
    "queued": "…",
    "processing": "⟳",
    "retrying": "↻",
    "completed": "✔",
    "error": "✘",
    "skipped": "⤼",
    "stopped": "■",
    "paused": "⏸",
    "aborted": "■",
}
STATUS_STYLES: dict[str, str] = {
    "pending": "dim",
    "queued": "cyan",
    "processing": "yellow",
    "retrying": "magenta",
    "completed": "green",
    "error": "bold red",
    "skipped": "dim",
    "stopped": "red",
    "paused": "magenta",
    "aborted": "red",
}
#: What each status means, for the help screen.
STATUS_MEANINGS: tuple[tuple[str, str], ...] = (
    ("pending", "step or workflow waiting for the steps it depends on"),
    ("queued", "job order sent (or about to be), waiting for a worker"),
    ("processing", "a worker reported progress on the job"),
    ("retrying", "job failed and waits for its automatic retry"),
    ("completed", "done; outputs and destination paths recorded"),
    ("error", "failed: see the error and traceback in the detail pane, r retries"),
    ("skipped", "step had no inputs (its parents produced nothing), or its workflow was aborted before it began"),
    ("stopped", "job cancelled (x) or dropped by an abort; a workflow whose jobs ended stopped, none failed"),
    ("paused", "workflow does not dispatch its queued jobs until resumed (p)"),
    ("aborted", "workflow stopped by the operator (a); its unfinished jobs are stopped"),
)
#: The step counts shown on a step line, in order.
STEP_COUNT_KEYS: tuple[str, ...] = ("completed", "processing", "queued", "retrying", "error", "skipped", "stopped")


def status_text(status: str, *, with_name: bool = True) -> Text:
    """``✔ completed`` in the status's colour."""
    icon = STATUS_ICONS.get(status, "?")
    return Text(f"{icon} {status}" if with_name else icon, style=STATUS_STYLES.get(status, ""))


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time (``Z`` or offset) as an aware datetime, or None when missing or malformed."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def short_duration(seconds: float) -> str:
    """45s, 2m, 3h, 2d: the coarse age an operator scans for."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def age(value: str | None, now: datetime) -> str:
    """How long ago ``value`` was, or ``?`` when unknown."""
    moment = parse_time(value)
    return short_duration((now - moment).total_seconds()) if moment else "?"


def workflow_status(view: WorkflowView) -> str:
    """The status to show: ``paused`` wins while the workflow is still running."""
    if view.paused and view.status not in WORKFLOW_FINAL:
        return "paused"
    return view.status


def workflow_line(view: WorkflowView, now: datetime) -> Text:
    """``#12 checksum_folder  ✔ completed  340/340  2m`` (errors added when any)."""
    line = Text()
    line.append(f"#{view.id} ", style="bold")
    line.append(view.identifier, style="bold")
    line.append("  ")
    line.append_text(status_text(workflow_status(view)))
    line.append(f"  {view.done}/{view.total}")
    errors = view.counts.get("error", 0)
    if errors:
        line.append(f"  ✘ {errors}", style=STATUS_STYLES["error"])
    line.append(f"  {age(view.created_at, now)}", style="dim")
    return line


def counts_text(counts: dict[str, int]) -> Text:
    """``✔ 300 ⟳ 4 … 30 ✘ 6``: completed always, the other counts when non-zero."""
    text = Text()
    for key in STEP_COUNT_KEYS:
        value = counts.get(key, 0)
        if value or key == "completed":
            if text:
                text.append(" ")
            text.append(f"{STATUS_ICONS[key]} {value}", style=STATUS_STYLES[key])
    text.append(f" /{counts.get('total', 0)}", style="dim")
    return text


def step_line(step: StepView) -> Text:
    """``checksum  ⟳ processing  ✔ 300 ⟳ 4 … 30 ✘ 6 /340``."""
    line = Text()
    line.append(step.label or step.name, style="bold")
    line.append("  ")
    line.append_text(status_text(step.status))
    line.append("  ")
    line.append_text(counts_text(step.counts))
    return line


def job_line(job_id: int, status: str, progress: int, error: str | None = None, *, input_path: str | None = None,
             duration: float | None = None, worker: str | None = None) -> Text:
    """``#1234 ✔ completed 100%  img_0042.jpg  3.1s  3fa2b9c1``: what it worked on, how long it took and
    where, then the first words of the error for a failed job (the worker last: the least asked for)."""
    line = Text(f"#{job_id} ")
    line.append_text(status_text(status, with_name=False))
    line.append(f" {status} {progress}%", style=STATUS_STYLES.get(status, ""))
    if input_path:
        line.append(f"  {PurePosixPath(input_path).name[:32]}")
    if duration is not None:
        line.append(f"  {seconds_text(duration)}", style="dim")
    if error:
        first = error.strip().splitlines()[0] if error.strip() else ""
        line.append(f"  {first[:60]}", style="dim red")
    if worker:
        line.append(f"  {short_worker(worker)}", style="dim")
    return line


def seconds_text(seconds: float) -> str:
    """``0.25s``, ``3.1s``, ``2m05s``: a job's duration, finer than an age."""
    if seconds < 1:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"


def short_worker(instance_id: str) -> str:
    """A worker's instance id short enough for a tree line: the first 8 digits of a hex id (that is unique
    enough among a few workers), other ids cut at 16 characters."""
    if len(instance_id) >= 16 and all(c in "0123456789abcdef" for c in instance_id):
        return instance_id[:8]
    return instance_id if len(instance_id) <= 16 else instance_id[:15] + "…"


def job_view_line(job: JobView, columns: dict[str, Callable[[JobView], str | None]] | None = None) -> Text:
    """The tree line of a `JobView`, with the plugins' ``columns`` (`register_job_columns`) before the worker:
    the worker is the least asked for, and the first cut by a narrow pane."""
    line = job_line(job.id, job.status, job.progress, job.error, input_path=job.input, duration=job.duration)
    for name, value in (columns or {}).items():
        try:
            shown = value(job)
        except Exception as error:  # noqa: BLE001 - a plugin's bug shows on its column, never kills the tree
            shown = f"{name}: {type(error).__name__}"
        if shown:
            line.append(f"  {str(shown)[:40]}", style="cyan")
    if job.worker:
        line.append(f"  {short_worker(job.worker)}", style="dim")
    return line


def job_view_of(record: dict[str, Any]) -> JobView:
    """The `JobView` of a job's full record (``WorkbenchBackend.job``): what its tree line shows."""
    source = next((p.get("value") for p in record.get("parameters") or [] if p.get("id") == "source_path"), None)
    return JobView(id=record["id"], workflow_id=record.get("workflow_id", 0), step_id=record.get("step_id", 0),
                   job_type=record.get("job_type", ""), status=record.get("status", "?"),
                   progress=record.get("progress", 0), error=record.get("error"),
                   input=source if isinstance(source, str) else None, worker=record.get("worker"),
                   duration=record.get("execution_duration"), started_at=record.get("started_at"))


def step_status_note(step: StepView) -> str:
    """Why a step ended as it did, when its status alone misleads: a step an abort kept from starting is
    ``skipped`` like one whose parents produced nothing, and only its launch time tells them apart."""
    if step.status == "skipped":
        return "aborted before it began" if step.launched_at is None else "no inputs: its parents produced none"
    return ""


def failed_jobs_phrase(count: int, errors: int, stopped: int) -> str:
    """``3 failed jobs``, ``1 stopped job``, ``2 failed or stopped jobs``: a cancelled job is not a failure,
    and the retry confirmation should not call it one. ``errors`` and ``stopped`` come from the view's counts
    (which kinds there are); ``count`` is the backend's number."""
    noun = "job" if count == 1 else "jobs"
    if stopped and not errors:
        return f"{count} stopped {noun}"
    if stopped:
        return f"{count} failed or stopped {noun}"
    return f"{count} failed {noun}"
