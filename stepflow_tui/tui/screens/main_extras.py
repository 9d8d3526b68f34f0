"""Re-run, export, copy and plugins' commands on the main screen (`MainExtras`, a mixin of it): `e` starts the
selected workflow's definition again with its parameters in the start form, `E` writes the workflow and its
jobs as JSON and CSV, `c` copies the selected id to the clipboard; a plugin's palette command runs on a thread."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App

from stepflow_tui.backend import JobView, WorkbenchBackend, WorkflowDefinition, WorkflowView
from stepflow_tui.backend.views import workflow_to_dict
from stepflow_tui.tui.screens.start import StartForm
from stepflow_tui.tui.widgets.tree import WorkflowTree
from stepflow_tui.tui.widgets.tree_refs import NodeRef

logger = logging.getLogger("stepflow_tui.tui")

#: Jobs read per call while exporting (one lock each on the backend).
EXPORT_PAGE = 1000
#: The columns of the CSV export, one row per job.
CSV_COLUMNS = ("job_id", "step_id", "step", "status", "progress", "input", "worker", "duration_s", "started_at",
               "error")


class MainExtras:
    """The re-run, export and copy actions of `MainScreen`; it provides what is declared here."""

    backend: WorkbenchBackend
    app: App[Any]
    tree: WorkflowTree
    notify: Callable[..., None]
    refused: Callable[[str], bool]
    export_dir: Path
    _workflow_of_selection: Callable[[str], WorkflowView | None]
    _definition: Callable[[str], WorkflowDefinition | None]
    _start: Callable[[WorkflowDefinition, dict[str, str] | None], None]

    def action_rerun(self) -> None:
        if self.refused("re-run"):
            return
        view = self._workflow_of_selection("re-run")
        if view is None:
            return
        definition = self._definition(view.identifier)
        if definition is None:
            self.notify(f"re-run: no definition {view.identifier!r} is installed any more", severity="warning")
            return
        self.app.push_screen(StartForm(definition, view.parameters, rerun_of=view.id),
                             lambda values: self._start(definition, values))

    def action_copy_id(self) -> None:
        ref: NodeRef | None = self.tree.selected_ref
        if ref is None:
            self.notify("select a workflow or a job first", severity="warning")
            return
        text = str(ref.job_id) if ref.kind == "job" and ref.job_id is not None else str(ref.workflow_id)
        self.app.copy_to_clipboard(text)  # OSC 52: the terminal puts it on the clipboard
        what = "job" if ref.kind == "job" else "workflow"
        self.notify(f"copied {what} id {text} to the clipboard")

    def run_plugin_command(self, command: Any) -> None:
        """Run a plugin's palette command (`register_commands`) on the selection, on a thread."""
        ref: NodeRef | None = self.tree.selected_ref
        selection = {"workflow_id": ref.workflow_id if ref else None, "step_id": ref.step_id if ref else None,
                     "job_id": ref.job_id if ref else None}
        self._run_plugin_command(command, selection)

    @work(thread=True, group="plugin-commands", exit_on_error=False, description="a plugin's command")
    def _run_plugin_command(self, command: Any, selection: dict[str, int | None]) -> None:
        try:
            message = command.run(selection)
        except Exception as error:  # a plugin's bug: say it, keep the app
            logger.warning("command %r failed: %s", command.name, error)
            self.app.call_from_thread(self.notify, f"{command.name} failed: {error}", severity="error")
            return
        if message:
            self.app.call_from_thread(self.notify, str(message))

    def action_export(self) -> None:
        view = self._workflow_of_selection("export")
        if view is not None:
            self._export(view)

    @work(thread=True, group="export", exit_on_error=False, description="export a workflow")
    def _export(self, view: WorkflowView) -> None:
        base = self.export_dir / f"workflow-{view.id}"
        try:
            jobs = list(self._all_jobs(view))
            records = [record for job in jobs if (record := self.backend.job(job.id)) is not None]
            base.with_suffix(".json").write_text(json.dumps(
                {"workflow": workflow_to_dict(view), "jobs": records}, indent=1, default=str) + "\n")
            write_csv(base.with_suffix(".csv"), view, jobs)
        except Exception as error:  # a full disk or a backend gone: say so, keep the app
            logger.warning("export of workflow #%s failed: %s", view.id, error)
            self.app.call_from_thread(self.notify, f"export failed: {error}", severity="error")
            return
        logger.info("exported workflow #%s to %s.json and .csv", view.id, base)
        self.app.call_from_thread(self.notify, f"workflow #{view.id} and its {len(jobs):,} jobs exported to "
                                               f"{base}.json and {base.name}.csv")

    def _all_jobs(self, view: WorkflowView):
        for step in view.steps:
            offset = 0
            while True:
                page = self.backend.jobs(view.id, step.id, offset=offset, limit=EXPORT_PAGE)
                yield from page
                if len(page) < EXPORT_PAGE:
                    break
                offset += len(page)


def write_csv(path: Path, view: WorkflowView, jobs: list[JobView]) -> None:
    """One row per job: `CSV_COLUMNS`."""
    labels = {step.id: step.label or step.name for step in view.steps}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for job in jobs:
            writer.writerow([job.id, job.step_id, labels.get(job.step_id, ""), job.status, job.progress,
                             job.input or "", job.worker or "", "" if job.duration is None else job.duration,
                             job.started_at or "", (job.error or "").splitlines()[0] if job.error else ""])
