"""The layering contract: the TUI imports the backend's interface (`stepflow_tui.backend`, its views) and nothing
deeper: never ``broker``, ``core``, ``ops``, ``store`` or ``worker`` directly."""

from __future__ import annotations

import ast
from pathlib import Path

import stepflow_tui.tui

ALLOWED = ("stepflow_tui", "stepflow_tui.backend", "stepflow_tui.backend.views", "stepflow_tui.api")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def test_the_tui_imports_only_the_backend_interface():
    package = Path(stepflow_tui.tui.__file__).parent
    wrong = [f"{path.relative_to(package)}: {name}"
             for path in sorted(package.rglob("*.py")) for name in imported_modules(path)
             if name.startswith("stepflow_tui") and not name.startswith("stepflow_tui.tui")
             and name not in ALLOWED]
    assert wrong == []
