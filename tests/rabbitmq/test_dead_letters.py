"""Dead letters on RabbitMQ through the CLI: `stepflow dead-letters` consumes nothing, `stepflow redrive`
sends orders back and a worker then completes the stuck workflow; the confirmation on a terminal; a wrong
password never printed by any command."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from helpers import cli_env

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import OutgoingMessage, connect

from .conftest import (
    Processes,
    assert_each_completed_once,
    fan_out_step,
    publish_raw,
    queue_counts,
    wait_consumers,
    wait_for,
    workflow,
    write_workflows,
)

SECRET = "Zq9-wrong-and-not-printed-7Hk"


def stepflow(*args: str | os.PathLike[str], cwd: Path, stdin: int | None = subprocess.DEVNULL,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stepflow_tui", *map(str, args)], cwd=cwd,
                          env=cli_env(None, cwd / ".xdg-state"), capture_output=True, text=True, stdin=stdin,
                          timeout=timeout)


def dead_count(url: str) -> int:
    return (queue_counts(url, topology.JOB_DEAD_LETTER) or (0, 0))[0]


def kill_orders(url: str, queue: str, count: int) -> None:
    """Move ``count`` orders waiting in ``queue`` to job_dead_letter (basic_get + dead_letter, as a worker that
    refuses them for good does)."""
    conn = connect(url, name="test-kill-orders")
    try:
        for _ in range(count):
            delivery = wait_for(lambda: conn.get(queue), 10, f"an order in {queue}")
            conn.dead_letter(delivery)
    finally:
        conn.close()


def test_dead_letters_lists_without_consuming(rabbitmq_url: str, tmp_path: Path) -> None:
    conn = connect(rabbitmq_url)
    try:
        conn.declare_backend_topology()
        conn.declare_job_queue("noop")
    finally:
        conn.close()
    publish_raw(rabbitmq_url, [(topology.JOB_SUBMIT, "job_noop", b'{"job_id": %d}' % i) for i in (1, 2, 3)])
    kill_orders(rabbitmq_url, "job_noop", 3)
    publish_raw(rabbitmq_url, [(topology.JOB_RESPONSE, "job_completed", b"\x1b]0;pwned\x07 not json")])
    conn = connect(rabbitmq_url)
    try:
        delivery = wait_for(lambda: conn.get("job_completed"), 10, "the garbage response")
        conn.reject(delivery.delivery_tag, requeue=False)
    finally:
        conn.close()
    wait_for(lambda: dead_count(rabbitmq_url) == 4, 10, "4 dead letters")

    listed = []
    for _ in range(2):  # twice: the first look took nothing away and kept the order
        result = stepflow("dead-letters", "--json", "--broker", rabbitmq_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        listed.append(json.loads(result.stdout))
    assert listed[0] == listed[1]
    data = listed[0]
    assert data["total"] == 4 and "guest:***@" in data["broker"]
    assert [(m["original_queue"], m["reason"], m["excerpt"]) for m in data["messages"]] == [
        ("job_noop", "rejected", '{"job_id": 1}'), ("job_noop", "rejected", '{"job_id": 2}'),
        ("job_noop", "rejected", '{"job_id": 3}'), ("job_completed", "rejected", "\\x1b]0;pwned\\x07 not json")]
    assert dead_count(rabbitmq_url) == 4

    text = stepflow("dead-letters", "--limit", "2", "--broker", rabbitmq_url, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "4 message(s), the first 2 shown" in text.stdout
    assert "1. from job_noop (rejected at " in text.stdout and '{"job_id": 2}' in text.stdout
    assert "\x1b" not in text.stdout  # a hostile payload cannot drive the terminal


def test_redrive_sends_dead_orders_back_and_the_workflow_completes(rabbitmq_url: str, tmp_path: Path,
                                                                   processes: Processes, start_backend) -> None:
    jobs = 6
    conn = connect(rabbitmq_url)
    try:
        conn.declare_job_queue("noop")  # as a worker that is gone now would have: the orders wait there
    finally:
        conn.close()
    harness = start_backend([workflow("stuck", [fan_out_step("noop", jobs)])])
    workflow_id = harness.start_workflow("stuck")
    wait_for(lambda: (queue_counts(rabbitmq_url, "job_noop") or (0, 0))[0] == jobs, 30, "the orders")
    kill_orders(rabbitmq_url, "job_noop", jobs)
    publish_raw(rabbitmq_url, [(topology.JOB_DEAD_LETTER, "by.hand", b"no x-death here")])
    wait_for(lambda: dead_count(rabbitmq_url) == jobs + 1, 10, "the dead letters")

    dry = stepflow("redrive", "--dry-run", "--broker", rabbitmq_url, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"{jobs} dead letter(s) to send back" in dry.stdout and f"{jobs}  job_noop" in dry.stdout
    assert "1  without x-death" in dry.stdout
    assert dead_count(rabbitmq_url) == jobs + 1

    other = stepflow("redrive", "--queue", "job_sleep", "--broker", rabbitmq_url, cwd=tmp_path)
    assert other.returncode == 0 and "nothing to redrive from job_sleep" in other.stdout, other.stdout
    assert f"{jobs} from other queues stay: {jobs} job_noop" in other.stdout

    processes.worker(rabbitmq_url, "noop", concurrency=2, name="worker")
    wait_consumers(rabbitmq_url, "job_noop", 1)
    # not a terminal: no question asked
    sent = stepflow("redrive", "--queue", "noop", "--broker", rabbitmq_url, cwd=tmp_path)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert f"redriven {jobs} message(s): {jobs} to job_noop" in sent.stdout
    assert "kept #" in sent.stdout and "no x-death here" in sent.stdout

    assert harness.wait_finished(workflow_id, 60) == "completed"
    assert_each_completed_once(harness.jobs(workflow_id), jobs)
    left = json.loads(stepflow("dead-letters", "--json", "--broker", rabbitmq_url, cwd=tmp_path).stdout)
    assert [m["excerpt"] for m in left["messages"]] == ["no x-death here"]


def answer_on_a_terminal(args: list[str], answer: str, cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin and stdout; type ``answer`` once it asks."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stepflow_tui", *args], cwd=cwd, stdin=terminal,
                            stdout=terminal, stderr=terminal, env=cli_env(None, cwd / ".xdg-state"))
    os.close(terminal)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the child closed the terminal: it exited
                    break
                if not chunk:
                    break
                output += chunk
            if not answered and b"[y/N]" in output:
                os.write(controller, answer.encode() + b"\n")
                answered = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=10), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)


def test_redrive_asks_on_a_terminal(rabbitmq_url: str, tmp_path: Path) -> None:
    conn = connect(rabbitmq_url)
    try:
        conn.declare_job_queue("noop")
        conn.publish([OutgoingMessage(topology.JOB_SUBMIT, "job_noop", b'{"job_id": 7}')])
    finally:
        conn.close()
    kill_orders(rabbitmq_url, "job_noop", 1)
    wait_for(lambda: dead_count(rabbitmq_url) == 1, 10, "the dead letter")

    code, output = answer_on_a_terminal(["redrive", "--broker", rabbitmq_url], "n", tmp_path)
    assert code == 1 and "redrive 1 message(s) to their queues? [y/N]" in output and "nothing sent" in output
    assert dead_count(rabbitmq_url) == 1

    code, output = answer_on_a_terminal(["redrive", "--broker", rabbitmq_url], "y", tmp_path)
    assert code == 0 and "redriven 1 message(s): 1 to job_noop" in output, output
    wait_for(lambda: (queue_counts(rabbitmq_url, "job_noop") or (0, 0))[0] == 1, 10, "the order back")
    assert dead_count(rabbitmq_url) == 0


def test_wrong_password_is_never_printed(rabbitmq_url: str, tmp_path: Path) -> None:
    parts = urlsplit(rabbitmq_url)
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:{SECRET}@{parts.hostname}:{parts.port}"))
    definitions = write_workflows(tmp_path / "workflows.json", [workflow("quick", [fan_out_step("noop", 1)])])
    db = tmp_path / "state.json"
    for args in (["queues"], ["dead-letters"], ["redrive", "--yes"], ["worker", "--job-type", "noop"],
                 ["status", "--json"]):
        result = stepflow(*args, "--broker", wrong, "-vv", "--workflows", definitions, "--db", db, cwd=tmp_path)
        output = result.stdout + result.stderr
        assert SECRET not in output, output
        if args[0] != "status":  # status reads the state file only
            assert result.returncode in (1, 2) and "access refused" in output and ":***@" in output, output
    # run: the backend keeps trying (an operator may fix the user's rights meanwhile); it says why, masked
    proc = subprocess.Popen([sys.executable, "-m", "stepflow_tui", "run", "quick", "--wait", "--broker", wrong,
                             "-vv", "--workflows", definitions, "--db", db], cwd=tmp_path, text=True,
                            env=cli_env(None, tmp_path / ".xdg-state"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    out = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while "access refused" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out += proc.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out += proc.communicate(timeout=10)[0]
    assert "access refused" in out and ":***@" in out and SECRET not in out, out
