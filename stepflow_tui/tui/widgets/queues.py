"""The queues panel: ready / unacked / consumers of every job queue and of the response, not-found and
dead-letter queues. With the focus (tab), a row cursor: ``R`` or enter on the ``job_dead_letter`` row asks
the screen to redrive the dead letters (`QueuesPanel.RedriveRequested`)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from stepflow_tui.backend import (
    CATCH_QUEUE_NAMES,
    JOB_DEAD_LETTER,
    JOB_QUEUE_NOT_FOUND,
    RESPONSE_QUEUE_NAMES,
    QueueState,
)

#: Shown even when the backend does not list them: where lost and refused messages end up.
ALWAYS_SHOWN = (JOB_QUEUE_NOT_FOUND, JOB_DEAD_LETTER)


class QueuesPanel(DataTable):
    """One row per queue; rows are updated in place."""

    BINDINGS = [Binding("R", "redrive", "Redrive dead letters", tooltip=f"On the {JOB_DEAD_LETTER} row: send "
                        "the dead letters back to their queues (after a confirmation with the counts)")]

    class RedriveRequested(Message):
        """The operator asked to send the dead letters back to the queues they died in."""

    def on_mount(self) -> None:
        self.cursor_type = "none"  # a display until it has the focus: no highlighted row in the way
        self.zebra_stripes = True
        self.add_column("queue", key="queue")
        self.add_column("ready", key="ready")
        self.add_column("unacked", key="unacked")
        self.add_column("consumers", key="consumers")

    def on_focus(self) -> None:
        self.cursor_type = "row"

    def on_blur(self) -> None:
        self.cursor_type = "none"

    def show(self, states: Iterable[QueueState]) -> None:
        """Replace the rows by ``states`` (plus the always-shown queues, marked absent if missing); the cursor
        stays on the queue it was on."""
        by_name = {state.name: state for state in states}
        for name in ALWAYS_SHOWN:
            by_name.setdefault(name, QueueState(name, exists=False))
        current = self.cursor_queue
        scroll_y = self.scroll_y
        self.clear()
        for name in sorted(by_name, key=lambda queue: _order(by_name[queue])):
            state = by_name[name]
            if not state.exists:
                self.add_row(Text(name, style="dim"), Text("absent", style="dim"), "", "", key=name)
                continue
            warn = name in ALWAYS_SHOWN and state.ready > 0
            ready_style = "bold red" if warn else ("yellow" if state.ready and not state.consumers else "")
            consumers_style = "bold red" if state.ready and not state.consumers and not warn else ""
            self.add_row(Text(name, style="red" if warn else ""), Text(f"{state.ready:,}", style=ready_style,
                         justify="right"), Text(f"{state.unacked:,}", justify="right"),
                         Text(str(state.consumers), style=consumers_style, justify="right"), key=name)
        if current is not None and current in self.rows:
            self.move_cursor(row=self.get_row_index(current), animate=False, scroll=False)
            self.scroll_to(y=scroll_y, animate=False)

    @property
    def cursor_queue(self) -> str | None:
        """The queue of the row under the cursor (None when the table is empty)."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except CellDoesNotExist:  # a cursor past the rows while they are being replaced
            return None

    def action_redrive(self) -> None:
        if self.cursor_queue != JOB_DEAD_LETTER:
            self.notify(f"put the cursor on the {JOB_DEAD_LETTER} row to redrive its messages",
                        severity="warning")
            return
        self.post_message(self.RedriveRequested())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value == JOB_DEAD_LETTER:
            event.stop()
            self.post_message(self.RedriveRequested())


def _order(state: QueueState) -> tuple[int, str]:
    """Where lost messages went, when some did (what needs attention); then job_dead_letter (its row redrives);
    then the job queues; then the empty not-found queues and the response queues. A small panel shows the job
    queues, not three empty system queues."""
    name = state.name
    lost = name in CATCH_QUEUE_NAMES
    if lost and state.exists and state.ready > 0:
        return (-2, name)
    if name == JOB_DEAD_LETTER:
        return (-1, name)
    if lost:
        return (1, name)
    if name in RESPONSE_QUEUE_NAMES:
        return (2, name)
    return (0, name)
