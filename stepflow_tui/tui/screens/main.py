"""The main screen: header, tree, detail pane, queues panel, log panel; its actions are in `main_commands.py`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Tree

from stepflow_tui.backend import (
    JOB_FINAL,
    WORKFLOW_FINAL,
    JobView,
    QueueState,
    StepStats,
    Update,
    WorkbenchBackend,
    WorkerView,
    WorkflowDefinition,
    WorkflowView,
)
from stepflow_tui.tui.extensions import WorkbenchExtensions
from stepflow_tui.tui.formatting import job_view_of
from stepflow_tui.tui.keys import WORKBENCH_KEYS
from stepflow_tui.tui.screens.main_commands import MainCommands
from stepflow_tui.tui.screens.main_extras import MainExtras
from stepflow_tui.tui.screens.main_search import MainSearch
from stepflow_tui.tui.screens.workers import WorkersScreen
from stepflow_tui.tui.source import UpdateRelay
from stepflow_tui.tui.widgets.detail import DetailPane, job_detail, step_detail, workflow_detail
from stepflow_tui.tui.widgets.footer import WorkbenchFooter
from stepflow_tui.tui.widgets.header import StatusHeader
from stepflow_tui.tui.widgets.log import LogPanel, PanelLogHandler
from stepflow_tui.tui.widgets.queues import QueuesPanel
from stepflow_tui.tui.widgets.tree import WorkflowTree
from stepflow_tui.tui.widgets.tree_refs import PAGER_LINES, NodeRef

logger = logging.getLogger("stepflow_tui.tui")

#: Seconds between redraws of the detail pane's relative times while it shows a live item.
DETAIL_TICK = 2.0
#: Seconds between reads of a selected step's durations (a scan of its jobs: 100,000 of them for a big step).
STATS_EVERY = 2.0


class MainScreen(MainCommands, MainSearch, MainExtras, Screen[None]):
    """Everything an operator watches, and the keys that act on the selection (`MainCommands`)."""

    CSS_PATH = "main.tcss"
    BINDINGS = [Binding(key.key, key.action, key.label, tooltip=key.help, show=key.in_footer)
                for key in WORKBENCH_KEYS]

    def __init__(self, backend: WorkbenchBackend, relay: UpdateRelay, clock: Callable[[], datetime],
                 read_only: bool, extensions: WorkbenchExtensions | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.extensions = extensions or WorkbenchExtensions()
        self.relay = relay
        self.clock = clock
        self.read_only = read_only
        self.export_dir = Path.cwd()  # where E writes workflow-<id>.json and .csv
        self.definitions: list[WorkflowDefinition] = []
        self._start_when_ready = False
        self._ready = False  # the first full load is shown; updates wait until then
        self._refreshing = False  # one refresh at a time, so an older read never overwrites a newer one
        self._select_when_shown: int | None = None
        self._log_handler: PanelLogHandler | None = None
        self._log_level = logging.NOTSET
        self._detail_record: dict[str, Any] | None = None  # the job record the detail pane shows, if any
        self._step_stats: tuple[tuple[int, int], StepStats] | None = None  # the durations last read, of a step
        self._stats_read_at = 0.0
        self._stats_reading = False

    # -- layout -------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="panes"):
            yield WorkflowTree(self.backend, self.clock, job_columns=self.extensions.columns, id="tree")
            yield DetailPane(id="detail")
        yield QueuesPanel(lambda: self.clock().timestamp(), id="queues")
        yield LogPanel(id="log", max_lines=2000, wrap=True)
        yield WorkbenchFooter()

    @property
    def tree(self) -> WorkflowTree:
        return self.query_one(WorkflowTree)

    @property
    def header(self) -> StatusHeader:
        return self.query_one(StatusHeader)

    def on_mount(self) -> None:
        header = self.header
        header.broker = self.backend.broker_display_url
        header.connection = self.backend.connection_state
        header.reason = getattr(self.backend, "connection_reason", None) or ""
        header.read_only = self.read_only
        header.mode = getattr(self.backend, "mode", "")  # optional in the protocol: a fake need not say
        self.tree.border_title = "Workflows"
        self.query_one(DetailPane).border_title = "Detail"
        self.query_one(QueuesPanel).border_title = "Queues"
        self.query_one(LogPanel).border_title = "Log"
        self._log_handler = PanelLogHandler(self.query_one(LogPanel))
        package_logger = logging.getLogger("stepflow_tui")
        package_logger.addHandler(self._log_handler)
        # the root logger stops at warnings by default, and the panel opened empty: the actions sent and the
        # workers' start lines are info records (the terminal's handlers are set aside while the app runs)
        self._log_level = package_logger.level
        if package_logger.getEffectiveLevel() > logging.INFO:
            package_logger.setLevel(logging.INFO)
        self.tree.focus()
        self.set_interval(10, self._refresh_ages)
        # the detail's "(3s ago)" of a live item follows the clock as the tree's lines do
        self.set_interval(DETAIL_TICK, self._tick_detail)
        self._initial_load()

    def on_unmount(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("stepflow_tui").removeHandler(self._log_handler)
            logging.getLogger("stepflow_tui").setLevel(self._log_level)

    @work(thread=True, group="load", exit_on_error=False, description="first load")
    def _initial_load(self) -> None:
        try:
            data = (self.backend.definitions(), self.backend.workflows(), self.backend.queue_states(),
                    self.backend.workers())
        except Exception as error:  # keep the app up: it fills in on the next update
            self.app.call_from_thread(self.notify, f"cannot read the backend: {error}", severity="error")
            data = ([], [], [], [])
        self.app.call_from_thread(self._show_initial, *data)

    def _show_initial(self, definitions: list[WorkflowDefinition], workflows: list[WorkflowView],
                      queues: list[QueueState], workers: list[WorkerView]) -> None:
        self.definitions = definitions
        self.tree.show_workflows(workflows, expand_running=True)
        self.query_one(QueuesPanel).show(queues)
        self._show_workers(workers)
        self._show_totals()
        if self.tree.cursor_node is None and self.tree.root.children:
            self.tree.move_cursor(self.tree.root.children[0])
        self._ready = True
        if self._start_when_ready:  # `s` was pressed before the definitions were read
            self._start_when_ready = False
            self.action_start()
        self.pump_updates()

    # -- live updates -------------------------------------------------------------------------------------
    def pump_updates(self) -> None:
        """Apply what the backend announced (called on every BackendUpdated, and after each refresh)."""
        if not self._ready or self._refreshing:
            return  # the refresh in flight picks the pending update up when it ends
        update = self.relay.take()
        if update is None:
            return
        if update.connection:
            self.header.connection = update.connection
            self.header.reason = getattr(self.backend, "connection_reason", None) or ""
        for message in update.messages:
            logger.warning("%s", message)
            self.notify(message, severity="warning")
        if not (update.workflow_ids or update.job_ids or update.queues or update.workers):
            return
        self._refreshing = True
        changed = update.job_ids & self.tree.visible_job_ids
        selected = self.tree.selected_ref
        selected_job = selected.job_id if selected is not None and selected.job_id in changed else None
        self._refresh(update, *self.tree.plan_job_reads(changed), selected_job)

    @work(thread=True, group="refresh", exit_on_error=False, description="read what changed")
    def _refresh(self, update: Update, pages: list[tuple[int, int, int, int]], job_ids: set[int],
                 selected_job: int | None) -> None:
        views: dict[int, WorkflowView | None] = {}
        jobs: list[JobView] = []
        records: list[dict[str, Any]] = []
        queues = workers = None
        try:
            views = {workflow_id: self.backend.workflow(workflow_id) for workflow_id in update.workflow_ids}
            # many changed jobs of one step: re-read its listed pages (one lock each) instead of job by job
            for workflow_id, step_id, offset, limit in pages:
                jobs += self.backend.jobs(workflow_id, step_id, offset=offset, limit=limit)
            if selected_job is not None:
                job_ids = job_ids | {selected_job}  # the detail pane needs the full record
            records += [record for job_id in job_ids if (record := self.backend.job(job_id)) is not None]
            jobs += [job_view_of(record) for record in records]
            queues = self.backend.queue_states() if update.queues else None
            workers = self.backend.workers() if update.workers else None
        except Exception as error:  # show it, keep going with what was read
            logger.exception("refresh failed")
            self.app.call_from_thread(self.notify, f"cannot read the backend: {error}", severity="error")
        finally:
            self.app.call_from_thread(self._apply_refresh, views, jobs, records, queues, workers)

    def _apply_refresh(self, views: dict[int, WorkflowView | None], jobs: list[JobView],
                       records: list[dict[str, Any]], queues: list[QueueState] | None,
                       workers: list[WorkerView] | None) -> None:
        try:
            tree = self.tree
            for workflow_id, view in sorted(views.items()):
                tree.apply_workflow(workflow_id, view)
            tree.apply_jobs(jobs)
            if queues is not None:
                self.query_one(QueuesPanel).show(queues)
            if workers is not None:
                self._show_workers(workers)
            if views:
                self._show_totals()
            if self._select_when_shown is not None and self._select_when_shown in views:
                tree.select_workflow(self._select_when_shown)
                self._select_when_shown = None
            self._refresh_detail(views, records)
        finally:
            self._refreshing = False
        if self.relay.pending:
            self.pump_updates()

    def _show_totals(self) -> None:
        """The header's job totals, summed over every workflow the backend knows (filtered out or not)."""
        views = self.tree.views.values()
        self.header.totals = (sum(view.counts.get("processing", 0) for view in views),
                              sum(view.counts.get("queued", 0) + view.counts.get("retrying", 0) for view in views),
                              sum(view.counts.get("error", 0) for view in views))

    def _show_workers(self, workers: list[WorkerView]) -> None:
        self.header.live_workers = sum(not worker.lost for worker in workers)
        self.header.lost_workers = sum(worker.lost for worker in workers)
        for screen in self.app.screen_stack:
            if isinstance(screen, WorkersScreen):
                screen.show(workers)

    # -- detail -------------------------------------------------------------------------------------------
    @on(Tree.NodeHighlighted)
    def _on_highlighted(self, event: Tree.NodeHighlighted[NodeRef]) -> None:
        self._show_detail(event.node.data)

    def _show_detail(self, ref: NodeRef | None) -> None:
        pane = self.query_one(DetailPane)
        if not self.tree.root.children:  # the cursor may still name a line that went
            pane.show(Text("Nothing to show: no workflow matches the filter (/ to change or clear it).",
                           style="dim") if self.tree.tree_filter.active else DetailPane.WELCOME)
            return
        if ref is None or ref.kind in PAGER_LINES:
            return
        self._detail_record = None
        view = self.tree.views.get(ref.workflow_id)
        if ref.kind == "job" and ref.job_id is not None:
            self._load_job_detail(ref.job_id)
        elif view is not None and ref.kind == "workflow":
            pane.show(workflow_detail(view, self.clock()))
        elif view is not None and ref.kind == "step":
            step = next((s for s in view.steps if s.id == ref.step_id), None)
            if step is not None:
                key = (view.id, step.id)
                stats = self._step_stats[1] if self._step_stats and self._step_stats[0] == key else None
                pane.show(step_detail(view, step, self._definition(view.identifier), stats))
                due = stats is None or time.monotonic() - self._stats_read_at > STATS_EVERY
                if due and not self._stats_reading:  # one read at a time: a newer one waits for the next redraw
                    self._stats_read_at = time.monotonic()
                    self._stats_reading = True
                    self._load_step_stats(key)

    @work(thread=True, group="stats", exit_on_error=False, description="read step durations")
    def _load_step_stats(self, key: tuple[int, int]) -> None:
        stats = None
        try:
            stats = self.backend.step_stats(*key)
        except Exception as error:  # the rest of the detail stands; say why the durations are missing
            logger.warning("cannot read the durations of step %s of workflow #%s: %s", key[1], key[0], error)
        self.app.call_from_thread(self._show_step_stats, key, stats)

    def _show_step_stats(self, key: tuple[int, int], stats: StepStats | None) -> None:
        self._stats_reading = False
        if stats is None:
            return
        self._step_stats = (key, stats)
        ref = self.tree.selected_ref
        if ref is not None and ref.kind == "step":  # the one read, or another selected meanwhile: read that one
            self._show_detail(ref)

    def _refresh_detail(self, views: dict[int, WorkflowView | None], records: list[dict[str, Any]]) -> None:
        ref = self.tree.selected_ref
        if ref is None:
            return
        if ref.kind == "job":
            record = next((r for r in records if r["id"] == ref.job_id), None)
            if record is not None:
                self._show_job(record)
        elif ref.workflow_id in views:
            self._show_detail(ref)

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False, description="read a job")
    def _load_job_detail(self, job_id: int) -> None:
        try:
            record = self.backend.job(job_id)
        except Exception as error:  # say why the pane stays empty
            self.app.call_from_thread(self.notify, f"cannot read job #{job_id}: {error}", severity="error")
            return
        if record is not None:
            self.app.call_from_thread(self._show_job_record, record)

    def _show_job_record(self, record: dict[str, Any]) -> None:
        ref = self.tree.selected_ref
        if ref is not None and ref.kind == "job" and ref.job_id == record["id"]:  # still the one selected
            self._show_job(record)

    def _show_job(self, record: dict[str, Any]) -> None:
        self._detail_record = record
        renderer = self.extensions.renderers.get(record.get("job_type", ""))
        self.query_one(DetailPane).show(job_detail(record, self.clock(), renderer))

    def _detail_is_live(self) -> bool:
        """Whether the detail pane shows something still changing (its ages then move every second)."""
        ref = self.tree.selected_ref
        if ref is None or ref.kind in PAGER_LINES:
            return False
        if ref.kind == "job":
            record = self._detail_record
            return (record is not None and record.get("id") == ref.job_id
                    and record.get("status") not in JOB_FINAL)
        view = self.tree.views.get(ref.workflow_id)
        return view is not None and view.status not in WORKFLOW_FINAL

    def _redraw_detail(self) -> None:
        """Draw the detail of the selection again with the clock's time, from what is already read."""
        ref = self.tree.selected_ref
        if ref is None:
            return
        if ref.kind == "job":
            if self._detail_record is not None and self._detail_record.get("id") == ref.job_id:
                self._show_job(self._detail_record)
        else:
            self._show_detail(ref)

    def _tick_detail(self) -> None:
        if self._ready and self._detail_is_live():
            self._redraw_detail()

    def _refresh_ages(self) -> None:
        """Every 10 s: the tree's ages, the queues' rates, and the detail's when it shows something finished (a live one is
        redrawn every `DETAIL_TICK`)."""
        self.tree.refresh_ages()
        self.query_one(QueuesPanel).tick()
        if self._ready and not self._detail_is_live():
            self._redraw_detail()

    @on(QueuesPanel.RedriveRequested)
    def _on_redrive_requested(self, _event: QueuesPanel.RedriveRequested) -> None:
        self.action_redrive()

    def _definition(self, identifier: str) -> WorkflowDefinition | None:
        return next((d for d in self.definitions if d.identifier == identifier), None)
