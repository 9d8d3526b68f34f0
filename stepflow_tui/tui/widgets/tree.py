"""The workflow → step → job tree: live, updated node by node, with jobs loaded lazily in pages."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.widgets import Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from stepflow_tui.backend import WORKFLOW_FINAL, JobView, StepView, WorkbenchBackend, WorkflowView
from stepflow_tui.tui.formatting import (
    job_line,
    job_view_line,
    step_line,
    workflow_line,
)
from stepflow_tui.tui.widgets.fast_tree import FastTree
from stepflow_tui.tui.widgets.tree_refs import PAGER_LINES, NodeRef, StepKey, TreeFilter

__all__ = ["NodeRef", "TreeFilter", "WorkflowTree", "PAGER_LINES"]  # NodeRef, TreeFilter: the tests' vocabulary


class WorkflowTree(FastTree[NodeRef]):
    """Workflows, their steps and (on expand, a page at a time) their jobs.

    Updates change only the nodes concerned (`apply_workflow`, `apply_jobs`); selection and expansion stay.

    A step lists a window of at most ``MAX_LISTED`` of its jobs, a page of ``PAGE_SIZE`` at a time: loading the
    next page past that drops the first page of the window (a "load earlier" line takes it back), so the tree
    holds a bounded number of lines however far an operator pages through 100,000 jobs. Textual rebuilds its
    line index over every line after each insertion or removal, so every listed line costs on every page.
    """

    PAGE_SIZE = 200
    MAX_LISTED = 1000

    def __init__(self, backend: WorkbenchBackend, clock: Callable[[], datetime], **kwargs) -> None:
        super().__init__("workflows", **kwargs)
        self.backend = backend
        self.clock = clock
        self.show_root = False
        self.guide_depth = 3
        self.tree_filter = TreeFilter()
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
        #: What each listed job line shows: (status, progress, error).
        self._job_shown: dict[int, tuple[str, int, str | None]] = {}

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
        return shown[0] if shown is not None else None

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
        expanded_workflows = {wid for wid, node in self._workflow_nodes.items() if node.is_expanded}
        expanded_steps = {key for key, node in self._step_nodes.items() if node.is_expanded}
        self.clear()
        for mapping in (self._workflow_nodes, self._step_nodes, self._job_nodes, self._more_nodes,
                        self._earlier_nodes, self._window, self._job_shown):
            mapping.clear()
        self._loading.clear()
        self.views = {view.id: view for view in views}
        for view in sorted(self.views.values(), key=lambda v: v.id):
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

    def set_filter(self, tree_filter: TreeFilter) -> None:
        """Show only the workflows ``tree_filter`` matches (job pages follow its status)."""
        self.tree_filter = tree_filter
        self.border_subtitle = f"filter: {tree_filter.describe()}" if tree_filter.active else ""
        self.show_workflows(list(self.views.values()))

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

    def apply_jobs(self, records: Iterable[dict]) -> None:
        """Relabel listed jobs from full records (``Backend.job``): status, progress, error.

        Only lines whose text changes are relabelled, and the tree repaints once for all of them: Textual's
        ``set_label`` queues a repaint callback per node, which for 1,000 lines cost more than the labels.
        """
        changed = False
        for record in records:
            job_id = record["id"]
            node = self._job_nodes.get(job_id)
            if node is not None:
                changed |= self._show_job(node, job_id, record["status"], record.get("progress", 0),
                                          record.get("error"))
        if changed:
            self.refresh()

    def _show_job(self, node: TreeNode[NodeRef], job_id: int, status: str, progress: int,
                  error: str | None) -> bool:
        """Give a listed job's line this content (the caller repaints); False when it already shows it."""
        shown = (status, progress, error)
        if self._job_shown.get(job_id) == shown:
            return False
        self._job_shown[job_id] = shown
        self.relabel_quietly(node, job_line(job_id, status, progress, error))
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

    def load_page(self, workflow_id: int, step_id: int, offset: int) -> None:
        """List the page of a step's jobs that starts at ``offset``: the next one (at the end of the listed
        window), or the one before it (read on a thread: a step may hold 100,000 jobs)."""
        key = (workflow_id, step_id)
        if key in self._loading:
            return
        window = self._window.get(key)
        limit = self.PAGE_SIZE
        earlier = window is not None and offset < window[0]
        if earlier:
            limit = window[0] - offset
        token = self._loading[key] = next(self._tokens)
        line = (self._earlier_nodes if earlier else self._more_nodes).get(key)
        if line is not None:
            line.set_label(Text("… loading", style="dim italic"))
        status = self.tree_filter.job_status
        anchors: dict[str, int] = {}
        if status is not None and window is not None:
            # Under a status filter, offsets shift as jobs change status: page from the first / last listed
            # job instead, so that no job is skipped or listed twice.
            listed = self._listed_job_ids(key)
            if listed:
                anchors = {"before": listed[0]} if earlier else {"after": listed[-1]}
        self._fetch_page(key, offset, limit, status, token, anchors)

    def _listed_job_ids(self, key: StepKey) -> list[int]:
        step_node = self._step_nodes.get(key)
        if step_node is None:
            return []
        return [child.data.job_id for child in step_node.children
                if child.data is not None and child.data.kind == "job" and child.data.job_id is not None]

    @work(thread=True, group="tree-pages", exit_on_error=False, description="list a page of jobs")
    def _fetch_page(self, key: StepKey, offset: int, limit: int, status: str | None, token: int,
                    anchors: dict[str, int]) -> None:
        try:
            jobs = self.backend.jobs(key[0], key[1], offset=offset, limit=limit, status=status, **anchors)
        except Exception as error:  # a backend error must not kill the tree: say it, allow a new try
            self.app.call_from_thread(self._page_failed, key, str(error), token)
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._add_page, key, offset, jobs, token)

    def _page_read(self, key: StepKey, token: int) -> bool:
        """Whether the read ``token`` of ``key`` is the one awaited (then it is no longer pending)."""
        if self._loading.get(key) != token:
            return False  # stale: the tree was rebuilt or the workflow removed meanwhile
        del self._loading[key]
        return True

    def _page_failed(self, key: StepKey, message: str, token: int) -> None:
        if not self._page_read(key, token):
            return
        self._sync_pager_lines(key)
        self.notify(f"cannot list jobs of step {key[1]} of workflow #{key[0]}: {message}", severity="error")

    def _add_page(self, key: StepKey, offset: int, jobs: list[JobView], token: int) -> None:
        if not self._page_read(key, token):
            return
        step_node = self._step_nodes.get(key)
        if step_node is None:  # deleted or filtered out meanwhile
            return
        selected = self.selected_ref
        window = self._window.get(key)
        before = window is not None and offset < window[0]
        added = [job for job in jobs if job.id not in self._job_nodes]
        if window is not None and not added:
            # Nothing new (under a status filter: no job with that status before / after those listed, or
            # only jobs already listed): nothing more that way; the pager line goes.
            self._window[key] = (0, window[1]) if before else (window[0], max(window[1],
                                                                             self._expected_jobs(key)))
            self._sync_pager_lines(key)
            self._restore(selected)
            return
        for lines in (self._more_nodes, self._earlier_nodes):
            line = lines.pop(key, None)
            if line is not None:
                line.remove()
        for index, job in enumerate(added):
            self._job_shown[job.id] = (job.status, job.progress, job.error)
            self._job_nodes[job.id] = step_node.add_leaf(
                job_view_line(job), NodeRef("job", key[0], key[1], job.id), before=index if before else None)
        if window is None:
            window = (offset, offset + len(jobs))
        elif before:
            window = (offset, window[1])
        else:
            window = (window[0], max(window[1], offset + len(jobs)))
        # keep at most MAX_LISTED lines: drop lines from the far end of the window (whole pages at its start)
        children = list(step_node.children)
        excess = len(children) - self.MAX_LISTED
        if excess > 0:
            drop = excess if before else min(len(children) - len(added),
                                             -(-excess // self.PAGE_SIZE) * self.PAGE_SIZE)
            for node in (children[-drop:] if before else children[:drop]):
                self._forget_job(node)
            window = (window[0], window[1] - drop) if before else (window[0] + drop, window[1])
        self._window[key] = window
        self._sync_pager_lines(key)
        if selected is not None and selected.kind in PAGER_LINES and selected.step_key == key and added:
            # the operator asked for a page: leave the cursor on the new job next to where they were
            self.move_to_visible(self._job_nodes.get(added[-1 if before else 0].id) or step_node)
        elif selected is not None and selected.kind == "job" and selected.step_key == key \
                and selected.job_id not in self._job_nodes:
            # the selected line was dropped with its page: the pager line that takes it back
            pager = (self._more_nodes if before else self._earlier_nodes).get(key)
            self.move_to_visible(pager or step_node)
        else:
            self._restore(selected)

    def _forget_job(self, node: TreeNode[NodeRef]) -> None:
        if node.data is not None and node.data.job_id is not None:
            self._job_nodes.pop(node.data.job_id, None)
            self._job_shown.pop(node.data.job_id, None)
        node.remove()

    def _expected_jobs(self, key: StepKey) -> int:
        """How many job lines the step would list in full under the current filter."""
        view = self.views.get(key[0])
        step = next((s for s in view.steps if s.id == key[1]), None) if view else None
        if step is None:
            return 0
        status = self.tree_filter.job_status
        return step.counts.get(status, 0) if status else step.job_count

    def _sync_pager_lines(self, key: StepKey) -> None:
        """Add, relabel or drop the "… load earlier" and "… load more" lines of a listed step."""
        if key not in self._window or key in self._loading:
            return
        step_node = self._step_nodes.get(key)
        if step_node is None:
            return
        start, end = self._window[key]
        expected = self._expected_jobs(key)
        left = expected - end
        more_label = Text(f"… load {min(left, self.PAGE_SIZE)} more ({left:,} left)", style="italic cyan")
        self._sync_line(self._more_nodes, key, step_node, left > 0, more_label, NodeRef("more", *key, offset=end))
        before = min(start, expected)  # under a status filter, fewer may match by now
        earlier_label = Text(f"… load {min(before, self.PAGE_SIZE)} earlier ({before:,} before)",
                             style="italic cyan")
        self._sync_line(self._earlier_nodes, key, step_node, before > 0, earlier_label,
                        NodeRef("earlier", *key, offset=max(0, start - self.PAGE_SIZE)))

    @staticmethod
    def _sync_line(lines: dict[StepKey, TreeNode[NodeRef]], key: StepKey, step_node: TreeNode[NodeRef],
                   wanted: bool, label: Text, ref: NodeRef) -> None:
        line = lines.get(key)
        if not wanted:
            if line is not None:
                del lines[key]
                line.remove()
        elif line is None:
            first = ref.kind == "earlier"
            lines[key] = step_node.add_leaf(label, ref, before=0 if first else None)
        else:
            line.data = ref
            line.set_label(label)

    # -- nodes --------------------------------------------------------------------------------------------
    def _add_workflow_node(self, view: WorkflowView) -> TreeNode[NodeRef]:
        # keep workflows in id order: insert before the first shown workflow with a larger id
        before = next((node for wid, node in sorted(self._workflow_nodes.items()) if wid > view.id), None)
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
