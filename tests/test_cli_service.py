"""`stepflow credentials` (value from standard input, keys listed, never a value printed), `stepflow backend`'s
usage errors and SIGINT, and `--api` pointing at nothing: one line, exit 2."""

from __future__ import annotations

import signal
import stat
import subprocess
import uuid
from pathlib import Path

from helpers import cli_command, cli_env, run_cli, start_cli, wait_for

from stepflow_tui.store.lockfile import read_lock_info


def credentials(db: Path, *args: str, value: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_command("credentials", *args, "--db", str(db)), input=value or "", text=True,
                          capture_output=True, timeout=60, env=cli_env(home=db.parent / ".xdg"))


def test_credentials_set_list_delete(tmp_path: Path) -> None:
    db = tmp_path / "state" / "state.json"  # its folder does not exist yet
    result = credentials(db, "set", "S3_SECRET", value="s3cr3t-value\n")
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr
    stored = db.with_name("state.json.credentials")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and "s3cr3t-value" in stored.read_text()
    assert "s3cr3t-value" not in (db.read_text() if db.exists() else "")  # never in the state file
    listed = credentials(db, "list")
    assert listed.returncode == 0 and listed.stdout.split() == ["S3_SECRET"]
    assert credentials(db, "delete", "S3_SECRET").returncode == 0
    assert credentials(db, "list").stdout == ""
    missing = credentials(db, "delete", "S3_SECRET")
    assert missing.returncode == 2 and "no credential" in missing.stderr
    for args, value in [(("set", "bad key"), "v"), (("set", "K"), ""), ((), None)]:
        refused = credentials(db, *args, value=value)
        assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "Traceback" not in refused.stderr


def test_backend_usage_errors_are_one_line(tmp_path: Path) -> None:
    result = run_cli("backend", "--listen", "nowhere", db=tmp_path / "state.json", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("stepflow: --listen 'nowhere': expected HOST:PORT")
    unreachable = run_cli("status", "--api", "http://127.0.0.1:9", db=tmp_path / "state.json", cwd=tmp_path)
    assert unreachable.returncode == 2 and "no stepflow service answers at http://127.0.0.1:9" in unreachable.stderr
    assert len(unreachable.stderr.splitlines()) == 1


def test_backend_serves_until_sigint_then_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    proc = start_cli("backend", "--broker", f"memory://cli-{uuid.uuid4().hex[:8]}", "--listen", "127.0.0.1:0",
                     db=db, cwd=tmp_path)
    try:
        url = wait_for(lambda: proc.poll() is None and read_lock_info(db)[1], 60, "the service's URL")
        status = run_cli("status", db=db, cwd=tmp_path)
        assert status.returncode == 0 and status.stdout.strip() == f"no workflows in {url}", status.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert f"serving the API on {url}" in stderr and "Traceback" not in stderr
