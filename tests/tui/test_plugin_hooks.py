"""Plugins extend the workbench: a renderer of a job type's outputs in the detail pane, a column on job lines,
a command in the palette (hooks in stepflow_tui/hookspecs.py), registered by a small plugin in the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stepflow_tui import WorkbenchCommand, hookimpl
from stepflow_tui.plugins import get_plugin_manager, load_registry
from stepflow_tui.tui.extensions import WorkbenchExtensions
from stepflow_tui.tui.widgets.tree_refs import NodeRef

from .fakes import FakeBackend, fixed_clock
from .helpers import detail_text, notifications, open_step, select, settle, tree_of

SIZE = (120, 36)
SEEN: list[dict] = []


class WorkbenchPlugin:
    """Shows checksum outputs its way, a column with the job's parity, and a command."""

    @hookimpl
    def register_output_renderers(self, register):
        register("checksum", lambda record: f"digest starts {record['outputs'][0]['value'][:8]}")
        register("fail", lambda record: 1 / 0)  # a broken renderer: its error shows, the pane stands

    @hookimpl
    def register_job_columns(self, register):
        register("parity", lambda job: "even" if job.id % 2 == 0 else None)
        register("", lambda job: "x")  # refused: no name

    @hookimpl
    def register_commands(self, register):
        register(WorkbenchCommand("Remember the selection", "keeps what is selected", self.remember))
        register("not a command")  # refused

    @staticmethod
    def remember(selection: dict) -> str:
        SEEN.append(selection)
        return f"remembered job {selection['job_id']}"


@pytest.fixture
def extensions() -> Iterator[WorkbenchExtensions]:
    pm = get_plugin_manager()
    plugin = WorkbenchPlugin()
    pm.register(plugin, name="workbench-test")
    try:
        registry = load_registry(pm)
        errors = [f.error for f in registry.failures if f.name == "workbench-test"]
        assert [error.split(":")[0] for error in errors] == ["register_job_columns", "register_commands"]
        assert errors[1].endswith("takes one WorkbenchCommand, got ('not a command',)")
        assert registry.commands[0].plugin == "workbench-test"
        yield WorkbenchExtensions.from_registry(registry)
    finally:
        pm.unregister(plugin)


def make(extensions: WorkbenchExtensions):
    from stepflow_tui.tui.app import WorkbenchApp

    return WorkbenchApp(FakeBackend(), clock=fixed_clock, cursor_blink=False, extensions=extensions)


async def test_a_plugin_renders_outputs_adds_a_column_and_a_command(extensions: WorkbenchExtensions):
    app = make(extensions)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 14, 2)
        tree = tree_of(pilot)
        assert "3.0s  even  worker-checksum…" in str(tree.node_for(NodeRef("job", 14, 2, 3002)).label)
        assert "even" not in str(tree.node_for(NodeRef("job", 14, 2, 3001)).label)
        await select(pilot, NodeRef("job", 14, 2, 3002))
        assert "checksum says\ndigest starts 00000000" in detail_text(app)

        app.main_screen.run_plugin_command(extensions.commands[0])
        await settle(pilot)
        assert SEEN[-1] == {"workflow_id": 14, "step_id": 2, "job_id": 3002}
        assert "remembered job 3002" in notifications(app)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert "Remember the selection" in titles


async def test_a_broken_renderer_shows_its_error_in_place(extensions: WorkbenchExtensions):
    app = make(extensions)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_step(pilot, 13, 1)
        await select(pilot, NodeRef("job", 13, 1, 2002))
        text = detail_text(app)
        assert "the renderer of 'fail' failed: ZeroDivisionError" in text and "Job #2002" in text


def test_stepflow_files_renders_its_manifest(tmp_path):
    from stepflow_files import render_manifest

    manifest = tmp_path / "MANIFEST.sha256"
    manifest.write_text("".join(f"{n:064x}  file{n}.txt\n" for n in range(12)))
    record = {"outputs": [{"id": "file_count", "value": 12}], "destination_paths": [str(manifest)]}
    shown = render_manifest(record).splitlines()
    assert shown[0] == f"12 file(s) listed in {manifest}" and len(shown) == 11 and shown[1].endswith("file0.txt")
    gone = render_manifest(dict(record, destination_paths=[str(tmp_path / "elsewhere")]))
    assert "not readable from here" in gone
    assert load_registry().output_renderers["write_manifest"] is render_manifest  # the installed plugin's
