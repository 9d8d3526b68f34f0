"""The workflow → step → job tree: live, updated node by node, with jobs loaded lazily in pages."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime

from textual import on
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from stepflow_tui.backend import WORKFLOW_FINAL, JobView, StepView, WorkbenchBackend, WorkflowView
from stepflow_tui.tui.formatting import job_view_line, step_line, workflow_line
from stepflow_tui.tui.widgets.fast_tree import FastTree
from stepflow_tui.tui.widgets.job_pages import JobPages
from stepflow_tui.tui.widgets.tree_refs import PAGER_LINES, NodeRef, StepKey, TreeFilter

__all__ = ["NodeRef", "TreeFilter", "WorkflowTree", "PAGER_LINES"]  # NodeRef, TreeFilter: the tests' vocabulary


class WorkflowTree(JobPages, FastTree[NodeRef]):
    """Workflows, their steps and (on expand, a page at a time) their jobs.

    Updates change only the nodes concerned (`apply_workflow`, `apply_jobs`); selection and expansion stay.

    A step lists a window of at most ``MAX_LISTED`` of its jobs, a page of ``PAGE_SIZE`` at a time: loading the
    next page past that drops the first page of the window (a "load earlier" line takes it back), so the tree
    holds a bounded number of lines however far an operator pages through 100,000 jobs. Textual rebuilds its
    line index over every line after each insertion or removal, so every listed line costs on every page.
    """

    PAGE_SIZE = 200
    MAX_LISTED = 1000

    def __init__(self, backend: WorkbenchBackend, clock: Callable[[], datetime],
                 job_columns: dict[str, Callable[[JobView], str | None]] | None = None, **kwargs) -> None:
        super().__init__("workflows", **kwargs)
        #: The plugins' columns at the end of each job line (`register_job_columns`).
        self.job_columns = dict(job_columns or {})
        self.backend = backend
        self.clock = clock
        self.show_root = False
        self.guide_depth = 3
        self.tree_filter = TreeFilter()
        self.newest_first = False  # the order of the workflows (o toggles it)
        #: The last view of every workflow the backend knows (shown or filtered out).
        self.views: dict[int, WorkflowView] = {}
        self._workflow_nodes: dict[int, TreeNode[NodeRef]] = {}
        self._step_nodes: dict[StepKey, TreeNode[NodeRef]] = {}
        self._job_nodes: dict[int, TreeNode[NodeRef]] = {}
        self._more_nodes: dict[StepKey, TreeNode[NodeRef]] = {}
        self._earlier_nodes: dict[StepKey, TreeNode[NodeRef]] = {}
        #: The listed window of each expanded step: offsets (start, end) in its (filtered) job list.
        self._window: dict[StepKey, tuple[int, int]] = {}
        #: Steps with a page being read: the token of that read (a read whose token is no longer here — the
        #: tree was rebuilt, the workflow removed — is ignored when it lands).
        self._loading: dict[StepKey, int] = {}
        self._tokens = itertools.count(1)
        #: What each listed job line shows.
        self._job_shown: dict[int, JobView] = {}
        #: The job to put the cursor on once its page is listed (`jump_to_job`).
        self._reveal_when_listed: dict[StepKey, int] = {}
        #: Expanded workflows and steps, kept while a filter hides them: clearing it brings them back open.
        self._expanded_workflows: set[int] = set()
        self._expanded_steps: set[StepKey] = set()
        #: The selection before a filter was set, put back when the filter is cleared.
        self._selected_before_filter: NodeRef | None = None

    # -- what others ask ----------------------------------------------------------------------------------
    @property
    def selected_ref(self) -> NodeRef | None:
        node = self.cursor_node
        return node.data if node is not None else None

    @property
    def visible_job_ids(self) -> set[int]:
        return set(self._job_nodes)

    def job_status(self, job_id: int) -> str | None:
        """The last known status of a listed job."""
        shown = self._job_shown.get(job_id)
        return shown.status if shown is not None else None

    def plan_job_reads(self, job_ids: set[int] | frozenset[int],
                       many: int = 50) -> tuple[list[tuple[int, int, int, int]], set[int]]:
        """How to re-read changed listed jobs: ``(pages, job_ids)``. A step with more than ``many`` changed
        lines (and no status filter, which would shift its pages) is re-read by page, (workflow, step, offset,
        limit); the others job by job."""
        by_step: dict[StepKey, list[int]] = {}
        for job_id in job_ids:
            node = self._job_nodes.get(job_id)
            if node is not None and node.data is not None and node.data.step_key is not None:
                by_step.setdefault(node.data.step_key, []).append(job_id)
        pages: list[tuple[int, int, int, int]] = []
        singles: set[int] = set()
        for key, ids in by_step.items():
            if len(ids) > many and self.tree_filter.job_status is None:
                start, end = self._window.get(key, (0, 0))
                pages += [(key[0], key[1], offset, min(self.MAX_LISTED, end - offset))
                          for offset in range(start, end, self.MAX_LISTED)]
            else:
                singles.update(ids)
        return pages, singles

    def loaded_count(self, workflow_id: int, step_id: int) -> int:
        """How many job lines of a step are listed (0 when never expanded)."""
        start, end = self._window.get((workflow_id, step_id), (0, 0))
        return end - start

    def listed_window(self, workflow_id: int, step_id: int) -> tuple[int, int] | None:
        """The offsets (start, end) of a step's listed jobs; None when it was never expanded."""
        return self._window.get((workflow_id, step_id))

    def node_for(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        if ref.kind == "workflow":
            return self._workflow_nodes.get(ref.workflow_id)
        if ref.kind == "step" and ref.step_key:
            return self._step_nodes.get(ref.step_key)
        if ref.kind == "job" and ref.job_id is not None:
            return self._job_nodes.get(ref.job_id)
        if ref.kind == "more" and ref.step_key:
            return self._more_nodes.get(ref.step_key)
        if ref.kind == "earlier" and ref.step_key:
            return self._earlier_nodes.get(ref.step_key)
        return None

    def reveal(self, ref: NodeRef) -> bool:
        """Expand the ancestors of ``ref``'s node and put the cursor on it; False when it is not listed."""
        node = self.node_for(ref)
        if node is None:
            return False
        parent = node.parent
        while parent is not None and not parent.is_root:
            parent.expand()
            parent = parent.parent
        self.move_to_visible(node)
        return True

    def select_workflow(self, workflow_id: int) -> None:
        """Move the cursor to a workflow (no-op when it is not shown)."""
        node = self._workflow_nodes.get(workflow_id)
        if node is not None:
            self.move_to_visible(node)

    # -- feeding it ---------------------------------------------------------------------------------------
    def show_workflows(self, views: Iterable[WorkflowView], *, expand_running: bool = False) -> None:
        """Rebuild from a full list (first load, filter change), keeping the cursor and expanded steps."""
        selected = self.selected_ref
        expanded_workflows, expanded_steps = self._remember_expanded()
        self.clear()
        for mapping in (self._workflow_nodes, self._step_nodes, self._job_nodes, self._more_nodes,
                        self._earlier_nodes, self._window, self._job_shown):
            mapping.clear()
        self._loading.clear()
        self._reveal_when_listed.clear()
        self.views = {view.id: view for view in views}
        for view in sorted(self.views.values(), key=lambda v: v.id, reverse=self.newest_first):
            if not self.tree_filter.matches(view):
                continue
            node = self._add_workflow_node(view)
            running = expand_running and view.status not in WORKFLOW_FINAL
            if view.id in expanded_workflows or running:
                node.expand()
            for step in view.steps:
                step_node = self._step_nodes.get((view.id, step.id))
                if step_node is not None and (view.id, step.id) in expanded_steps:
                    step_node.expand()
        self._restore(selected)

    def set_order(self, newest_first: bool) -> None:
        """List the newest workflows first (or the oldest), keeping the selection and what is expanded."""
        self.newest_first = newest_first
        self.border_title = "Workflows, newest first" if newest_first else "Workflows"
        self.show_workflows(list(self.views.values()))
        if self.cursor_node is not None:
            self.move_to_visible(self.cursor_node)

    def set_filter(self, tree_filter: TreeFilter) -> None:
        """Show only the workflows ``tree_filter`` matches (job pages follow its status). Clearing it puts
        back the selection of before the filter, and what was expanded stays expanded."""
        if tree_filter.active and not self.tree_filter.active:
            self._selected_before_filter = self.selected_ref
        self.tree_filter = tree_filter
        self.show_workflows(list(self.views.values()))
        shown = len(self._workflow_nodes)
        subtitle = f"filter: {tree_filter.describe()}" + ("  — no match" if not shown else "")
        self.border_subtitle = subtitle if tree_filter.active else ""
        before = self._selected_before_filter
        if not tree_filter.active and before is not None:
            self._selected_before_filter = None
            self._restore(before)
            if before.kind == "job" and before.step_key in self._step_nodes and before.job_id is not None:
                # its step lists its first page again: the cursor goes back to the job if it is there
                self._reveal_when_listed[before.step_key] = before.job_id

    def _remember_expanded(self) -> tuple[set[int], set[StepKey]]:
        """The expanded workflows and steps: those shown as they are now, the hidden ones as they were."""
        for workflow_id, node in self._workflow_nodes.items():
            (self._expanded_workflows.add if node.is_expanded else self._expanded_workflows.discard)(workflow_id)
        for key, node in self._step_nodes.items():
            (self._expanded_steps.add if node.is_expanded else self._expanded_steps.discard)(key)
        return set(self._expanded_workflows), set(self._expanded_steps)

    def apply_workflow(self, workflow_id: int, view: WorkflowView | None) -> None:
        """A workflow changed (``view`` None: it was deleted): update its node and its steps' lines."""
        selected = self.selected_ref
        if view is None:
            self.views.pop(workflow_id, None)
            self._remove_workflow_node(workflow_id)
            self._restore(selected)
            return
        self.views[workflow_id] = view
        node = self._workflow_nodes.get(workflow_id)
        if not self.tree_filter.matches(view):
            if node is not None:
                self._remove_workflow_node(workflow_id)
                self._restore(selected)
            return
        if node is None:
            # a workflow that appears while the workbench is open (started here or elsewhere) shows its steps:
            # one that failed before it was first shown must not hide which step failed behind a ▶
            self._add_workflow_node(view).expand()
            self._restore(selected)
            return
        node.set_label(workflow_line(view, self.clock()))
        for step in view.steps:
            step_node = self._step_nodes.get((workflow_id, step.id))
            if step_node is None:
                self._add_step_node(node, view.id, step)
                continue
            step_node.set_label(step_line(step))
            step_node.allow_expand = step.job_count > 0
            self._sync_pager_lines((workflow_id, step.id))
        self._restore(selected)

    def apply_jobs(self, jobs: Iterable[JobView]) -> None:
        """Relabel listed jobs: status, progress, error, input, duration, worker.

        Only lines whose text changes are relabelled, and the tree repaints once for all of them: Textual's
        ``set_label`` queues a repaint callback per node, which for 1,000 lines cost more than the labels.
        """
        changed = False
        for job in jobs:
            node = self._job_nodes.get(job.id)
            if node is not None:
                changed |= self._show_job(node, job)
        if changed:
            self.refresh()

    def _show_job(self, node: TreeNode[NodeRef], job: JobView) -> bool:
        """Give a listed job's line this content (the caller repaints); False when it already shows it."""
        if self._job_shown.get(job.id) == job:
            return False
        self._job_shown[job.id] = job
        self.relabel_quietly(node, job_view_line(job, self.job_columns))
        return True

    def refresh_ages(self) -> None:
        """Relabel workflow lines so their age follows the clock."""
        now = self.clock()
        for workflow_id, node in self._workflow_nodes.items():
            view = self.views.get(workflow_id)
            if view is not None:
                node.set_label(workflow_line(view, now))

    # -- lazy job pages -----------------------------------------------------------------------------------
    @on(Tree.NodeExpanded)
    def _on_expanded(self, event: Tree.NodeExpanded[NodeRef]) -> None:
        ref = event.node.data
        if ref is not None and ref.kind == "step" and ref.step_key not in self._window:
            self.load_page(ref.workflow_id, ref.step_id or 0, 0)

    @on(Tree.NodeSelected)
    def _on_selected(self, event: Tree.NodeSelected[NodeRef]) -> None:
        ref = event.node.data
        if ref is not None and ref.kind in PAGER_LINES:
            self.load_page(ref.workflow_id, ref.step_id or 0, ref.offset)

    # -- nodes --------------------------------------------------------------------------------------------
    def _add_workflow_node(self, view: WorkflowView) -> TreeNode[NodeRef]:
        # keep workflows in id order: insert before the first shown workflow that comes after it
        before = next((node for wid, node in sorted(self._workflow_nodes.items(), reverse=self.newest_first)
                       if (wid < view.id if self.newest_first else wid > view.id)), None)
        node = self.root.add(workflow_line(view, self.clock()), NodeRef("workflow", view.id), before=before)
        self._workflow_nodes[view.id] = node
        for step in view.steps:
            self._add_step_node(node, view.id, step)
        return node

    def _add_step_node(self, parent: TreeNode[NodeRef], workflow_id: int, step: StepView) -> None:
        node = parent.add(step_line(step), NodeRef("step", workflow_id, step.id), allow_expand=step.job_count > 0)
        self._step_nodes[(workflow_id, step.id)] = node

    def _remove_workflow_node(self, workflow_id: int) -> None:
        node = self._workflow_nodes.pop(workflow_id, None)
        if node is None:
            return
        for key in [key for key in self._step_nodes if key[0] == workflow_id]:
            del self._step_nodes[key]
            self._more_nodes.pop(key, None)
            self._earlier_nodes.pop(key, None)
            self._window.pop(key, None)
            self._loading.pop(key, None)
        for job_id in [jid for jid, job in self._job_nodes.items() if job.data and job.data.workflow_id == workflow_id]:
            del self._job_nodes[job_id]
            self._job_shown.pop(job_id, None)
        node.remove()

    def _restore(self, selected: NodeRef | None) -> None:
        """Put the cursor back on the node it was on before lines were inserted or removed above it."""
        if selected is None:
            return
        node = self.node_for(selected)
        if node is None and selected.kind in ("job", *PAGER_LINES) and selected.step_key:
            node = step = self._step_nodes.get(selected.step_key)
            if step is not None and selected.kind in PAGER_LINES and step.children:
                # a pager line that went (nothing left to load): the line next to where it was
                node = step.children[0] if selected.kind == "earlier" else step.children[-1]
        if node is None:
            node = self._workflow_nodes.get(selected.workflow_id)
        if node is not None and node is not self.cursor_node:
            self.move_to_visible(node)
