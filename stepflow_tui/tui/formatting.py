"""Pure helpers that turn views into the text of tree lines and detail fields (no widgets here)."""

from __future__ import annotations

from datetime import UTC, datetime

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


def job_line(job_id: int, status: str, progress: int, error: str | None = None) -> Text:
    """``#1234 ✔ 100%`` (with the first words of the error for a failed job)."""
    line = Text(f"#{job_id} ")
    line.append_text(status_text(status, with_name=False))
    line.append(f" {status} {progress}%", style=STATUS_STYLES.get(status, ""))
    if error:
        first = error.strip().splitlines()[0] if error.strip() else ""
        line.append(f"  {first[:60]}", style="dim red")
    return line


def job_view_line(job: JobView) -> Text:
    """The tree line of a `JobView`."""
    return job_line(job.id, job.status, job.progress, job.error)


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
