"""--read-only on a read-only file system: the state is shown as it is (a snapshot), without the lock file it
cannot create, and nothing is ever written."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO_WORKFLOWS, describe, run_cli

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.store import Store, StoreError


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of its own, filled by the test, then remounted read-only (needs mount rights: root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_read_only_opens_a_state_on_a_read_only_file_system(read_only_folder: Path, tmp_path: Path) -> None:
    db = read_only_folder / "state.json"
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    done = run_cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={tmp_path}/m",
                   "--wait", "--workflows", REPO_WORKFLOWS, db=db, cwd=tmp_path)
    assert done.returncode == 0, describe(done)
    (read_only_folder / "state.json.lock").unlink()  # as if the state had been copied there
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_folder)], check=True)
    with pytest.raises(StoreError, match="lock file"):
        Store(db).open()  # an owner needs the lock file

    backend = Backend(BackendConfig(db_path=db, read_only=True))
    backend.start()
    try:
        view = backend.workflow(1)
        assert view is not None and view.status == "completed"
        assert "read-only snapshot" in (backend.connection_reason or "")
    finally:
        backend.stop()
    assert not (read_only_folder / "state.json.lock").exists()
    status = run_cli("status", db=db, cwd=tmp_path)
    assert status.returncode == 0 and "completed" in status.stdout, describe(status)
