"""Smoke test of the benchmarks in bench/: each runs with a tiny N, exits 0 and prints its figures last.

No timing is asserted (the figures depend on the machine); this only keeps the benchmarks runnable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
TIMEOUT = 120


def run_bench(script: str, *args: str) -> list[str]:
    """Run ``bench/<script>`` with ``args``; return its stdout lines (fail with its output on a bad exit)."""
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, f"{script} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip().splitlines()


def test_throughput_memory() -> None:
    lines = run_bench("throughput.py", "--broker", "memory://", "--jobs", "200", "--runs", "1")
    assert lines[-2].startswith("throughput: memory://, 200 jobs")
    assert lines[-1].startswith("stepflow: ") and lines[-1].endswith(" jobs/s")


@pytest.mark.rabbitmq
def test_throughput_rabbitmq_with_baseline(rabbitmq_url: str) -> None:
    # The bench makes vhosts of its own from the URL it is given; the fixture only checks RabbitMQ is there.
    base = rabbitmq_url.rsplit("/", 1)[0] + "/"
    lines = run_bench("throughput.py", "--broker", base, "--jobs", "100", "--workers", "1", "--runs", "1")
    assert lines[-4].startswith("throughput: amqp://") and "1 worker processes" in lines[-4]
    assert lines[-3].startswith("stepflow: ") and lines[-3].endswith(" jobs/s")
    assert lines[-2].startswith("raw pika: ") and lines[-2].endswith(" jobs/s")
    assert lines[-1].startswith("ratio: ")
    float(lines[-1].split()[1])  # a number


def test_scale() -> None:
    lines = run_bench("scale.py", "--jobs", "300", "--restarts", "1")
    expected = ["scale: 300 jobs", "total: ", "first tenth: ", "peak RSS: ", "state: ", "restart: ready in ",
                "written: "]
    assert [line[:len(prefix)] for line, prefix in zip(lines[-7:], expected, strict=True)] == expected
    assert "300 jobs loaded" in lines[-2] and lines[-1].endswith(" bytes per job")


def test_history() -> None:
    lines = run_bench("history.py", "--jobs", "600", "--workflows", "2", "--new", "100", "--runs", "1")
    assert lines[-3].startswith("history: built 600 finished jobs in 2 workflows")
    assert lines[-2].startswith("empty state: ready ")
    assert lines[-1].startswith("history: 600 jobs; ready ") and lines[-1].endswith(" x empty state")


@pytest.mark.rabbitmq
def test_peers(rabbitmq_url: str) -> None:
    # .ci/run installs only the README's test command (no `bench` extra): there this is skipped.
    pytest.importorskip("celery", reason="celery is not installed (pip install -e '.[bench]')")
    base = rabbitmq_url.rsplit("/", 1)[0] + "/"
    lines = run_bench("peers.py", "--broker", base, "--jobs", "100", "--runs", "1")
    assert lines[-1].startswith("peers: stepflow ") and "; raw pika " in lines[-1] and "; celery " in lines[-1]
    float(lines[-1].rsplit("stepflow/celery ", 1)[1])  # a number


def test_tui() -> None:
    lines = run_bench("tui.py", "--jobs", "1500", "--pages", "5")
    expected = ["tui: a workflow of 1,500 jobs", "first show: ", "expand the big step: ", "paging: 5 pages",
                "1,000 job updates: applied", "garbage collector: "]
    assert [line[:len(prefix)] for line, prefix in zip(lines[-6:], expected, strict=True)] == expected


def test_tui_live() -> None:
    lines = run_bench("tui.py", "--jobs", "3000", "--pages", "3", "--live")
    expected = ["tui: a workflow of 3,000 jobs", "first show: ", "expand the big step: ", "paging: 3 pages",
                "while paging, the workflow ran on: "]
    assert [line[:len(prefix)] for line, prefix in zip(lines[-5:], expected, strict=True)] == expected


def test_service() -> None:
    lines = run_bench("service.py", "--jobs", "300", "--requests", "10", "--live", "50", "--completions", "2")
    expected = ["service: 300 jobs", "list workflows: p50 ", "workflow detail: p50 ", "jobs page (200): p50 ",
                "job record: p50 ", "completion seen by an attached client: median "]
    assert [line[:len(prefix)] for line, prefix in zip(lines[-6:], expected, strict=True)] == expected
