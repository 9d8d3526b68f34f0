"""Starting a workflow: pick a definition, then fill in a form built from its start parameters."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from stepflow_tui.backend import StartParameter, WorkflowDefinition

#: StepFlow's Material icon names shown as a glyph where one fits (others show nothing).
ICON_GLYPHS = {
    "movie": "🎬", "movie_filter": "🎬", "videocam": "🎥", "video_library": "🎞", "audiotrack": "🎵",
    "music_note": "🎵", "mic": "🎤", "image": "🖼", "photo": "🖼", "subtitles": "💬", "translate": "🌐",
    "cloud_upload": "☁", "cloud_download": "☁", "file_upload": "⬆", "file_download": "⬇", "folder": "📁",
    "description": "📄", "email": "✉", "notifications": "🔔", "settings": "⚙", "build": "🔧", "check": "✔",
    "content_cut": "✂", "speed": "⏱", "timer": "⏱", "search": "🔍", "lock": "🔒", "storage": "🗄",
}


def icon_glyph(name: str | None) -> str:
    """The glyph of a Material icon name, or "" when none fits."""
    return ICON_GLYPHS.get(name or "", "")


def choice_options(parameter: StartParameter) -> list[tuple[str, str]]:
    """A choice's (label shown, value sent) pairs: StepFlow's item labels when given, the ids sent."""
    labels = parameter.item_labels or tuple(str(item) for item in parameter.items)
    return [(str(label), str(item)) for label, item in zip(labels, parameter.items, strict=False)]


def field_error(parameter: StartParameter, value: Any) -> str | None:
    """Why ``value`` (text from the form, or a choice) is not acceptable for ``parameter``, or None."""
    text = "" if value is None or value is Select.NULL else str(value).strip()
    if not text:
        if parameter.required and parameter.default in (None, ""):
            return f"{parameter.label or parameter.id} is required"
        return None
    if parameter.type == "number":
        try:
            number = float(text)
        except ValueError:
            return f"{parameter.label or parameter.id} must be a number, not {text!r}"
        if not math.isfinite(number):
            return f"{parameter.label or parameter.id} must be a finite number"
    if parameter.type == "choice" and parameter.items and text not in {str(item) for item in parameter.items}:
        shown = ", ".join(label for label, _ in choice_options(parameter))
        return f"{parameter.label or parameter.id} must be one of {shown}"
    return None


class DefinitionPicker(ModalScreen[WorkflowDefinition | None]):
    """A list of the installed workflow definitions; Enter picks one."""

    CSS_PATH = "start.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, definitions: list[WorkflowDefinition]) -> None:
        super().__init__()
        self.definitions = sorted(definitions, key=lambda d: d.identifier)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Start a workflow: pick one (Enter), escape to cancel", id="title")
            options = [
                Option(Text.assemble(f"{icon_glyph(definition.icon)} " if icon_glyph(definition.icon) else "",
                                     (definition.identifier, "bold"), (f"  v{definition.version}  ", "dim"),
                                     definition.label), id=definition.identifier)
                for definition in self.definitions
            ]
            yield OptionList(*options, id="definitions")
            if not options:
                yield Static("No workflow definitions are installed (see `stepflow plugins`).", classes="error")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        chosen = next(d for d in self.definitions if d.identifier == event.option.id)
        self.dismiss(chosen)


class StartForm(ModalScreen[dict[str, str] | None]):
    """One field per start parameter (label, default, required mark, choice as a Select); errors inline.

    Dismisses with the values as strings (empty fields left out: the backend applies defaults) or None."""

    CSS_PATH = "start.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "submit", "Start")]

    def __init__(self, definition: WorkflowDefinition, values: dict[str, Any] | None = None,
                 rerun_of: int | None = None) -> None:
        super().__init__()
        self.definition = definition
        self.initial = dict(values or {})  # a re-run: the fields hold what the workflow was started with
        self.rerun_of = rerun_of

    def compose(self) -> ComposeResult:
        definition = self.definition
        with Vertical(id="dialog"):
            yield Label(Text.assemble((f"Start {definition.identifier}", "bold"), (f"  v{definition.version}", "dim"),
                                      ("  again" if self.rerun_of is not None else "", "bold")), id="title")
            subtitle = definition.label
            if self.rerun_of is not None:
                subtitle += f"\nWith the parameters of #{self.rerun_of}: edit them, or press enter."
            yield Static(subtitle, id="subtitle")
            with VerticalScroll(id="fields"):
                for parameter in definition.start_parameters:
                    mark = Text(" *", style="bold red") if parameter.required else Text("")
                    yield Label(Text.assemble(parameter.label or parameter.id, mark,
                                              (f"  {parameter.id} ({parameter.type})", "dim")))
                    given = self.initial.get(parameter.id, parameter.default)
                    default = "" if given is None else str(given)
                    if parameter.type == "choice" and parameter.items:
                        yield Select(choice_options(parameter),
                                     value=default if default else Select.NULL,
                                     allow_blank=not parameter.required or not default,
                                     id=f"field-{parameter.id}", compact=True)
                    else:
                        placeholder = "a folder or file path" if parameter.type == "file" else parameter.type
                        yield Input(default, placeholder=placeholder, id=f"field-{parameter.id}", compact=True)
                    yield Static("", id=f"error-{parameter.id}", classes="field-error")
                if not definition.start_parameters:
                    yield Static("This workflow takes no parameters.")
            with Horizontal(id="buttons"):
                yield Button("Start (enter)", id="start", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        blink = getattr(self.app, "cursor_blink", True)
        for field in self.query(Input):
            field.cursor_blink = blink
        first = self.query("#fields Input, #fields Select").first() if self.definition.start_parameters else None
        (first or self.query_one("#start", Button)).focus()

    def values(self) -> dict[str, Any]:
        """The raw value of every field, by parameter id."""
        values: dict[str, Any] = {}
        for parameter in self.definition.start_parameters:
            widget = self.query_one(f"#field-{parameter.id}")
            values[parameter.id] = widget.value  # type: ignore[attr-defined]
        return values

    def validate(self) -> dict[str, str] | None:
        """Show each field's error under it; return the values as strings, or None when any is invalid."""
        values = self.values()
        first_invalid: str | None = None
        for parameter in self.definition.start_parameters:
            message = field_error(parameter, values[parameter.id])
            error = self.query_one(f"#error-{parameter.id}", Static)
            error.update(message or "")
            error.set_class(bool(message), "shown")
            if message and first_invalid is None:
                first_invalid = parameter.id
        if first_invalid is not None:
            # in a form taller than the terminal (80x24) the first error may be out of sight: go to it
            self.query_one(f"#field-{first_invalid}").focus()
            self.call_after_refresh(self.query_one(f"#error-{first_invalid}", Static).scroll_visible,
                                    animate=False)
            return None
        return {key: str(value).strip() for key, value in values.items()
                if value is not None and value is not Select.NULL and str(value).strip()}

    def action_submit(self) -> None:
        values = self.validate()
        if values is not None:
            self.dismiss(values)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_submit()
        else:
            self.dismiss(None)
