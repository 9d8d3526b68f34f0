"""Permanent and transient broker failures, as commands meet them. Permanent (a refused login, a missing vhost,
a user without password, an unusable URL, a CA file that is not PEM): one line, exit 2, at once, and nothing
started. Transient (nobody listening): a countdown on stderr, then exit 1 after --connect-timeout with the last
reason. A state file that cannot be written ends `run --wait` after the last good save."""

from __future__ import annotations

import errno
import io
import socket
import subprocess
import time
from pathlib import Path

import pytest
from helpers import REPO_WORKFLOWS, describe, run_cli

from stepflow_tui.broker.base import connect
from stepflow_tui.store import read_state


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    # (the countdown, and a headless worker's INFO lines, are not errors)
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith(("run: broker unreachable", "INFO ")) and " INFO " not in line[:40]]
    assert len(lines) == 1, describe(result)
    return lines[0]


def start_args(tmp_path: Path) -> list[str]:
    source = tmp_path / "data"
    source.mkdir(exist_ok=True)
    return ["checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={tmp_path}/m", "--workflows",
            str(REPO_WORKFLOWS)]


def permanent_urls(rabbitmq_url: str) -> dict[str, str]:
    base, _, vhost = rabbitmq_url.rpartition("/")
    return {
        "wrong password": rabbitmq_url.replace("guest:guest@", "guest:Wr0ng-pw@"),
        "missing vhost": f"{base}/{vhost}-missing",
        "user without password": rabbitmq_url.replace("guest:guest@", "guest@"),
        "port not a number": rabbitmq_url.replace(":5672", ":56x2"),
    }


@pytest.mark.rabbitmq
def test_permanent_failures_end_every_command_at_once_with_exit_2(rabbitmq_url: str, tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    queue_owner = connect(rabbitmq_url)  # the job queue exists (as if a worker had been there): orders wait in it
    queue_owner.declare_job_queue("list_files")
    queue_owner.close()
    started = run_cli("run", *start_args(tmp_path), "--broker", rabbitmq_url, db=db, cwd=tmp_path)
    assert started.returncode == 0, describe(started)  # workflow 1, left processing (no worker)
    slowest = 0.0
    for what, url in permanent_urls(rabbitmq_url).items():
        for args in (["run", *start_args(tmp_path), "--wait"], ["run", *start_args(tmp_path)], ["wait", "1"],
                     ["queues"], ["dead-letters"], ["worker", "--job-type", "checksum"]):
            began = time.monotonic()
            result = run_cli(*args, "--broker", url, db=db, cwd=tmp_path, timeout=60)
            slowest = max(slowest, time.monotonic() - began)
            line = one_line(result, 2)
            # (a missing vhost is another broker for the state's unfinished workflow: refused before connecting)
            shown = "***" in line or what == "user without password" or "were started on" in line
            assert "Wr0ng" not in line and shown, (what, args, line)
    assert slowest < 15, f"a permanent failure took {slowest:.1f} s to be reported"
    assert sorted(read_state(db).workflows) == [1]  # nothing started that could not be sent


def test_a_ca_file_that_is_not_pem_is_permanent(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("this is not a certificate\n")
    url = f"amqps://u:Zq9-secret@127.0.0.1:{closed_port()}/"
    for args in (["queues"], ["run", *start_args(tmp_path), "--wait"]):
        line = one_line(run_cli(*args, "--broker", url, "--ca-file", ca, db=tmp_path / "s.json", cwd=tmp_path), 2)
        assert "cannot load TLS files" in line and "Zq9-secret" not in line, line


def test_nobody_listening_is_retried_with_a_countdown_then_given_up(tmp_path: Path) -> None:
    url = f"amqp://u:Zq9-secret@127.0.0.1:{closed_port()}/"
    for args in (["run", *start_args(tmp_path), "--wait"], ["queues"]):
        began = time.monotonic()
        result = run_cli(*args, "--broker", url, "--connect-timeout", "3", db=tmp_path / "s.json", cwd=tmp_path)
        took = time.monotonic() - began
        assert result.returncode == 1, describe(result)
        assert 3 <= took < 30, took
        assert "retrying, giving up in" in result.stderr, describe(result)  # the countdown
        last = result.stderr.strip().splitlines()[-1]
        assert "unreachable for 3 s (--connect-timeout)" in last and "connection refused" in last, last
        assert "Zq9-secret" not in result.stderr and "Traceback" not in result.stderr
    assert read_state(tmp_path / "s.json").workflows == {}


def test_a_full_disk_ends_run_wait_after_the_last_good_save(start_backend, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import threading

    from backend_harness import definition, step

    from stepflow_tui.cli.follow import follow
    from stepflow_tui.store import store as store_module

    gate = threading.Event()

    def slow(ctx):  # noqa: ANN001, ANN202 - a job implementation
        gate.wait(10)
        return {}

    harness = start_backend([definition("t", step(1, "slow", count=20))], {"slow": slow})
    workflow_id = harness.start("t")

    def full(path, data, sync_dir=True):  # noqa: ANN001, ANN202 - atomic_write's signature
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "atomic_write", full)
    gate.set()
    began = time.monotonic()
    assert follow(harness.backend, workflow_id, io.StringIO(), command="run", connect_timeout=30) == 1
    assert time.monotonic() - began < 15
    error = capsys.readouterr().err
    assert "No space left on device" in error and "not saved" in error, error
