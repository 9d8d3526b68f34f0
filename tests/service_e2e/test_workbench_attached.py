"""The real workbench in tmux, attached to a running ``stepflow backend``: start a workflow, ``q`` leaves the
service running, the workbench opened again shows the workflow, and the header says where the backend is."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from tui.tmux_harness import Tmux, environment, pick_definition, stepflow_command, workflow_line

from .conftest import Service

pytestmark = [pytest.mark.skipif(shutil.which("tmux") is None, reason="the tmux tests need tmux"),
              pytest.mark.timeout(120)]


def open_workbench(tmux: Tmux, service: Service, tmp_path: Path, run: int) -> Path:
    """``stepflow --db <the service's state>`` in a new tmux session; wait for the header to say attached."""
    exit_file = tmp_path / f"exit-{run}"
    tmux.session = f"{tmux.socket}-{run}"
    tmux.start([*stepflow_command(), "--db", str(service.db)], tmp_path, environment(tmp_path), exit_file)
    tmux.wait_for(lambda screen: f"attached to {service.url}" in screen.splitlines()[0] if screen else False,
                  'the header saying "attached to <url>"')
    return exit_file


def test_quit_leaves_the_service_running_and_reopening_shows_the_workflow(
        tmux: Tmux, service_factory: Callable[[str], Service], memory_url: str, tmp_path: Path) -> None:
    service = service_factory(memory_url)
    service.start()
    exit_file = open_workbench(tmux, service, tmp_path, 1)
    pick_definition(tmux, "many")  # the service's definitions: the workbench's cwd has none
    tmux.wait_text("This workflow takes no parameters.", "the start form")
    tmux.key("Enter")
    tmux.wait_for(lambda screen: "many" in workflow_line(screen, "many"), "the workflow in the tree")
    tmux.key("q")
    tmux.wait_gone("the workbench to exit after q")
    assert exit_file.read_text().strip() == "0"
    assert service.proc.poll() is None, service.log()

    open_workbench(tmux, service, tmp_path, 2)
    screen = tmux.wait_for(lambda screen: "completed" in workflow_line(screen, "many"),
                           "the workflow, run by the service, completed in the reopened workbench")
    assert "#1 many" in workflow_line(screen, "many")
    tmux.key("q")
    tmux.wait_gone("the second workbench to exit")
    assert service.proc.poll() is None
