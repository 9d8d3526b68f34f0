"""Shared fixtures. Brokers: ``rabbitmq_url`` (a fresh RabbitMQ vhost per test) and ``broker_url`` (each
broker-semantics test runs on ``memory://`` and on RabbitMQ)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from backend_harness import Harness
from stepflow_features import Hooks

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker.memory_broker import MemoryBroker
from stepflow_tui.core.definitions import merge_definitions, parse_definitions
from stepflow_tui.plugins import Registry
from stepflow_tui.worker.context import JobContext

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def _base_amqp_url() -> str:
    return os.environ.get("STEPFLOW_TEST_AMQP_URL", DEFAULT_AMQP_URL)


def _rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl`` (~0.5-1 s a call: keep the count down); raise with its output on failure."""
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")


@pytest.fixture(scope="session")
def _rabbitmq_unavailable() -> str | None:
    """Why RabbitMQ cannot be used for tests, or None when it can (checked once per session)."""
    parts = urlsplit(_base_amqp_url())
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on PATH (needed to create a vhost per test)"
    try:
        with socket.create_connection((host, port), timeout=2):
            pass
    except OSError as exc:
        return f"RabbitMQ is not reachable at {host}:{port} ({exc})"
    return None


@pytest.fixture
def rabbitmq_url(_rabbitmq_unavailable: str | None) -> Iterator[str]:
    """An ``amqp://`` URL to a fresh vhost (deleted afterwards), so tests never see each other's queues.
    Skips without RabbitMQ, unless STEPFLOW_REQUIRE_RABBITMQ=1 (then the test fails)."""
    if _rabbitmq_unavailable is not None:
        if os.environ.get("STEPFLOW_REQUIRE_RABBITMQ") == "1":
            pytest.fail(f"STEPFLOW_REQUIRE_RABBITMQ=1 but {_rabbitmq_unavailable}")
        pytest.skip(_rabbitmq_unavailable)
    vhost = f"stepflow-test-{uuid.uuid4().hex[:12]}"
    base = urlsplit(_base_amqp_url())
    user = base.username or "guest"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield urlunsplit(base._replace(path="/" + quote(vhost, safe="")))
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A ``memory://`` URL naming a broker of its own, forgotten afterwards."""
    url = f"memory://test-{uuid.uuid4().hex[:12]}"
    yield url
    MemoryBroker.drop(url)


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs twice: on an embedded broker of its own and on a fresh RabbitMQ vhost."""
    if request.param == "memory":
        return request.getfixturevalue("memory_url")
    return request.getfixturevalue("rabbitmq_url")


#: Tests that run real processes, real terminals or a real RabbitMQ: the end-to-end kind (`-m e2e`).
#: `pytest -m "not e2e and not ui"` is the fast feedback loop (pure logic, the embedded broker, in-process
#: backends); `-m ui` the workbench on fakes (pilot and snapshots).
E2E_FOLDERS = ("rabbitmq", "faults", "service_e2e", "sdk")
E2E_FILES = ("test_tmux.py", "test_real_backend.py", "test_bench_smoke.py", "test_worker_isolation.py",
             "test_cli_resume.py", "test_cli.py", "test_cli_errors.py", "test_cli_service.py", "test_ops.py",
             "test_broker_failures.py")  # these run `stepflow` as a process


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.path
        if (path.parent.name in E2E_FOLDERS or path.name in E2E_FILES or "rabbitmq_url" in item.fixturenames
                or item.get_closest_marker("rabbitmq")):
            item.add_marker(pytest.mark.e2e)
        elif path.parent.name == "tui":  # the workbench driven through Textual's pilot, on fakes
            item.add_marker(pytest.mark.ui)


@pytest.fixture
def start_backend(memory_url: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """A backend on this test's embedded broker; ``workers`` (job type -> implementation) run in-process."""
    started: list[Backend] = []

    def start(workflows: list[dict[str, Any]], workers: dict[str, Callable[[JobContext], Any]] | None = None,
              status_interval: float = 5.0) -> Harness:
        backend = Backend(BackendConfig(
            broker_url=memory_url, db_path=tmp_path / "state.json",
            definitions=merge_definitions([parse_definitions(workflows, "test workflows")]),
            registry=Registry(workers=dict(workers)) if workers else None, local_workers=bool(workers),
            worker_status_interval=status_interval))
        backend.start()
        started.append(backend)
        assert backend.wait_until_running(10), backend.last_error
        return Harness(backend)

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    """A local webhook receiver (tests/stepflow_features.py), shut down after the test."""
    with Hooks() as receiver:
        yield receiver
