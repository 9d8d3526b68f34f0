"""What the workflow tree's lines stand for (`NodeRef`) and which workflows it shows (`TreeFilter`): plain data,
no widget, shared by the tree, the main screen and the filter screen."""

from __future__ import annotations

from dataclasses import dataclass

from stepflow_tui.backend import JOB_STATUSES, WorkflowView
from stepflow_tui.tui.formatting import workflow_status

#: Every status the filter offers.
FILTER_STATUSES = ("pending", "queued", "processing", "paused", "retrying", "completed", "error", "skipped",
                   "stopped", "aborted")

#: Kinds of the lines that load a page of a step's jobs.
PAGER_LINES = ("more", "earlier")

StepKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a tree node stands for. ``kind`` is workflow, step, job, more (the "load more" line at the end of
    a step's listed jobs) or earlier (the "load earlier" line above them). ``offset`` of a more or earlier line is
    where the page it loads starts."""

    kind: str
    workflow_id: int
    step_id: int | None = None
    job_id: int | None = None
    offset: int = 0

    @property
    def step_key(self) -> StepKey | None:
        return (self.workflow_id, self.step_id) if self.step_id is not None else None


@dataclass(frozen=True, slots=True)
class TreeFilter:
    """Which workflows the tree shows: a status (of the workflow, or of any of its jobs) and a text."""

    status: str | None = None
    text: str = ""
    #: Workflows shown for the text because some of their jobs match it (`WorkbenchBackend.find_jobs`).
    job_hits: frozenset[int] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.status or self.text.strip())

    @property
    def job_status(self) -> str | None:
        """The status job pages are filtered by, when the filter's status is a job status."""
        return self.status if self.status in JOB_STATUSES else None

    def matches(self, view: WorkflowView) -> bool:
        """True when the workflow should be shown."""
        text = self.text.strip().lower()
        if text and view.id not in self.job_hits and text not in searchable_text(view):
            return False
        if not self.status:
            return True
        return self.status in (view.status, workflow_status(view)) or view.counts.get(self.status, 0) > 0

    def describe(self) -> str:
        parts = []
        if self.status:
            parts.append(f"status={self.status}")
        if self.text.strip():
            parts.append(f"text={self.text.strip()!r}")
        return " ".join(parts)


def searchable_text(view: WorkflowView) -> str:
    """What the filter's text is looked for in: ``#id``, identifier, label and the start parameters' values."""
    values = " ".join(str(value) for value in view.parameters.values())
    return f"#{view.id} {view.identifier} {view.label} {values}".lower()
