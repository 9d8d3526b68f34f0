"""`stepflow worker` says when it starts (broker masked, job types, concurrency) and when it stops, by default."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from helpers import cli_command, cli_env


def test_worker_logs_a_start_and_a_stop_line_without_v(rabbitmq_url: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(cli_command("worker", "--broker", rabbitmq_url, "--job-type", "noop",
                                        "--concurrency", "3"),
                            cwd=tmp_path, env=cli_env(None, tmp_path / ".xdg-state"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # blocks until the worker says something: the start line
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    password = rabbitmq_url.split("@")[0].rsplit(":", 1)[-1]  # guest, like the user: look for it before @
    assert "started on amqp://" in first and "job types noop; concurrency 3, prefetch 3" in first, first
    assert f":{password}@" not in first and ":***@" in first
    assert "stopped" in rest.splitlines()[-1], rest
    assert proc.returncode == 0
