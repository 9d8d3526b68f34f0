"""Pilot tests of the workbench on the real `Backend` (embedded ``memory://`` broker, in-process workers):
each action's effect, seen in the tree."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.core.definitions import load_definitions
from stepflow_tui.plugins import load_registry
from stepflow_tui.tui.app import WorkbenchApp
from stepflow_tui.tui.screens.confirm import ConfirmScreen
from stepflow_tui.tui.screens.start import StartForm
from stepflow_tui.tui.widgets.tree import NodeRef, WorkflowTree

REPO_WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows.json"
SIZE = (120, 36)
TIMEOUT = 60.0


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    definitions = {d.identifier: d for d in load_definitions(REPO_WORKFLOWS)}
    config = BackendConfig(broker_url=f"memory://tui-{uuid.uuid4().hex[:8]}", db_path=tmp_path / "state.json",
                           definitions=definitions, registry=load_registry())
    backend = Backend(config)
    backend.start()
    assert backend.wait_until_running(10)
    try:
        yield backend
    finally:
        backend.stop()


def tree_of(pilot: Pilot) -> WorkflowTree:
    return pilot.app.main_screen.tree


async def wait_for(pilot: Pilot, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Let the app run until ``condition()`` holds (fail after ``timeout`` seconds, naming ``what``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def label(pilot: Pilot, ref: NodeRef) -> str:
    node = tree_of(pilot).node_for(ref)
    return str(node.label) if node is not None else ""


async def start_from_form(pilot: Pilot, identifier: str, values: dict[str, str]) -> int:
    """s, pick ``identifier``, fill the form, enter; return the new workflow's id (selected in the tree)."""
    app = pilot.app
    before = set(tree_of(pilot).views)
    await pilot.press("s")
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "DefinitionPicker", "the picker")
    picker = app.screen
    index = [d.identifier for d in picker.definitions].index(identifier)
    options = picker.query_one(OptionList)
    await wait_for(pilot, lambda: options.has_focus, "the definitions list focused")
    options.highlighted = index
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, StartForm), "the start form")
    for parameter_id, value in values.items():
        app.screen.query_one(f"#field-{parameter_id}").value = value
    await pilot.press("enter")
    await wait_for(pilot, lambda: set(tree_of(pilot).views) - before, f"{identifier} in the tree")
    (workflow_id,) = set(tree_of(pilot).views) - before
    await wait_for(pilot, lambda: tree_of(pilot).selected_ref == NodeRef("workflow", workflow_id),
                   "the new workflow selected")
    return workflow_id


async def confirm(pilot: Pilot) -> None:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen), "the confirmation")
    await pilot.press("y")


async def test_start_checksum_folder_completes_in_the_tree(backend: Backend, tmp_path: Path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_bytes(b"alpha")
    (data / "sub" / "b.txt").write_bytes(b"beta")
    manifest = tmp_path / "manifest.sha256"
    app = WorkbenchApp(backend)
    async with app.run_test(size=SIZE) as pilot:
        workflow_id = await start_from_form(pilot, "checksum_folder",
                                            {"source_dir": str(data), "manifest": str(manifest)})
        ref = NodeRef("workflow", workflow_id)
        await wait_for(pilot, lambda: "completed" in label(pilot, ref), "checksum_folder completed")
        assert "completed" in label(pilot, NodeRef("step", workflow_id, 2))
    assert hashlib.sha256(b"alpha").hexdigest() in manifest.read_text()


async def test_retry_of_the_failing_job_runs_it_again(backend: Backend, tmp_path: Path):
    marker = tmp_path / "fixed"
    app = WorkbenchApp(backend)
    async with app.run_test(size=SIZE) as pilot:
        workflow_id = await start_from_form(pilot, "failing_demo", {"marker": str(marker)})
        ref = NodeRef("workflow", workflow_id)
        await wait_for(pilot, lambda: "error" in label(pilot, ref), "failing_demo in error")
        tree = tree_of(pilot)
        tree.node_for(NodeRef("step", workflow_id, 2)).expand()
        await wait_for(pilot, lambda: tree.loaded_count(workflow_id, 2) == 1, "the failed job listed")
        job_id = next(iter(tree.visible_job_ids))
        assert tree.reveal(NodeRef("job", workflow_id, 2, job_id))
        marker.write_text("now the job can succeed")
        await pilot.press("r")
        await wait_for(pilot, lambda: "completed" in label(pilot, ref), "failing_demo completed after the retry")
        assert "completed" in label(pilot, NodeRef("job", workflow_id, 2, job_id))
        assert backend.job(job_id)["retries"] >= 1


async def test_abort_a_running_workflow(backend: Backend):
    app = WorkbenchApp(backend)
    async with app.run_test(size=SIZE) as pilot:
        workflow_id = await start_from_form(pilot, "fanout_demo", {})
        await pilot.press("a")
        await confirm(pilot)
        ref = NodeRef("workflow", workflow_id)
        await wait_for(pilot, lambda: "aborted" in label(pilot, ref), "fanout_demo aborted")
        assert backend.workflow(workflow_id).status == "aborted"


async def test_pause_then_resume(backend: Backend):
    app = WorkbenchApp(backend)
    async with app.run_test(size=SIZE) as pilot:
        workflow_id = await start_from_form(pilot, "fanout_demo", {})
        ref = NodeRef("workflow", workflow_id)
        await pilot.press("p")
        await wait_for(pilot, lambda: "paused" in label(pilot, ref), "the workflow paused")
        assert backend.workflow(workflow_id).paused
        await pilot.press("p")
        await wait_for(pilot, lambda: "completed" in label(pilot, ref), "the resumed workflow completed")


async def test_delete_a_finished_workflow(backend: Backend, tmp_path: Path):
    app = WorkbenchApp(backend)
    async with app.run_test(size=SIZE) as pilot:
        workflow_id = await start_from_form(pilot, "failing_demo", {"marker": str(tmp_path / "absent")})
        ref = NodeRef("workflow", workflow_id)
        await wait_for(pilot, lambda: "error" in label(pilot, ref), "failing_demo in error")
        await pilot.press("d")
        await confirm(pilot)
        await wait_for(pilot, lambda: tree_of(pilot).node_for(ref) is None, "the workflow gone from the tree")
        assert backend.workflow(workflow_id) is None
