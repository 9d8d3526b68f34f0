"""Fixtures for the service end to end: a real ``stepflow backend`` process on a temp state (RabbitMQ, or an
embedded broker for the workbench test), real ``stepflow worker`` processes, calls to its API, a vhost for a
Media Cloud AI SDK worker, and the tmux fixture."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import _base_amqp_url, _rabbitmqctl
from helpers import REPO_WORKFLOWS, step, wait_for, workflow
from rabbitmq.conftest import (  # noqa: F401 - the fixture and the report hook, re-exported for this folder
    Processes,
    processes,
    pytest_runtest_makereport,
)
from tui.tmux_harness import tmux  # noqa: F401 - the fixture of the workbench test

from stepflow_tui.backend.remote import RemoteBackend
from stepflow_tui.store.lockfile import read_lock_info

#: Starting a Python process on a busy 2-core machine takes seconds; a workflow of a few jobs as many.
STARTUP = 30.0
ITEMS = 24  # the ``many`` workflow's jobs


def write_test_workflows(path: Path) -> Path:
    """The repository's workflows plus ``slow`` (one 60 s sleep: stays running) and ``many`` (ITEMS short
    sleeps, one per item: a run that can be interrupted midway)."""
    items = [f"/items/{i:03d}" for i in range(ITEMS)]
    extra = [
        workflow("slow", [step(1, "sleep", parameters=[{"id": "seconds", "type": "number", "value": 60}])]),
        workflow("many", [step(1, "sleep", mode="one_for_one", parameters=[
            {"id": "source_paths", "type": "array_of_strings", "value": items},
            {"id": "seconds", "type": "number", "value": 0.3}])]),
    ]
    document = json.loads(REPO_WORKFLOWS.read_text(encoding="utf-8"))
    document["workflows"] = [w for w in document["workflows"] if w["identifier"] not in ("slow", "many")] + extra
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@dataclass
class Service:
    """One ``stepflow backend`` process for ``db``, and the CLI pointed at the same state."""

    processes: Processes
    broker: str
    db: Path
    workflows: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    starts: int = 0

    def start(self) -> str:
        """Start the service; its URL once the lock file records it (the API then answers)."""
        self.starts += 1
        # on RabbitMQ the workers are `stepflow worker` processes; an embedded broker needs in-process ones
        workers = "--local-workers" if self.broker.startswith("memory:") else "--no-local-workers"
        port = self.url.rsplit(":", 1)[1] if self.url else "0"  # a restart keeps the address clients know
        self.proc = self.processes.cli("backend", "--broker", self.broker, "--db", self.db, "--workflows",
                                       self.workflows, "--listen", f"127.0.0.1:{port}", workers,
                                       name=f"backend-{self.starts}")
        proc = self.proc

        def recorded() -> str | None:
            assert proc.poll() is None, f"stepflow backend exited {proc.returncode}:\n" + self.log()
            pid, url = read_lock_info(self.db)
            return url if pid == proc.pid else None

        self.url = wait_for(recorded, STARTUP, "the service's URL in the lock file")
        return self.url

    def log(self) -> str:
        return self.processes.output(self.proc) if self.proc is not None else ""

    def workers(self, count: int = 2) -> None:
        """``count`` headless ``stepflow worker`` processes on the broker, once the service knows them (an
        order sent before a worker declared its job queue would fail: no worker for that job type)."""
        for index in range(count):
            self.processes.cli("worker", "--broker", self.broker, "--concurrency", "2", "--status-interval", "1",
                               name=f"worker-{index + 1}")
        remote = RemoteBackend(self.url)
        try:
            wait_for(lambda: len(remote.workers()) >= count, STARTUP, f"{count} workers announced")
        finally:
            remote.stop()

    def cli(self, *args: str | Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """``stepflow ARGS --db DB`` to its end (it finds the service through the lock file)."""
        argv = [sys.executable, "-m", "stepflow_tui", *map(str, args), "--db", str(self.db)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=Processes.env(),
                              stdin=subprocess.DEVNULL, cwd=self.db.parent)

    def remote(self) -> RemoteBackend:
        """A started client of the service (the caller stops it)."""
        remote = RemoteBackend(self.url)
        remote.start()
        return remote

    def workflow(self, workflow_id: int) -> dict[str, Any]:
        """``GET /api/workflows/{id}`` (raises when the service does not answer)."""
        remote = RemoteBackend(self.url)
        try:
            return remote.request("GET", f"/api/workflows/{workflow_id}")
        finally:
            remote.stop()


@pytest.fixture
def service_factory(processes: Processes, tmp_path: Path) -> Callable[[str], Service]:  # noqa: F811
    """``service_factory(broker)``: a `Service` (not started) on a fresh state under ``tmp_path``."""

    def make(broker: str) -> Service:
        return Service(processes, broker, tmp_path / "state.json", write_test_workflows(tmp_path / "wf.json"))

    return make


@pytest.fixture
def service(service_factory: Callable[[str], Service], rabbitmq_url: str) -> Service:
    """A started service on RabbitMQ, with two workers."""
    started = service_factory(rabbitmq_url)
    started.start()
    started.workers(2)
    return started


@pytest.fixture
def sdk_vhost() -> Iterator[str]:
    """A vhost of a Media Cloud AI SDK worker's own: it declares ``worker_response`` with an alternate exchange
    stepflow's topology does not give it, so the two cannot share one (the SDK test checks the HTTP side)."""
    vhost = f"stepflow-sdk-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, urlsplit(_base_amqp_url()).username or "guest", ".*", ".*",
                     ".*")
        yield vhost
    finally:
        _rabbitmqctl("delete_vhost", vhost)
