"""The main screen: header, tree, detail pane, queues panel, log panel — and the actions on the selection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Tree

from stepflow_tui.backend.views import Update, WorkerView, WorkflowView
from stepflow_tui.broker.base import QueueState
from stepflow_tui.core.definitions import WorkflowDefinition
from stepflow_tui.ops import NO_ORIGIN, redrive_summary
from stepflow_tui.tui.formatting import FINAL_JOB, FINISHED_WORKFLOW, workflow_status
from stepflow_tui.tui.keys import WORKBENCH_KEYS
from stepflow_tui.tui.screens.confirm import ConfirmScreen
from stepflow_tui.tui.screens.filter import FilterScreen
from stepflow_tui.tui.screens.help import HelpScreen
from stepflow_tui.tui.screens.start import DefinitionPicker, StartForm
from stepflow_tui.tui.screens.workers import WorkersScreen
from stepflow_tui.tui.source import UpdateRelay, WorkbenchBackend
from stepflow_tui.tui.widgets.detail import DetailPane, job_detail, step_detail, workflow_detail
from stepflow_tui.tui.widgets.footer import WorkbenchFooter
from stepflow_tui.tui.widgets.header import StatusHeader
from stepflow_tui.tui.widgets.log import LogPanel, PanelLogHandler
from stepflow_tui.tui.widgets.queues import QueuesPanel
from stepflow_tui.tui.widgets.tree import PAGER_LINES, NodeRef, TreeFilter, WorkflowTree

logger = logging.getLogger("stepflow_tui.tui")

#: Seconds between redraws of the detail pane's relative times while it shows a live item.
DETAIL_TICK = 2.0
#: How long a command may take before the operator is told it timed out (the backend keeps working on it).
COMMAND_TIMEOUT = 30.0


class MainScreen(Screen[None]):
    """Everything an operator watches, and the keys that act on the selection."""

    CSS_PATH = "main.tcss"
    BINDINGS = [Binding(key.key, key.action, key.label, tooltip=key.help) for key in WORKBENCH_KEYS]

    def __init__(self, backend: WorkbenchBackend, relay: UpdateRelay, clock: Callable[[], datetime],
                 read_only: bool) -> None:
        super().__init__()
        self.backend = backend
        self.relay = relay
        self.clock = clock
        self.read_only = read_only
        self.definitions: list[WorkflowDefinition] = []
        self._ready = False  # the first full load is shown; updates wait until then
        self._refreshing = False  # one refresh at a time, so an older read never overwrites a newer one
        self._select_when_shown: int | None = None
        self._log_handler: PanelLogHandler | None = None
        self._detail_record: dict[str, Any] | None = None  # the job record the detail pane shows, if any

    # -- layout -------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header")
        with Horizontal(id="panes"):
            yield WorkflowTree(self.backend, self.clock, id="tree")
            yield DetailPane(id="detail")
        yield QueuesPanel(id="queues")
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
        header.read_only = self.read_only
        self.tree.border_title = "Workflows"
        self.query_one(DetailPane).border_title = "Detail"
        self.query_one(QueuesPanel).border_title = "Queues"
        self.query_one(LogPanel).border_title = "Log"
        self._log_handler = PanelLogHandler(self.query_one(LogPanel))
        logging.getLogger("stepflow_tui").addHandler(self._log_handler)
        self.tree.focus()
        self.set_interval(10, self._refresh_ages)
        # the detail's "(3s ago)" of a live item follows the clock as the tree's lines do
        self.set_interval(DETAIL_TICK, self._tick_detail)
        self._initial_load()

    def on_unmount(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("stepflow_tui").removeHandler(self._log_handler)

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
        if self.tree.cursor_node is None and self.tree.root.children:
            self.tree.move_cursor(self.tree.root.children[0])
        self._ready = True
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
        records: list[dict[str, Any]] = []
        queues = workers = None
        try:
            views = {workflow_id: self.backend.workflow(workflow_id) for workflow_id in update.workflow_ids}
            # many changed jobs of one step: re-read its listed pages (one lock each) instead of job by job
            for workflow_id, step_id, offset, limit in pages:
                records += [{"id": job.id, "status": job.status, "progress": job.progress, "error": job.error}
                            for job in self.backend.jobs(workflow_id, step_id, offset=offset, limit=limit)]
            if selected_job is not None:
                job_ids = job_ids | {selected_job}  # the detail pane needs the full record
            records += [record for job_id in job_ids if (record := self.backend.job(job_id)) is not None]
            queues = self.backend.queue_states() if update.queues else None
            workers = self.backend.workers() if update.workers else None
        except Exception as error:  # show it, keep going with what was read
            logger.exception("refresh failed")
            self.app.call_from_thread(self.notify, f"cannot read the backend: {error}", severity="error")
        finally:
            self.app.call_from_thread(self._apply_refresh, views, records, queues, workers)

    def _apply_refresh(self, views: dict[int, WorkflowView | None], records: list[dict[str, Any]],
                       queues: list[QueueState] | None, workers: list[WorkerView] | None) -> None:
        try:
            tree = self.tree
            for workflow_id, view in sorted(views.items()):
                tree.apply_workflow(workflow_id, view)
            tree.apply_jobs(records)
            if queues is not None:
                self.query_one(QueuesPanel).show(queues)
            if workers is not None:
                self._show_workers(workers)
            if self._select_when_shown is not None and self._select_when_shown in views:
                tree.select_workflow(self._select_when_shown)
                self._select_when_shown = None
            self._refresh_detail(views, records)
        finally:
            self._refreshing = False
        if self.relay.pending:
            self.pump_updates()

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
                pane.show(step_detail(view, step, self._definition(view.identifier)))

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
        self.query_one(DetailPane).show(job_detail(record, self.clock()))

    def _detail_is_live(self) -> bool:
        """Whether the detail pane shows something still changing (its ages then move every second)."""
        ref = self.tree.selected_ref
        if ref is None or ref.kind in PAGER_LINES:
            return False
        if ref.kind == "job":
            record = self._detail_record
            return (record is not None and record.get("id") == ref.job_id
                    and record.get("status") not in FINAL_JOB)
        view = self.tree.views.get(ref.workflow_id)
        return view is not None and view.status not in FINISHED_WORKFLOW

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
        """Every 10 s: the tree's ages, and the detail's when it shows something finished (a live one is
        redrawn every `DETAIL_TICK`)."""
        self.tree.refresh_ages()
        if self._ready and not self._detail_is_live():
            self._redraw_detail()

    def _definition(self, identifier: str) -> WorkflowDefinition | None:
        return next((d for d in self.definitions if d.identifier == identifier), None)

    # -- commands -----------------------------------------------------------------------------------------
    @work(thread=True, group="commands", exit_on_error=False, description="run a command")
    def run_command(self, what: str, call: Callable[[], Future[Any]],
                    on_done: Callable[[Any], None] | None = None) -> None:
        """Send a command and wait for its future off the UI thread; notify when it fails."""
        logger.info("%s", what)
        try:
            result = call().result(timeout=COMMAND_TIMEOUT)
        except FutureTimeout:
            message = f"{what}: no answer from the backend after {COMMAND_TIMEOUT:.0f}s"
        except Exception as error:  # every failure becomes a notification, never a crash
            message = f"{what} failed: {error}"
        else:
            if on_done is not None:
                self.app.call_from_thread(on_done, result)
            return
        logger.error("%s", message)
        self.app.call_from_thread(self.notify, message, severity="error", timeout=8)

    def refused(self, action: str) -> bool:
        """In read-only mode: say so and return True."""
        if self.read_only:
            self.notify(f"read-only mode: {action} refused", severity="warning")
            return True
        return False

    def _selected(self, *kinds: str) -> NodeRef | None:
        ref = self.tree.selected_ref
        if ref is None or ref.kind not in kinds:
            wanted = " or ".join(kinds)
            self.notify(f"select a {wanted} first", severity="warning")
            return None
        return ref

    def _workflow_of_selection(self, action: str) -> WorkflowView | None:
        ref = self._selected("workflow", "step", "job", *PAGER_LINES)
        if ref is None:
            return None
        view = self.tree.views.get(ref.workflow_id)
        if view is None:
            self.notify(f"{action}: workflow #{ref.workflow_id} is gone", severity="warning")
        return view

    # -- actions ------------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.refused("start"):
            return
        if not self.definitions:
            self.notify("no workflow definitions are installed (see `stepflow plugins`)", severity="warning")
            return
        self.app.push_screen(DefinitionPicker(self.definitions), self._picked)

    def _picked(self, definition: WorkflowDefinition | None) -> None:
        if definition is not None:
            self.app.push_screen(StartForm(definition), lambda values: self._start(definition, values))

    def _start(self, definition: WorkflowDefinition, values: dict[str, str] | None) -> None:
        if values is None:
            return

        def started(workflow_id: int) -> None:
            self.notify(f"started workflow #{workflow_id} {definition.identifier}")
            self._select_when_shown = workflow_id
            if workflow_id in self.tree.views:
                self.tree.select_workflow(workflow_id)

        self.run_command(f"start {definition.identifier}",
                         lambda: self.backend.start_workflow(definition.identifier, values), started)

    def action_retry(self) -> None:
        if self.refused("retry"):
            return
        ref = self._selected("workflow", "step", "job")
        if ref is None:
            return
        if ref.kind == "job" and ref.job_id is not None:
            job_id = ref.job_id
            self.run_command(f"retry job #{job_id}", lambda: self.backend.retry_job(job_id),
                             lambda _: self.notify(f"job #{job_id} queued again"))
            return
        self._confirm_retry(ref)

    @work(thread=True, group="commands", exit_on_error=False, description="count failed jobs")
    def _confirm_retry(self, ref: NodeRef) -> None:
        try:
            count = self.backend.count_failed(ref.workflow_id, ref.step_id)
        except Exception as error:  # tell, do not crash
            self.app.call_from_thread(self.notify, f"cannot count failed jobs: {error}", severity="error")
            return
        self.app.call_from_thread(self._ask_retry, ref, count)

    def _ask_retry(self, ref: NodeRef, count: int) -> None:
        view = self.tree.views.get(ref.workflow_id)
        name = f"workflow #{ref.workflow_id}" + (f" {view.identifier}" if view else "")
        if ref.kind == "step" and view is not None:
            step = next((s for s in view.steps if s.id == ref.step_id), None)
            name = f"step '{step.label or step.name if step else ref.step_id}'"
        if count == 0:
            self.notify(f"no failed jobs in {name}", severity="information")
            return
        jobs = "job" if count == 1 else "jobs"

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(f"retry {count} failed {jobs} of {name}",
                                 lambda: self.backend.retry_failed(ref.workflow_id, ref.step_id),
                                 lambda n: self.notify(f"{n} {jobs} queued again"))

        detail = f"Workflow #{ref.workflow_id}. Each failed job gets a new order; its history is kept."
        self.app.push_screen(ConfirmScreen(f"Retry {count} failed {jobs} of {name}?", detail,
                                           confirm_label="Retry"), answered)

    def action_abort(self) -> None:
        if self.refused("abort"):
            return
        view = self._workflow_of_selection("abort")
        if view is None:
            return
        if view.status in FINISHED_WORKFLOW:
            self.notify(f"workflow #{view.id} has ended ({view.status}): nothing to abort", severity="warning")
            return
        workflow_id = view.id

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(f"abort workflow #{workflow_id}", lambda: self.backend.abort(workflow_id),
                                 lambda _: self.notify(f"workflow #{workflow_id} aborted"))

        left = view.total - view.done - view.counts.get("error", 0)
        self.app.push_screen(ConfirmScreen(
            f"Abort workflow #{workflow_id} {view.identifier}?",
            f"{left} unfinished jobs are stopped; nothing more is dispatched.", confirm_label="Abort",
            destructive=True), answered)

    def action_pause(self) -> None:
        if self.refused("pause/resume"):
            return
        view = self._workflow_of_selection("pause")
        if view is None:
            return
        if view.status in FINISHED_WORKFLOW:
            self.notify(f"workflow #{view.id} has ended ({view.status}): nothing to pause", severity="warning")
            return
        workflow_id = view.id
        if view.paused or workflow_status(view) == "paused":
            self.run_command(f"resume workflow #{workflow_id}", lambda: self.backend.resume(workflow_id),
                             lambda _: self.notify(f"workflow #{workflow_id} resumed"))
        else:
            self.run_command(f"pause workflow #{workflow_id}", lambda: self.backend.pause(workflow_id),
                             lambda _: self.notify(f"workflow #{workflow_id} paused: queued jobs wait"))

    def action_delete(self) -> None:
        if self.refused("delete"):
            return
        view = self._workflow_of_selection("delete")
        if view is None:
            return
        if view.status not in FINISHED_WORKFLOW:
            self.notify(f"workflow #{view.id} is {workflow_status(view)}: abort it before deleting it",
                        severity="warning")
            return
        workflow_id = view.id

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(f"delete workflow #{workflow_id}", lambda: self.backend.delete(workflow_id),
                                 lambda _: self.notify(f"workflow #{workflow_id} deleted"))

        self.app.push_screen(ConfirmScreen(
            f"Delete workflow #{workflow_id} {view.identifier} and its {view.total} jobs?",
            "Its state and history are removed; output files stay where they are.", confirm_label="Delete",
            destructive=True), answered)

    def action_cancel_job(self) -> None:
        if self.refused("cancel job"):
            return
        ref = self._selected("job")
        if ref is None or ref.job_id is None:
            return
        job_id = ref.job_id
        status = self.tree.job_status(job_id)
        if status in FINAL_JOB:
            self.notify(f"job #{job_id} has ended ({status}): nothing to cancel", severity="warning")
            return
        self.run_command(f"cancel job #{job_id}", lambda: self.backend.cancel_job(job_id),
                         lambda _: self.notify(f"job #{job_id} cancelled"))

    @on(QueuesPanel.RedriveRequested)
    def _on_redrive_requested(self, _event: QueuesPanel.RedriveRequested) -> None:
        self.action_redrive()

    def action_redrive(self) -> None:
        """Redrive the dead letters (from the queues panel's R, or the command palette)."""
        if not self.refused("redrive dead letters"):
            self._count_dead_letters()

    @work(thread=True, group="commands", exit_on_error=False, description="count dead letters")
    def _count_dead_letters(self) -> None:
        """A dry run first: the confirmation shows what is there now, per original queue."""
        try:
            counts = self.backend.redrive_dead_letters(dry_run=True).result(timeout=COMMAND_TIMEOUT)
        except Exception as error:  # tell, do not crash
            self.app.call_from_thread(self.notify, f"cannot count the dead letters: {error}", severity="error")
            return
        self.app.call_from_thread(self._ask_redrive, counts)

    def _ask_redrive(self, counts: dict[str, int]) -> None:
        total, lines = redrive_summary(counts)
        if total == 0:
            stay = counts.get(NO_ORIGIN, 0)
            self.notify("no dead letters to redrive" + (f" ({stay} without x-death stay)" if stay else ""))
            return

        def done(result: dict[str, int]) -> None:
            sent = sum(n for q, n in result.items() if q != NO_ORIGIN)
            self.notify(f"redriven {sent} dead letter(s): "
                        + ", ".join(f"{n} to {q}" for q, n in sorted(result.items()) if q != NO_ORIGIN))

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(f"redrive {total} dead letter(s)", lambda: self.backend.redrive_dead_letters(),
                                 done)

        self.app.push_screen(ConfirmScreen(
            f"Redrive {total} dead letter{'s' if total != 1 else ''} to their queues?",
            f"In job_dead_letter now, by the queue each died in:\n{lines}\n\nEach goes back to its exchange "
            "and routing key, and leaves job_dead_letter once the broker has it.", confirm_label="Redrive"),
            answered)

    def action_filter(self) -> None:
        self.app.push_screen(FilterScreen(self.tree.tree_filter), self._filtered)

    def _filtered(self, tree_filter: TreeFilter | None) -> None:
        if tree_filter is None:
            return
        self.tree.set_filter(tree_filter)
        shown = len(self.tree.root.children)
        if tree_filter.active:
            self.notify(f"filter {tree_filter.describe()}: {shown} of {len(self.tree.views)} workflows shown")

    def action_workers(self) -> None:
        self.app.push_screen(WorkersScreen(self.backend, self.clock))

    def action_toggle_log(self) -> None:
        log = self.query_one(LogPanel)
        log.display = not log.display

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.app.exit(0)
