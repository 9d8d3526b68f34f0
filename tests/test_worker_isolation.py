"""The headless worker never imports textual (the TUI's weight and start-up time have no place on a worker
machine). Checked in fresh interpreters, as harlequin does for its core."""

from __future__ import annotations

import subprocess
import sys

import pytest

RUNNER_IMPORT = """
import sys
import stepflow_tui.worker.runner
from stepflow_tui.plugins import load_registry
registry = load_registry()  # the built-in plugins are loaded by every headless worker
assert "noop" in registry.workers, sorted(registry.workers)
leaked = sorted(name for name in sys.modules if name == "textual" or name.startswith("textual."))
sys.exit(f"textual imported by the worker: {leaked}" if leaked else 0)
"""

MAIN_HELP = """
import runpy, sys
sys.argv = ["stepflow_tui.worker", "--help"]
try:
    runpy.run_module("stepflow_tui.worker", run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
leaked = sorted(name for name in sys.modules if name == "textual" or name.startswith("textual."))
sys.exit(f"textual imported by python -m stepflow_tui.worker: {leaked}" if leaked else 0)
"""


@pytest.mark.parametrize("script", [RUNNER_IMPORT, MAIN_HELP], ids=["runner", "main-help"])
def test_worker_does_not_import_textual(script: str) -> None:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={"STEPFLOW_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr or result.stdout


def test_main_help_lists_the_worker_options() -> None:
    result = subprocess.run([sys.executable, "-m", "stepflow_tui.worker", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--broker", "--job-type", "--concurrency", "--prefetch", "--status-interval"):
        assert option in result.stdout


LAYERS_IMPORT = """
import sys
import stepflow_tui.worker
import stepflow_tui.worker.headless
from stepflow_tui.worker.headless import run_headless
from stepflow_tui.worker.runner import Worker
from stepflow_tui.plugins import load_registry
load_registry()
layers = ("textual", "tinydb", "stepflow_tui.tui", "stepflow_tui.backend", "stepflow_tui.store")
leaked = sorted(name for name in sys.modules if name.startswith(layers))
sys.exit(f"imported by the worker: {leaked}" if leaked else 0)
"""


def test_worker_imports_no_tui_backend_or_store() -> None:
    # The worker's layering contract: it runs jobs over the broker and knows nothing of the workbench's state.
    result = subprocess.run([sys.executable, "-c", LAYERS_IMPORT], capture_output=True, text=True, timeout=60,
                            env={"STEPFLOW_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr or result.stdout
