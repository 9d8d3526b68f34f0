"""`/` and `o` on the main screen (`MainSearch`, a mixin of it): filter the tree by status and text, where the
text also finds jobs by id or parameter value (`WorkbenchBackend.find_jobs`) and jumps to the first one found;
list the newest workflows first or the oldest."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import App

from stepflow_tui.backend import JobView, WorkbenchBackend
from stepflow_tui.tui.screens.filter import FilterScreen
from stepflow_tui.tui.widgets.tree import WorkflowTree
from stepflow_tui.tui.widgets.tree_refs import NodeRef, TreeFilter

logger = logging.getLogger("stepflow_tui.tui")

#: Jobs a search lists at most (the tree shows their workflows; the cursor goes to the first).
FOUND_JOBS = 50


class MainSearch:
    """The filter and search actions of `MainScreen`; it provides what is declared here."""

    backend: WorkbenchBackend
    app: App[Any]
    tree: WorkflowTree
    notify: Callable[..., None]
    _show_detail: Callable[[NodeRef | None], None]

    def action_order(self) -> None:
        self.tree.set_order(not self.tree.newest_first)
        self.notify("newest workflows first" if self.tree.newest_first else "oldest workflows first")

    def action_filter(self) -> None:
        self.app.push_screen(FilterScreen(self.tree.tree_filter), self._filtered)

    def _filtered(self, tree_filter: TreeFilter | None) -> None:
        if tree_filter is None:
            return
        if tree_filter.text.strip():
            self._find_jobs(tree_filter)
        else:
            self.apply_filter(tree_filter, [])

    @work(thread=True, exclusive=True, group="search", exit_on_error=False, description="find jobs")
    def _find_jobs(self, tree_filter: TreeFilter) -> None:
        try:
            jobs = self.backend.find_jobs(tree_filter.text, FOUND_JOBS)
        except Exception as error:  # the workflow filter still applies; say why jobs were not searched
            logger.warning("job search failed: %s", error)
            self.app.call_from_thread(self.notify, f"cannot search jobs: {error}", severity="warning")
            jobs = []
        self.app.call_from_thread(self.apply_filter, tree_filter, jobs)

    def apply_filter(self, tree_filter: TreeFilter, jobs: list[JobView]) -> None:
        """Show what ``tree_filter`` matches, with the workflows of ``jobs`` (found for its text); put the
        cursor on the first job found, and say what matched — or that nothing did."""
        hits = frozenset(job.workflow_id for job in jobs)
        tree_filter = dataclasses.replace(tree_filter, job_hits=hits)
        self.tree.set_filter(tree_filter)
        jumped = next((job for job in jobs if self.tree.jump_to_job(job)), None)
        self._show_detail(self.tree.selected_ref)
        if not tree_filter.active:
            return
        shown = len(self.tree.root.children)
        if not shown:
            self.notify(f"no match for {tree_filter.describe()}", severity="warning")
            return
        more = "+" if len(jobs) >= FOUND_JOBS else ""
        found = f", {len(jobs)}{more} job{'' if len(jobs) == 1 else 's'} found" if jobs else ""
        where = f"; job #{jumped.id} selected" if jumped is not None else ""
        self.notify(f"filter {tree_filter.describe()}: {shown} of {len(self.tree.views)} workflows shown"
                    f"{found}{where}")
