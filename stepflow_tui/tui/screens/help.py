"""Every key, and what each status means."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from stepflow_tui.tui.formatting import STATUS_MEANINGS, status_text
from stepflow_tui.tui.keys import NAVIGATION_KEYS, WORKBENCH_KEYS, display_key


def help_renderable(read_only: bool) -> Group:
    """The help text: actions, navigation, statuses."""
    keys = Table(box=None, padding=(0, 2), show_header=False)
    keys.add_column(style="bold cyan", no_wrap=True)
    keys.add_column()
    for key in WORKBENCH_KEYS:
        note = Text("  (refused: read-only)", style="magenta") if read_only and key.changes_state else Text()
        keys.add_row(display_key(key.key), Text(key.help) + note)
    for key_name, meaning in NAVIGATION_KEYS:
        keys.add_row(key_name, meaning)
    statuses = Table(box=None, padding=(0, 2), show_header=False)
    statuses.add_column(no_wrap=True)
    statuses.add_column()
    for status, meaning in STATUS_MEANINGS:
        statuses.add_row(status_text(status), meaning)
    return Group(Text("Keys", style="bold underline"), keys, Text(""),
                 Text("Statuses", style="bold underline"), statuses)


class HelpScreen(ModalScreen[None]):
    """Closed with escape, ? or q."""

    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_renderable(self.app_read_only()))

    def app_read_only(self) -> bool:
        return bool(getattr(self.app, "read_only", False))

    def on_mount(self) -> None:
        self.query_one("#help").border_title = "stepflow — help (escape to close)"
