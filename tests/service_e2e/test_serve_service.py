"""`stepflow serve` starts one backend service for its browser sessions (so a second tab attaches instead of
finding the state locked) and stops it when it ends; with a service already running it starts none."""

from __future__ import annotations

import argparse
from pathlib import Path

from stepflow_tui.backend.remote import find_service
from stepflow_tui.cli.ui import _own_service
from stepflow_tui.store.lockfile import read_lock_info


def _args(db: Path) -> argparse.Namespace:
    return argparse.Namespace(db=db, workflows=None, queue_type="classic", api=None, read_only=False)


def test_serve_starts_a_service_for_its_sessions_and_stops_it(tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    service = _own_service(_args(db))
    assert service is not None
    try:
        pid, url = read_lock_info(db)
        assert pid == service.process.pid and url == service.url
        found = find_service(db, env={})
        assert found is not None and found[0] == service.url
        assert _own_service(_args(db)) is None  # a second serve attaches to the running one
    finally:
        service.stop()
    assert service.process.returncode == 0  # SIGTERM: flushed and exited cleanly
    assert read_lock_info(db) == (None, None)
