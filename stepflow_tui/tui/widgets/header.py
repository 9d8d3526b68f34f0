"""The header line: app name, broker (masked), connection state, live / lost workers, where the backend runs."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

CONNECTION_STYLES = {"connected": "bold green", "connecting": "yellow", "reconnecting": "bold yellow reverse",
                     "stopped": "bold red"}


class StatusHeader(Static):
    """``stepflow  ● connected  workers 2 live, 1 lost  READ-ONLY  amqp://user:***@host/vh``."""

    broker = reactive("")
    connection = reactive("connecting")
    live_workers = reactive(0)
    lost_workers = reactive(0)
    read_only = reactive(False)
    #: "embedded" or "attached to http://…" (empty: not said, as by a test's fake backend)
    mode = reactive("")

    def render(self) -> Text:
        line = Text()
        line.append(" stepflow ", style="bold reverse")
        line.append("  ")
        # the state first, the broker URL last: at 80 columns a long URL cut off "lost" and "READ-ONLY"
        line.append(f"● {self.connection}", style=CONNECTION_STYLES.get(self.connection, ""))
        line.append(f"  workers {self.live_workers} live")
        if self.lost_workers:
            line.append(f", {self.lost_workers} lost", style="bold red")
        if self.read_only:
            line.append("  READ-ONLY", style="bold magenta reverse")
        if self.mode:
            line.append(f"  {self.mode}", style="italic")
        line.append("  ")
        line.append(self.broker, style="bold")
        return line
