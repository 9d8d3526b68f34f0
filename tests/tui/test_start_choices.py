"""The start form with StepFlow's start parameters: a choice shows its labels and sends its ids, defaults are
filled in, a number is checked; the picker shows a definition's Material icon as a glyph where one fits."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Select

from stepflow_tui.core.definitions import StartParameter, parse_definitions
from stepflow_tui.tui.screens.start import StartForm, choice_options, field_error, icon_glyph

DEFINITION = parse_definitions({
    "identifier": "encode", "label": "Encode", "icon": "movie", "steps": [{"id": 1, "name": "noop"}],
    "start_parameters": [
        {"id": "source", "type": "file", "required": True, "default": "/media/in.mov"},
        {"id": "quality", "label": "Quality", "type": "choice", "default": "hq",
         "items": [{"id": "lq", "label": "Low"}, {"id": "hq", "label": "High"}]},
        {"id": "frames", "label": "Frames", "type": "number", "default": 25},
    ]}, "test.json")[0]


def test_choice_labels_are_shown_and_ids_sent():
    quality = DEFINITION.start_parameters[1]
    assert choice_options(quality) == [("Low", "lq"), ("High", "hq")]
    assert field_error(quality, "hq") is None
    assert field_error(quality, "High") == "Quality must be one of Low, High"
    plain = StartParameter(id="a", label="A", type="choice", items=(1, 2))
    assert choice_options(plain) == [("1", "1"), ("2", "2")]


def test_icon_glyphs():
    assert icon_glyph("movie") == "🎬"
    assert icon_glyph("no_such_icon") == icon_glyph(None) == ""


async def test_the_form_fills_defaults_and_sends_the_chosen_id():
    results: list[object] = []

    class FormApp(App[None]):
        def on_mount(self) -> None:
            self.push_screen(StartForm(DEFINITION), results.append)

    app = FormApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        form = app.screen
        assert form.query_one("#field-source").value == "/media/in.mov"
        assert form.query_one("#field-frames").value == "25"
        select = form.query_one("#field-quality", Select)
        assert select.value == "hq"
        form.query_one("#field-frames").value = "many"
        form.action_submit()
        await pilot.pause()
        assert results == [] and "Frames must be a number" in str(form.query_one("#error-frames").render())
        form.query_one("#field-frames").value = "30"
        select.value = "lq"
        form.action_submit()
        await pilot.pause()
    assert results == [{"source": "/media/in.mov", "quality": "lq", "frames": "30"}]
