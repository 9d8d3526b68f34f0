"""Fixtures for the tests with Media Cloud AI's real worker SDK (``mcai-worker-sdk``, a test dependency): our
own SDK worker (``worker_app/worker.py``) run as a process with its environment, a real `Backend` on the
test's fresh vhost served by the real HTTP API (the endpoints the SDK calls), and `stepflow worker` processes.
Nothing stubs the SDK or our API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from helpers import wait_for
from rabbitmq.conftest import (  # the RabbitMQ harness: these tests add the SDK to it
    BackendHarness,
    Processes,
    fan_out_step,
    queue_counts,
    wait_consumers,
    workflow,
)

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.core.definitions import merge_definitions, parse_definitions
from stepflow_tui.service import CredentialStore, ServiceThread, create_app

__all__ = ["BackendHarness", "Processes", "SdkWorkers", "Stack", "fan_out_step", "queue_counts", "wait_consumers",
           "workflow"]

WORKER_APP = Path(__file__).parent / "worker_app"
#: The full API token: the SDK logs in with it as BACKEND_PASSWORD (credentials need the full token).
TOKEN = "sdk-tests-full-token"
SDK_TYPE = "sdktest"  # the SDK worker's job type (queue job_sdktest) unless a test says otherwise
LABEL = "stepflow_sdk_test_worker"  # its name in worker_app/pyproject.toml


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs RabbitMQ."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.rabbitmq)


@dataclass
class Stack:
    """Our side: the HTTP API up from the start (the SDK calls it before anything else), the backend's broker
    connection opened by `start_backend` (so that a test chooses who declares the topology first)."""

    backend: Backend
    harness: BackendHarness
    api_url: str
    credentials: CredentialStore
    started: bool = False

    def start_backend(self) -> BackendHarness:
        self.backend.start()
        self.started = True
        assert self.backend.wait_until_running(30), f"backend did not connect: {self.backend.last_error}"
        return self.harness


@pytest.fixture
def stack(rabbitmq_url: str, tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], Stack]]:
    """``stack(workflows)``: a `Backend` on this vhost knowing ``workflows`` and the API serving it."""
    made: list[tuple[Stack, ServiceThread]] = []

    def make(workflows: list[dict[str, Any]]) -> Stack:
        db = tmp_path / f"state-{len(made)}.json"
        definitions = merge_definitions([parse_definitions(workflows, "test workflows")])
        backend = Backend(BackendConfig(broker_url=rabbitmq_url, db_path=db, definitions=definitions,
                                        registry=None, local_workers=False))
        credentials = CredentialStore.beside(db)
        service = ServiceThread(create_app(backend, token=TOKEN, credentials=credentials))
        url = service.start()
        made.append((Stack(backend, BackendHarness(backend), url, credentials), service))
        return made[-1][0]

    try:
        yield make
    finally:
        for made_stack, service in made:
            service.stop()
            if made_stack.started:
                made_stack.backend.stop()


class SdkWorkers:
    """SDK worker processes (``python worker.py`` in worker_app, as Media Cloud AI runs them), each logging
    to its own file; all stopped at teardown."""

    def __init__(self, rabbitmq_url: str, directory: Path) -> None:
        self.url = urlsplit(rabbitmq_url)
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def environment(self, api_url: str, job_type: str) -> dict[str, str]:
        """What a Media Cloud AI worker is configured with (reference/mcai-sdk.md)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPFLOW_", "AMQP_", "BACKEND_"))}
        env.update({
            "AMQP_HOSTNAME": self.url.hostname or "127.0.0.1", "AMQP_PORT": str(self.url.port or 5672),
            "AMQP_USERNAME": unquote(self.url.username or "guest"),
            "AMQP_PASSWORD": unquote(self.url.password or "guest"),
            "AMQP_VHOST": unquote(self.url.path[1:]) or "/", "AMQP_QUEUE": f"job_{job_type}",
            "AMQP_TLS": "false",  # the SDK defaults to TLS
            "BACKEND_HOSTNAME": f"{api_url}/api", "BACKEND_USERNAME": "sdk@tests", "BACKEND_PASSWORD": TOKEN,
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def start(self, api_url: str, job_type: str = SDK_TYPE) -> subprocess.Popen[bytes]:
        """Start one and wait until it consumes ``job_<job_type>``."""
        log_path = self.directory / f"sdk-{len(self.procs)}.log"
        consumers = (queue_counts(self._amqp_url(), f"job_{job_type}") or (0, 0))[1]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "worker.py"], cwd=WORKER_APP, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.environment(api_url, job_type))
        self.procs.append((proc, log_path))
        wait_for(lambda: proc.poll() is not None
                 or (queue_counts(self._amqp_url(), f"job_{job_type}") or (0, 0))[1] > consumers,
                 30, "the SDK worker to consume its queue")
        assert proc.poll() is None, f"the SDK worker died:\n{self.log(proc)}"
        return proc

    def _amqp_url(self) -> str:
        return self.url.geturl()

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        """What ``proc`` wrote so far."""
        path = next(path for p, path in self.procs if p is proc)
        return path.read_text(encoding="utf-8", errors="replace")

    def processed(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """The job ids its ``process`` was called with (worker.py prints them)."""
        return [int(line.split()[1]) for line in self.log(proc).splitlines() if line.startswith("process ")]

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def sdk_workers(rabbitmq_url: str, tmp_path: Path) -> Iterator[SdkWorkers]:
    workers = SdkWorkers(rabbitmq_url, tmp_path / "sdk-logs")
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
def processes(rabbitmq_url: str, tmp_path: Path) -> Iterator[Processes]:
    """`stepflow worker` processes (tests/rabbitmq's helper), stopped at teardown."""
    procs = Processes(tmp_path / "logs")
    try:
        yield procs
    finally:
        procs.stop_all()
