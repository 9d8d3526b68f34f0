"""The filter dialog: a status and a text; applied to the tree."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from stepflow_tui.tui.widgets.tree_refs import FILTER_STATUSES, TreeFilter


class FilterScreen(ModalScreen[TreeFilter | None]):
    """Dismisses with the new filter (Enter / Apply), an empty one (Clear), or None (escape)."""

    CSS_PATH = "filter.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: TreeFilter) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Filter workflows", id="title")
            yield Label("Status (of the workflow or of any of its jobs)")
            yield Select([(status, status) for status in FILTER_STATUSES], prompt="any status",
                         value=self.current.status or Select.NULL, id="status")
            yield Label("Text: a workflow or job id, a name, a parameter value")
            yield Input(self.current.text, placeholder="e.g. checksum, 3026, img_0042.jpg", id="text")
            with Horizontal(id="buttons"):
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Clear", id="clear")

    def on_mount(self) -> None:
        text = self.query_one("#text", Input)
        text.cursor_blink = getattr(self.app, "cursor_blink", True)
        text.focus()

    def on_key(self, event: events.Key) -> None:
        """Typing while a button has the focus (after a tab) goes to the text field: it was dropped silently."""
        if isinstance(self.focused, Button) and event.is_printable and event.character not in (None, " "):
            text = self.query_one("#text", Input)
            text.select_on_focus = False  # selected on focus, the next key would replace this one
            text.focus()
            text.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    def _chosen(self) -> TreeFilter:
        status = self.query_one("#status", Select).value
        return TreeFilter(status=status if isinstance(status, str) else None,
                          text=self.query_one("#text", Input).value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(self._chosen())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(TreeFilter() if event.button.id == "clear" else self._chosen())
