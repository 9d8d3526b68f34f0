"""The queues panel: ready / unacked / consumers, rates in and out and the recent depth of every job queue and
of the response, not-found and dead-letter queues, busiest first. With the focus (tab), a row cursor: ``R`` or
enter on the ``job_dead_letter`` row asks the screen to redrive the dead letters
(`QueuesPanel.RedriveRequested`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

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
from stepflow_tui.tui.queue_rates import BUCKET, BUCKETS, QueueRates, rate_text, sparkline

#: Shown even when the backend does not list them: where lost and refused messages end up.
ALWAYS_SHOWN = (JOB_QUEUE_NOT_FOUND, JOB_DEAD_LETTER)


class QueuesPanel(DataTable):
    """One row per queue; rows are updated in place."""

    BINDINGS = [Binding("R", "redrive", "Redrive dead letters", tooltip=f"On the {JOB_DEAD_LETTER} row: send "
                        "the dead letters back to their queues (after a confirmation with the counts)")]

    class RedriveRequested(Message):
        """The operator asked to send the dead letters back to the queues they died in."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock  # seconds; injected so that tests state the times of their readings
        self.rates = QueueRates()
        self._states: list[QueueState] = []

    def on_mount(self) -> None:
        self.cursor_type = "none"  # a display until it has the focus: no highlighted row in the way
        self.zebra_stripes = True
        self.add_column("queue", key="queue")
        self.add_column("ready", key="ready")
        self.add_column("unacked", key="unacked")
        self.add_column("consumers", key="consumers")
        self.add_column("in", key="in")
        self.add_column("out", key="out")
        self.add_column(f"ready, last {BUCKETS * BUCKET / 60:g} min", key="history")

    def on_focus(self) -> None:
        self.cursor_type = "row"

    def on_blur(self) -> None:
        self.cursor_type = "none"

    def show(self, states: Iterable[QueueState]) -> None:
        """Replace the rows by ``states`` (plus the always-shown queues, marked absent if missing), busiest
        first; the cursor stays on the queue it was on."""
        self._states = list(states)
        self.rates.record(self._states, self.clock())
        self._draw()

    def tick(self) -> None:
        """Read the last states again at the clock's time: a queue that stopped moving gets its rates back
        to 0 (a reading comes only when something changed)."""
        if self._states:
            self.show(self._states)

    def _draw(self) -> None:
        by_name = {state.name: state for state in self._states}
        for name in ALWAYS_SHOWN:
            by_name.setdefault(name, QueueState(name, exists=False))
        current = self.cursor_queue
        scroll_y = self.scroll_y
        self.clear()
        for name in sorted(by_name, key=lambda queue: queue_order(by_name[queue])):
            self.add_row(*self._cells(by_name[name]), key=name)
        hidden = len(by_name) - max(0, self.size.height - 1)
        self.border_subtitle = f"{len(by_name)} queues, scroll for {hidden} more" if hidden > 0 else ""
        if current is not None and current in self.rows:
            self.move_cursor(row=self.get_row_index(current), animate=False, scroll=False)
            self.scroll_to(y=scroll_y, animate=False)

    def _cells(self, state: QueueState) -> tuple[Text | str, ...]:
        name = state.name
        if not state.exists:
            return Text(name, style="dim"), Text("absent", style="dim"), "", "", "", "", ""
        warn = name in ALWAYS_SHOWN and state.ready > 0
        ready_style = "bold red" if warn else ("yellow" if state.ready and not state.consumers else "")
        consumers_style = "bold red" if state.ready and not state.consumers and not warn else ""
        unacked = Text("?", style="dim") if state.unacked is None else Text(f"{state.unacked:,}")
        unacked.justify = "right"
        rate_in, rate_out = self.rates.rates(name)
        history = self.rates.depth_history(name)
        return (Text(name, style="red" if warn else ""), Text(f"{state.ready:,}", style=ready_style,
                justify="right"), unacked, Text(str(state.consumers), style=consumers_style, justify="right"),
                Text(rate_text(rate_in), justify="right", style="dim" if rate_in is None else ""),
                Text(rate_text(rate_out), justify="right", style="dim" if rate_out is None else ""),
                sparkline(history))

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


def queue_order(state: QueueState) -> tuple[int, int, str]:
    """Where lost or dead messages are, when there are some (what needs attention; the dead-letter row
    redrives); then the busiest queues, most messages first; then the empty system queues. A panel of six
    rows shows the queues with work, not empty system queues in alphabetical order."""
    name = state.name
    held = state.ready + (state.unacked or 0) if state.exists else 0
    if name in CATCH_QUEUE_NAMES and held:
        return (-2, -held, name)
    if name == JOB_DEAD_LETTER and held:
        return (-1, -held, name)
    if name in CATCH_QUEUE_NAMES or name == JOB_DEAD_LETTER:
        return (1, 0, name)
    if name in RESPONSE_QUEUE_NAMES and not held:
        return (2, 0, name)
    return (0, -held, name)
