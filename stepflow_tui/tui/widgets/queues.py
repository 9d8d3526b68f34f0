"""The queues panel: ready / unacked / consumers of every job queue and of the response, not-found and
dead-letter queues."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import DataTable

from stepflow_tui.broker.base import QueueState

#: Shown even when the backend does not list them: where lost and refused messages end up.
ALWAYS_SHOWN = ("job_queue_not_found", "job_dead_letter")


class QueuesPanel(DataTable):
    """One row per queue; rows are updated in place."""

    def on_mount(self) -> None:
        self.cursor_type = "none"  # a display: nothing to select
        self.zebra_stripes = True
        self.add_column("queue", key="queue")
        self.add_column("ready", key="ready")
        self.add_column("unacked", key="unacked")
        self.add_column("consumers", key="consumers")

    def show(self, states: Iterable[QueueState]) -> None:
        """Replace the rows by ``states`` (plus the always-shown queues, marked absent if missing)."""
        by_name = {state.name: state for state in states}
        for name in ALWAYS_SHOWN:
            by_name.setdefault(name, QueueState(name, exists=False))
        self.clear()
        for name in sorted(by_name, key=_order):
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


def _order(name: str) -> tuple[int, str]:
    """Where lost messages go first (what needs attention), then job queues, then the response queues."""
    if name in ALWAYS_SHOWN or name.endswith("not_found"):
        return (-1, name)
    if name in ("job_completed", "job_error", "job_progression"):
        return (1, name)
    return (0, name)
