"""The plugin API is one import, and the example plugin uses nothing deeper."""

from __future__ import annotations

import ast
from pathlib import Path

import stepflow_tui

ROOT = Path(__file__).resolve().parents[1]


def test_plugin_api_names_come_from_the_package_top() -> None:
    from stepflow_tui import JobCancelled, JobContext, JobResult, JobType, hookimpl

    assert hookimpl.project_name == "stepflow_tui"
    assert issubclass(JobCancelled, Exception)
    assert {"JobCancelled", "JobContext", "JobResult", "JobType", "hookimpl"} <= set(stepflow_tui.__all__)
    assert JobType("x", "X").queue == "job_x"
    assert JobResult().destination_paths == []
    assert JobContext.__name__ == "JobContext"


def _stepflow_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stepflow_tui"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("stepflow_tui"))
    return found


def test_stepflow_files_imports_nothing_deeper_than_the_package_top() -> None:
    sources = list((ROOT / "plugins" / "stepflow-files" / "stepflow_files").rglob("*.py"))
    assert sources
    deeper = {str(p.relative_to(ROOT)): m for p in sources for m in _stepflow_imports(p) if m != "stepflow_tui"}
    assert deeper == {}
