"""The header line: app name, connection state, live / lost workers, job totals, where the backend runs,
broker (masked)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

CONNECTION_STYLES = {"connected": "bold green", "connecting": "yellow", "reconnecting": "bold yellow reverse",
                     "error": "bold red reverse", "stopped": "bold red"}
#: The reason shown beside a connection that is not up is cut to this many characters (the log has it whole).
REASON_WIDTH = 60


class StatusHeader(Static):
    """``stepflow  ● connected  workers 2 live, 1 lost  ⟳ 4 … 38,768 ✘ 4  READ-ONLY  amqp://user:***@host/vh``."""

    broker = reactive("")
    connection = reactive("connecting")
    reason = reactive("")  # why the connection is not up
    live_workers = reactive(0)
    lost_workers = reactive(0)
    read_only = reactive(False)
    #: Jobs of every workflow by status: processing, queued (retrying included), error.
    totals: reactive[tuple[int, int, int]] = reactive((0, 0, 0))
    #: "embedded" or "attached to http://…" (empty: not said, as by a test's fake backend)
    mode = reactive("")

    def render(self) -> Text:
        line = Text()
        line.append(" stepflow ", style="bold reverse")
        line.append("  ")
        # the state first, the broker URL last: at 80 columns a long URL cut off "lost" and "READ-ONLY"
        line.append(f"● {self.connection}", style=CONNECTION_STYLES.get(self.connection, ""))
        if self.reason and self.connection != "connected":
            cut = self.reason if len(self.reason) <= REASON_WIDTH else self.reason[:REASON_WIDTH - 1] + "…"
            line.append(f" ({cut})", style="red")
        line.append(f"  workers {self.live_workers} live")
        if self.lost_workers:
            line.append(f", {self.lost_workers} lost", style="bold red")
        running, queued, failed = self.totals
        line.append("  ")
        line.append(f"⟳ {running:,}", style="yellow")
        line.append(f" … {queued:,}", style="cyan")
        line.append(f" ✘ {failed:,}", style="bold red" if failed else "dim")
        if self.read_only:
            line.append("  READ-ONLY", style="bold magenta reverse")
        if self.mode:
            line.append(f"  {self.mode}", style="italic")
        line.append("  ")
        line.append(self.broker, style="bold")
        return line
