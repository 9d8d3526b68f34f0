"""The backend's collaborators: imports run one way (the `Backend` facade -> collaborators), and the one
lost-worker rule."""

from __future__ import annotations

from pathlib import Path

import layering
import pytest

from stepflow_tui.backend.workers import is_lost

BACKEND = Path(__file__).resolve().parent.parent / "stepflow_tui" / "backend"
COLLABORATORS = sorted(p for p in BACKEND.glob("*.py") if p.name not in ("backend.py", "__init__.py"))


@pytest.mark.parametrize("path", COLLABORATORS, ids=lambda p: p.name)
def test_collaborators_do_not_import_the_facade(path: Path) -> None:
    names = {name for _, name in layering.imports_of(path, f"stepflow_tui.backend.{path.stem}")}
    assert "stepflow_tui.backend.backend" not in names


def test_a_worker_is_lost_after_three_status_intervals() -> None:
    assert not is_lost(seen=100.0, interval=5.0, now=115.0)
    assert is_lost(seen=100.0, interval=5.0, now=115.1)
