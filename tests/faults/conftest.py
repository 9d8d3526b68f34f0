"""Fault tests on a real RabbitMQ: the fixtures of tests/rabbitmq (worker and CLI processes, an in-process
backend, waiting on conditions) plus a worker process running the test job types of `chaos_worker`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rabbitmq.conftest import (  # noqa: F401 - fixtures and the report hook, re-exported for this folder
    Processes,
    processes,
    pytest_runtest_makereport,
    start_backend,
)

CHAOS_WORKER = Path(__file__).with_name("chaos_worker.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder needs RabbitMQ (``-m 'not rabbitmq'`` deselects them)."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.rabbitmq)


def start_test_worker(procs: Processes, url: str, effects: Path, *job_types: str, name: str,
                      concurrency: int = 1, prefetch: int | None = None):
    """A `chaos_worker` process (status every second) writing its effects under ``effects``."""
    argv = [sys.executable, str(CHAOS_WORKER), "--broker", url, "--effects", str(effects),
            "--concurrency", str(concurrency), "--status-interval", "1"]
    for job_type in job_types:
        argv += ["--job-type", job_type]
    if prefetch is not None:
        argv += ["--prefetch", str(prefetch)]
    return procs.start(name, argv)
