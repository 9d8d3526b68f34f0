"""The lazy job pages of the workflow tree, as a mixin of `WorkflowTree`: a step lists a window of its jobs, read a
page at a time on a thread, with "… load more" / "… load earlier" lines at its ends."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from stepflow_tui.backend import JobView, WorkbenchBackend, WorkflowView
from stepflow_tui.tui.formatting import job_view_line
from stepflow_tui.tui.widgets.tree_refs import PAGER_LINES, NodeRef, StepKey, TreeFilter


class JobPages:
    """Listing a step's jobs page by page; `WorkflowTree` provides what is declared here."""

    PAGE_SIZE: ClassVar[int]
    MAX_LISTED: ClassVar[int]
    backend: WorkbenchBackend
    views: dict[int, WorkflowView]
    tree_filter: TreeFilter
    app: App[Any]
    notify: Callable[..., None]
    _step_nodes: dict[StepKey, TreeNode[NodeRef]]
    _job_nodes: dict[int, TreeNode[NodeRef]]
    _more_nodes: dict[StepKey, TreeNode[NodeRef]]
    _earlier_nodes: dict[StepKey, TreeNode[NodeRef]]
    _window: dict[StepKey, tuple[int, int]]
    _loading: dict[StepKey, int]
    _tokens: itertools.count[int]
    _job_shown: dict[int, JobView]
    _reveal_when_listed: dict[StepKey, int]
    job_columns: dict[str, Callable[[JobView], str | None]]

    if TYPE_CHECKING:  # provided by WorkflowTree and FastTree; a stub here would shadow FastTree's in the MRO
        @property
        def selected_ref(self) -> NodeRef | None: ...
        def move_to_visible(self, node: TreeNode[NodeRef]) -> None: ...
        def _restore(self, selected: NodeRef | None) -> None: ...
        def reveal(self, ref: NodeRef) -> bool: ...

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

    def jump_to_job(self, job: JobView) -> bool:
        """Put the cursor on a job; when it is not listed, list the page it is on first (alone, with pager
        lines both ways: a step of 100,000 jobs lists 200 at a time). False when its step is not shown, or
        when its place is unknown (no ``position``, or pages filtered by a job status shift)."""
        key = (job.workflow_id, job.step_id)
        step_node = self._step_nodes.get(key)
        if step_node is None:
            return False
        if job.id in self._job_nodes:
            return self.reveal(NodeRef("job", *key, job.id))
        self.reveal(NodeRef("step", *key))
        if job.position is None or self.tree_filter.job_status is not None:
            return False
        self._reveal_when_listed[key] = job.id
        for lines in (self._more_nodes, self._earlier_nodes):
            lines.pop(key, None)
        for child in list(step_node.children):
            self._forget_job(child)
        self._window.pop(key, None)
        self._loading.pop(key, None)  # a page still being read for the old window is dropped when it lands
        self.load_page(*key, job.position // self.PAGE_SIZE * self.PAGE_SIZE)
        step_node.expand()
        return True

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
            self._job_shown[job.id] = job
            self._job_nodes[job.id] = step_node.add_leaf(
                job_view_line(job, self.job_columns), NodeRef("job", key[0], key[1], job.id), before=index if before else None)
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
        target = self._reveal_when_listed.pop(key, None)
        if target is not None and target in self._job_nodes:
            self.move_to_visible(self._job_nodes[target])

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
