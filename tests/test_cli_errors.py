"""The CLI on errors a user meets: a reader that stops early, a mistyped state path, input too big or too deep.
Each ends with one line and a documented exit status, never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import cli_command, cli_env
from test_store import add_job, add_workflow

from stepflow_tui.store import Store


def many_workflows(path: Path, count: int) -> Path:
    store = Store(path)
    state = store.open()
    for _ in range(count):
        add_job(state, add_workflow(state), 0)
    store.flush(state)
    store.close()
    return path


def test_status_into_a_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    db = many_workflows(tmp_path / "state.json", 2000)  # far more than a pipe's buffer
    proc = subprocess.Popen(cli_command("status", "--db", db), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli_env(home=tmp_path), cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # `stepflow status | head -1`
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert first.startswith(b"#1 ")
    assert stderr == ""
