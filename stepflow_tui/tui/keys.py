"""Every key of the workbench, with what it does: one list for the footer, the command palette and help."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WorkbenchKey:
    key: str
    action: str  # action name on the main screen (without ``action_``)
    label: str  # short, for the footer
    help: str  # one line, for the help screen and the command palette
    changes_state: bool = False  # refused in read-only mode
    in_footer: bool = True  # False: in the palette and the help only (the footer must fit 120 columns)


WORKBENCH_KEYS: tuple[WorkbenchKey, ...] = (
    WorkbenchKey("s", "start", "Start", "Start a workflow: pick a definition, fill in its parameters", True),
    WorkbenchKey("r", "retry", "Retry", "Retry the failed job, or every failed job of the step / workflow "
                 "(after a confirmation with the count)", True),
    WorkbenchKey("a", "abort", "Abort", "Abort the selected workflow (after a confirmation)", True),
    WorkbenchKey("p", "pause", "Pause", "Pause or resume dispatching the workflow's queued jobs", True),
    WorkbenchKey("d", "delete", "Delete", "Delete a finished workflow and its jobs (after a confirmation)", True),
    WorkbenchKey("x", "cancel_job", "Cancel", "Cancel the selected job (queued or processing)", True),
    WorkbenchKey("slash", "filter", "Filter", "Filter the tree by status and text; the text also finds jobs by "
                 "id or parameter value and jumps to the first"),
    WorkbenchKey("o", "order", "Order", "List the newest workflows first, or the oldest", in_footer=False),
    WorkbenchKey("e", "rerun", "Re-run", "Start the selected workflow again: the start form holds its parameters "
                 "(edit them or press enter)", True, in_footer=False),
    WorkbenchKey("E", "export", "Export", "Write the selected workflow and its jobs to workflow-<id>.json and .csv "
                 "in the current folder", in_footer=False),
    WorkbenchKey("c", "copy_id", "Copy id", "Copy the selected job's id (or workflow's) to the clipboard",
                 in_footer=False),
    WorkbenchKey("w", "workers", "Workers", "Show live and lost workers"),
    WorkbenchKey("l", "toggle_log", "Log", "Show or hide the log panel"),
    WorkbenchKey("question_mark", "help", "Help", "Keys and what each status means"),
    WorkbenchKey("q", "quit", "Quit", "Quit the workbench (the backend stops cleanly)"),
)

#: Keys of the tree itself, for the help screen.
NAVIGATION_KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓ / mouse", "move in the tree"),
    ("enter / space", "expand or collapse; on \"… load more\" list the next page of jobs"),
    ("tab", "move between the tree, the detail pane and the queues"),
    ("R / enter", "in the queues panel, on job_dead_letter: redrive the dead letters to the queues they died "
                  "in (after a confirmation with the counts); also in the command palette"),
    ("ctrl+p", "command palette: every action by name"),
    ("escape", "close a dialog or screen"),
)


def display_key(key: str) -> str:
    """``slash`` -> ``/``, for text shown to people."""
    return {"slash": "/", "question_mark": "?"}.get(key, key)
