"""Re-run with the same or edited parameters (e), export as JSON and CSV (E), copy an id (c)."""

from __future__ import annotations

import csv
import json

from stepflow_tui.tui.screens.start import StartForm
from stepflow_tui.tui.widgets.tree_refs import NodeRef

from .fakes import FakeBackend
from .helpers import make_app, notifications, open_step, select, settle

SIZE = (120, 36)


async def test_rerun_opens_the_form_with_the_workflow_parameters_and_starts_it():
    backend = FakeBackend()
    app = make_app(backend)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, StartForm) and form.rerun_of == 14
        assert form.query_one("#field-source_dir").value == "/data/scans"
        assert form.query_one("#field-algorithm").value == "md5"
        form.query_one("#field-source_dir").value = "/data/scans2"  # edited before starting
        await pilot.press("enter")
        await settle(pilot)
        assert backend.calls == [("start_workflow", "checksum_folder", {
            "source_dir": "/data/scans2", "manifest_path": "manifest.sha256", "algorithm": "md5"})]


async def test_rerun_is_refused_in_read_only_mode():
    backend = FakeBackend(read_only=True)
    app = make_app(backend, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 14))
        await pilot.press("e")
        await settle(pilot)
        assert not isinstance(app.screen, StartForm)
        assert "read-only mode: re-run refused" in notifications(app)


async def test_export_writes_json_and_csv(tmp_path):
    app = make_app()
    app.main_screen.export_dir = tmp_path
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, NodeRef("workflow", 13))
        await pilot.press("E")
        await settle(pilot)
    exported = json.loads((tmp_path / "workflow-13.json").read_text())
    assert exported["workflow"]["id"] == 13 and [job["id"] for job in exported["jobs"]] == [2001, 2002, 2003]
    assert exported["jobs"][0]["traceback"]  # full records: error, traceback, history
    rows = list(csv.DictReader((tmp_path / "workflow-13.csv").open()))
    assert [(row["job_id"], row["status"], row["step"]) for row in rows] == [
        ("2001", "error", "fail"), ("2002", "error", "fail"), ("2003", "error", "fail")]
    assert rows[0]["input"] == "/data/photos/img_00000.jpg" and rows[0]["error"].startswith("no such file")
    assert any("exported to" in message for message in notifications(app))


async def test_copy_puts_the_selected_id_on_the_clipboard():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 14, 2)
        await select(pilot, NodeRef("job", 14, 2, 3005))
        await pilot.press("c")
        await settle(pilot)
        assert app.clipboard == "3005"
        await select(pilot, NodeRef("workflow", 12))
        await pilot.press("c")
        assert app.clipboard == "12"
        assert "copied workflow id 12 to the clipboard" in notifications(app)
