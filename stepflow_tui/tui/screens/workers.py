"""Live and lost workers: instance, state, activity, current jobs, counters (processed, failed, concurrency,
uptime, last job), last seen, job types, host / pid."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from stepflow_tui.backend import WorkbenchBackend, WorkerView
from stepflow_tui.tui.formatting import age

JOB_TYPES_WIDTH = 30  # cut with "…"; the full list is in each worker's status (``stepflow plugins``)


class WorkersScreen(Screen[None]):
    """A table of workers, refreshed when the backend says workers changed (`reload`)."""

    CSS_PATH = "workers.tcss"
    BINDINGS = [Binding("escape,w", "dismiss", "Back"), Binding("q", "app.quit", "Quit")]

    def __init__(self, backend: WorkbenchBackend, clock) -> None:
        super().__init__()
        self.backend = backend
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield Static("", id="workers-title")
        yield DataTable(id="workers-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # What tells a worker's health comes first (at 80 columns the table scrolls sideways, and "state", last,
        # was off the screen); job types get a fixed width: a worker of every installed type lists six or more
        for column in ("instance", "state", "activity", "current jobs", "processed", "failed", "concurrency", "up",
                       "last job", "last seen", "job types", "host / pid"):
            table.add_column(column, key=column, width=JOB_TYPES_WIDTH if column == "job types" else None)
        self.reload()

    @work(thread=True, exclusive=True, group="workers", exit_on_error=False, description="list workers")
    def reload(self) -> None:
        """Read the workers (on a thread) and show them."""
        try:
            workers = self.backend.workers()
        except Exception as error:  # show why instead of crashing the screen
            self.app.call_from_thread(self.notify, f"cannot list workers: {error}", severity="error")
            return
        self.app.call_from_thread(self.show, workers)

    def show(self, workers: list[WorkerView]) -> None:
        now: datetime = self.clock()
        table = self.query_one(DataTable)
        table.clear()
        for worker in sorted(workers, key=lambda w: (w.lost, w.instance_id)):
            activity_style = {"Busy": "yellow", "Idle": "green"}.get(worker.activity, "dim")
            table.add_row(
                # the first 12 hex digits tell instances apart; the whole id took a quarter of the screen
                Text(worker.instance_id[:12], style="bold" if not worker.lost else "dim"),
                Text("LOST", style="bold white on red") if worker.lost else Text("live", style="green"),
                Text(worker.activity, style=activity_style),
                ", ".join(f"#{job}" for job in worker.current_jobs) or "—",
                *_counters(worker, now),
                f"{age(worker.last_seen, now)} ago",
                Text(", ".join(worker.job_types), no_wrap=True, overflow="ellipsis"),
                f"{worker.hostname} / {worker.pid}",
                key=worker.instance_id,
            )
        live = sum(not worker.lost for worker in workers)
        self.query_one("#workers-title", Static).update(
            Text.assemble((f" Workers: {live} live, {len(workers) - live} lost", "bold"),
                          ("   (a worker unseen for 3 status intervals is lost)", "dim")))


def _counters(worker: WorkerView, now: datetime) -> tuple[Text, ...]:
    """processed, failed, concurrency, uptime and last job: what this backend counted of the worker's results
    since it first heard of it (a worker that started earlier did more)."""
    last = f"#{worker.last_job} {age(worker.last_job_at, now)} ago" if worker.last_job is not None else "—"
    return (Text(f"{worker.processed:,}", justify="right"),
            Text(f"{worker.failed:,}", justify="right", style="bold red" if worker.failed else "dim"),
            Text(str(worker.concurrency), justify="right"),
            Text(age(worker.first_seen, now) if worker.first_seen else "?", justify="right"),
            Text(last))
