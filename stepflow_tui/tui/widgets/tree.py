"""The workflow → step → job tree: live, updated node by node, with jobs loaded lazily in pages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text
from textual import on, work
from textual.widgets import Tree
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from stepflow_tui.backend.views import JobView, StepView, WorkflowView
from stepflow_tui.tui.formatting import (
    FINISHED_WORKFLOW,
    job_line,
    job_view_line,
    step_line,
    workflow_line,
    workflow_status,
)
from stepflow_tui.tui.source import WorkbenchBackend

#: Job statuses (a filter on one of these also filters the job pages of a step).
JOB_STATUSES = ("queued", "processing", "retrying", "completed", "error", "skipped", "stopped")
#: Every status the filter offers.
FILTER_STATUSES = ("pending", "queued", "processing", "paused", "retrying", "completed", "error", "skipped",
                   "stopped", "aborted")

StepKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class NodeRef:
    """What a tree node stands for. ``kind`` is workflow, step, job or more (the "load more" line)."""

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
        if text and text not in f"#{view.id} {view.identifier} {view.label}".lower():
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


class WorkflowTree(Tree[NodeRef]):
    """Workflows, their steps and (on expand, a page at a time) their jobs.

    Updates change only the nodes concerned (`apply_workflow`, `apply_jobs`); selection and expansion stay.
    """

    PAGE_SIZE = 200

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
        self._loaded: dict[StepKey, int] = {}  # jobs listed so far per step (absent: never expanded)
        self._loading: set[StepKey] = set()
        self._job_status: dict[int, str] = {}

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
        return self._job_status.get(job_id)

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
                loaded = self._loaded.get(key, 0)
                pages += [(key[0], key[1], offset, min(self.PAGE_SIZE * 5, loaded - offset))
                          for offset in range(0, loaded, self.PAGE_SIZE * 5)]
            else:
                singles.update(ids)
        return pages, singles

    def loaded_count(self, workflow_id: int, step_id: int) -> int:
        """How many job lines of a step are listed (0 when never expanded)."""
        return self._loaded.get((workflow_id, step_id), 0)

    def node_for(self, ref: NodeRef) -> TreeNode[NodeRef] | None:
        if ref.kind == "workflow":
            return self._workflow_nodes.get(ref.workflow_id)
        if ref.kind == "step" and ref.step_key:
            return self._step_nodes.get(ref.step_key)
        if ref.kind == "job" and ref.job_id is not None:
            return self._job_nodes.get(ref.job_id)
        if ref.kind == "more" and ref.step_key:
            return self._more_nodes.get(ref.step_key)
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
        self._move_to(node)
        return True

    def select_workflow(self, workflow_id: int) -> None:
        """Move the cursor to a workflow (no-op when it is not shown)."""
        node = self._workflow_nodes.get(workflow_id)
        if node is not None:
            self._move_to(node)

    # -- feeding it ---------------------------------------------------------------------------------------
    def show_workflows(self, views: Iterable[WorkflowView], *, expand_running: bool = False) -> None:
        """Rebuild from a full list (first load, filter change), keeping the cursor and expanded steps."""
        selected = self.selected_ref
        expanded_workflows = {wid for wid, node in self._workflow_nodes.items() if node.is_expanded}
        expanded_steps = {key for key, node in self._step_nodes.items() if node.is_expanded}
        self.clear()
        for mapping in (self._workflow_nodes, self._step_nodes, self._job_nodes, self._more_nodes, self._loaded,
                        self._job_status):
            mapping.clear()
        self._loading.clear()
        self.views = {view.id: view for view in views}
        for view in sorted(self.views.values(), key=lambda v: v.id):
            if not self.tree_filter.matches(view):
                continue
            node = self._add_workflow_node(view)
            running = expand_running and view.status not in FINISHED_WORKFLOW
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
            self._add_workflow_node(view)
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
            self._sync_more((workflow_id, step.id))
        self._restore(selected)

    def apply_jobs(self, records: Iterable[dict]) -> None:
        """Relabel listed jobs from full records (``Backend.job``): status, progress, error."""
        for record in records:
            node = self._job_nodes.get(record["id"])
            if node is not None:
                self._job_status[record["id"]] = record["status"]
                node.set_label(job_line(record["id"], record["status"], record.get("progress", 0),
                                        record.get("error")))

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
        if ref is not None and ref.kind == "step" and ref.step_key not in self._loaded:
            self.load_page(ref.workflow_id, ref.step_id or 0, 0)

    @on(Tree.NodeSelected)
    def _on_selected(self, event: Tree.NodeSelected[NodeRef]) -> None:
        ref = event.node.data
        if ref is not None and ref.kind == "more":
            self.load_page(ref.workflow_id, ref.step_id or 0, ref.offset)

    def load_page(self, workflow_id: int, step_id: int, offset: int) -> None:
        """List the next page of a step's jobs (read on a thread: a step may hold 100,000 jobs)."""
        key = (workflow_id, step_id)
        if key in self._loading:
            return
        self._loading.add(key)
        more = self._more_nodes.get(key)
        if more is not None:
            more.set_label(Text("… loading", style="dim italic"))
        self._fetch_page(key, offset, self.tree_filter.job_status)

    @work(thread=True, group="tree-pages", exit_on_error=False, description="list a page of jobs")
    def _fetch_page(self, key: StepKey, offset: int, status: str | None) -> None:
        try:
            jobs = self.backend.jobs(key[0], key[1], offset=offset, limit=self.PAGE_SIZE, status=status)
        except Exception as error:  # a backend error must not kill the tree: say it, allow a new try
            self.app.call_from_thread(self._page_failed, key, str(error))
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._add_page, key, offset, jobs)

    def _page_failed(self, key: StepKey, message: str) -> None:
        self._loading.discard(key)
        self.notify(f"cannot list jobs of step {key[1]} of workflow #{key[0]}: {message}", severity="error")

    def _add_page(self, key: StepKey, offset: int, jobs: list[JobView]) -> None:
        self._loading.discard(key)
        step_node = self._step_nodes.get(key)
        if step_node is None:  # deleted or filtered out meanwhile
            return
        selected = self.selected_ref
        more = self._more_nodes.pop(key, None)
        if more is not None:
            more.remove()
        for job in jobs:
            self._job_status[job.id] = job.status
            if job.id not in self._job_nodes:
                self._job_nodes[job.id] = step_node.add_leaf(
                    job_view_line(job), NodeRef("job", key[0], key[1], job.id))
        self._loaded[key] = offset + len(jobs)
        self._sync_more(key)
        if selected is not None and selected.kind == "more" and selected.step_key == key:
            # the operator asked for more: leave the cursor on the first new job, not at the top
            first = self._job_nodes.get(jobs[0].id) if jobs else None
            self._move_to(first or step_node)
        else:
            self._restore(selected)

    def _expected_jobs(self, key: StepKey) -> int:
        """How many job lines the step would list in full under the current filter."""
        view = self.views.get(key[0])
        step = next((s for s in view.steps if s.id == key[1]), None) if view else None
        if step is None:
            return 0
        status = self.tree_filter.job_status
        return step.counts.get(status, 0) if status else step.job_count

    def _sync_more(self, key: StepKey) -> None:
        """Add, relabel or drop the "… load more" line of a listed step."""
        if key not in self._loaded or key in self._loading:
            return
        step_node = self._step_nodes.get(key)
        if step_node is None:
            return
        loaded = self._loaded[key]
        left = self._expected_jobs(key) - loaded
        more = self._more_nodes.get(key)
        if left <= 0:
            if more is not None:
                del self._more_nodes[key]
                more.remove()
            return
        label = Text(f"… load {min(left, self.PAGE_SIZE)} more ({left:,} left)", style="italic cyan")
        if more is None:
            self._more_nodes[key] = step_node.add_leaf(label, NodeRef("more", key[0], key[1], offset=loaded))
        else:
            more.set_label(label)

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
            self._loaded.pop(key, None)
            self._loading.discard(key)
        for job_id in [jid for jid, job in self._job_nodes.items() if job.data and job.data.workflow_id == workflow_id]:
            del self._job_nodes[job_id]
            self._job_status.pop(job_id, None)
        node.remove()

    def _restore(self, selected: NodeRef | None) -> None:
        """Put the cursor back on the node it was on before lines were inserted or removed above it."""
        if selected is None:
            return
        node = self.node_for(selected)
        if node is None and selected.kind in ("job", "more"):
            node = self._step_nodes.get(selected.step_key) if selected.step_key else None
        if node is None:
            node = self._workflow_nodes.get(selected.workflow_id)
        if node is not None and node is not self.cursor_node:
            self._move_to(node)

    def _move_to(self, node: TreeNode[NodeRef]) -> None:
        self._tree_lines  # noqa: B018 - rebuilds the line index so node._line is current before moving
        while node._line < 0 and node.parent is not None and not node.parent.is_root:
            node = node.parent  # inside a collapsed node: the nearest visible ancestor
        if node._line >= 0:
            self.move_cursor(node)
