"""The main screen's commands: the actions on the selection (start, retry, abort, pause, delete, cancel, redrive)
and the screens they open, as a mixin of `MainScreen`. Commands go to the backend off the UI thread
(`run_command`); every failure becomes a notification."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from typing import Any

from textual import work
from textual.app import App

from stepflow_tui.backend import (
    JOB_DEAD_LETTER,
    JOB_FINAL,
    NO_ORIGIN,
    WORKFLOW_FINAL,
    WorkbenchBackend,
    WorkflowDefinition,
    WorkflowView,
    redrive_summary,
)
from stepflow_tui.tui.formatting import failed_jobs_phrase, workflow_status
from stepflow_tui.tui.screens.confirm import ConfirmScreen
from stepflow_tui.tui.screens.help import HelpScreen
from stepflow_tui.tui.screens.start import DefinitionPicker, StartForm
from stepflow_tui.tui.screens.workers import WorkersScreen
from stepflow_tui.tui.widgets.log import LogPanel
from stepflow_tui.tui.widgets.tree import WorkflowTree
from stepflow_tui.tui.widgets.tree_refs import PAGER_LINES, NodeRef

logger = logging.getLogger("stepflow_tui.tui")

#: How long a command may take before the operator is told it timed out (the backend keeps working on it).
COMMAND_TIMEOUT = 30.0


class MainCommands:
    """The actions of `MainScreen` (its ``BINDINGS`` name them); it provides what is declared here."""

    backend: WorkbenchBackend
    clock: Callable[[], datetime]
    read_only: bool
    definitions: list[WorkflowDefinition]
    _select_when_shown: int | None
    _ready: bool  # the first load is shown
    _start_when_ready: bool  # `s` came before it
    app: App[Any]
    tree: WorkflowTree
    notify: Callable[..., None]
    query_one: Callable[..., Any]
    refresh: Callable[..., Any]

    # -- running them -------------------------------------------------------------------------------------
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
        if not self._ready:  # the first load (definitions included) is on its way: open the picker after it
            self._start_when_ready = True
            return
        if getattr(self.backend, "connection_state", "") == "error":
            # Its orders could not be sent: the workflow would wait for ever.
            reason = getattr(self.backend, "connection_reason", None) or "the broker refuses the connection"
            self.notify(f"cannot start a workflow: {reason}", severity="error")
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
        counts = view.counts if view is not None else {}
        if ref.kind == "step" and view is not None:
            step = next((s for s in view.steps if s.id == ref.step_id), None)
            name = f"step '{step.label or step.name if step else ref.step_id}'"
            counts = step.counts if step is not None else counts
        if count == 0:
            self.notify(f"no failed jobs in {name}", severity="information")
            return
        what = failed_jobs_phrase(count, counts.get("error", 0), counts.get("stopped", 0))
        jobs = "job" if count == 1 else "jobs"

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(f"retry {what} of {name}",
                                 lambda: self.backend.retry_failed(ref.workflow_id, ref.step_id),
                                 lambda n: self.notify(f"{n} {jobs} queued again"))

        detail = f"Workflow #{ref.workflow_id}. Each of them gets a new order; its history is kept."
        self.app.push_screen(ConfirmScreen(f"Retry {what} of {name}?", detail, confirm_label="Retry"), answered)

    def action_abort(self) -> None:
        if self.refused("abort"):
            return
        view = self._workflow_of_selection("abort")
        if view is None:
            return
        if view.status in WORKFLOW_FINAL:
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
        if view.status in WORKFLOW_FINAL:
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
        if view.status not in WORKFLOW_FINAL:
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
        if status in JOB_FINAL:
            self.notify(f"job #{job_id} has ended ({status}): nothing to cancel", severity="warning")
            return
        self.run_command(f"cancel job #{job_id}", lambda: self.backend.cancel_job(job_id),
                         lambda _: self.notify(f"job #{job_id} cancelled"))

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
            f"In {JOB_DEAD_LETTER} now, by the queue each died in:\n{lines}\n\nEach goes back to its exchange "
            f"and routing key, and leaves {JOB_DEAD_LETTER} once the broker has it.", confirm_label="Redrive"),
            answered)

    def action_workers(self) -> None:
        self.app.push_screen(WorkersScreen(self.backend, self.clock))

    def action_toggle_log(self) -> None:
        log = self.query_one(LogPanel)
        log.display = not log.display
        # lay the whole screen out again at once: the panes above once stayed drawn twice until the next key
        self.refresh(layout=True)
        if log.display:
            log.scroll_end(animate=False)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.app.exit(0)
