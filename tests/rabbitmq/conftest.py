"""Fixtures for the end-to-end tests on a real RabbitMQ: worker and CLI processes that are always cleaned up,
an in-process `Backend`, raw pika helpers for looking at queues, and waiting on conditions (never sleeping).

Every test gets a fresh vhost from the shared ``rabbitmq_url`` fixture (tests/conftest.py), so tests running
at the same time never see each other's queues or connections.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions
import pytest
from helpers import wait_for  # noqa: F401 - the rabbitmq and faults tests import it from here

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.core.definitions import merge_definitions, parse_definitions
from stepflow_tui.core.model import WORKFLOW_FINAL

#: Variables that would make a child process depend on the developer's environment.
_STEPFLOW_ENV = ("STEPFLOW_BROKER_URL", "STEPFLOW_DB", "STEPFLOW_WORKFLOWS", "STEPFLOW_API", "STEPFLOW_API_TOKEN")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder needs RabbitMQ: mark it so ``-m 'not rabbitmq'`` deselects them all."""
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.rabbitmq)


def vhost_of(url: str) -> str:
    """The vhost of an ``amqp://`` URL (``/`` when the path is empty)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


# ------------------------------------------------------------------------------------------- raw AMQP
def queue_counts(url: str, queue: str) -> tuple[int, int] | None:
    """(ready, consumers) of ``queue`` by a passive declare on a short-lived connection, or None when the
    queue does not exist or the broker cannot be reached right now (a test that closes connections polls
    through that)."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPError:
        return None
    try:
        frame = connection.channel().queue_declare(queue, passive=True)
        return frame.method.message_count, frame.method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:
        return None
    except pika.exceptions.AMQPError:
        return None
    finally:
        try:
            connection.close()
        except pika.exceptions.AMQPError:
            pass


def wait_consumers(url: str, queue: str, count: int, timeout: float = 30.0) -> None:
    """Wait until ``queue`` exists with at least ``count`` consumers (workers ready)."""
    wait_for(lambda: (queue_counts(url, queue) or (0, 0))[1] >= count, timeout,
             f"{count} consumer(s) on {queue}", interval=0.1)


def publish_raw(url: str, messages: Sequence[tuple[str, str, bytes]]) -> None:
    """Publish (exchange, routing key, body) messages, persistent, with publisher confirms."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        for exchange, routing_key, body in messages:
            channel.basic_publish(exchange, routing_key, body,
                                  pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                                  mandatory=True)
    finally:
        connection.close()


def drain_queue(url: str, queue: str) -> list[tuple[bytes, dict[str, Any]]]:
    """Take every ready message of ``queue`` (basic_get, acked): [(body, headers)]."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    taken = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((body, properties.headers or {}))
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------- processes
class Processes:
    """Child processes of one test, each logging to its own file; all stopped at teardown (SIGTERM, then
    SIGKILL), whether the test passed or not."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    @staticmethod
    def env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _STEPFLOW_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` with stdout and stderr to ``<name>.log`` (read it with `output`)."""
        log_path = self.directory / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=cwd or self.directory, env=self.env())
        self._procs.append((name, proc, log_path))
        return proc

    def worker(self, url: str, *job_types: str, concurrency: int = 2, prefetch: int | None = None,
               name: str | None = None) -> subprocess.Popen[bytes]:
        """A headless worker process: ``python -m stepflow_tui.worker``."""
        argv = [sys.executable, "-m", "stepflow_tui.worker", "--broker", url, "--concurrency", str(concurrency),
                "--status-interval", "1"]
        for job_type in job_types:
            argv += ["--job-type", job_type]
        if prefetch is not None:
            argv += ["--prefetch", str(prefetch)]
        return self.start(name or f"worker-{len(self._procs)}", argv)

    def cli(self, *args: str | os.PathLike[str], name: str = "cli") -> subprocess.Popen[bytes]:
        """The ``stepflow`` CLI (``python -m stepflow_tui ARGS``)."""
        return self.start(name, [sys.executable, "-m", "stepflow_tui", *map(str, args)])

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """What ``proc`` wrote so far (stdout and stderr)."""
        for _name, p, log_path in self._procs:
            if p is proc:
                return log_path.read_text(encoding="utf-8", errors="replace")
        raise KeyError(proc)

    def stop_all(self) -> None:
        for _name, proc, _log in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _name, proc, _log in self._procs:
            try:
                # A worker still running a job would wait for it (up to its 30 s grace): not in a teardown.
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def logs(self) -> str:
        """The tail of every log, for a failure report."""
        parts = []
        for name, _proc, log_path in self._procs:
            text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
            parts.append(f"----- {name} (last 40 lines)\n" + "\n".join(text.splitlines()[-40:]))
        return "\n".join(parts)


@pytest.fixture
def processes(rabbitmq_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Processes]:
    """Start child processes; every one is stopped at teardown, before the test's vhost is deleted (hence
    the dependency on ``rabbitmq_url``). A failing test prints their logs."""
    procs = Processes(tmp_path / "logs")
    try:
        yield procs
    finally:
        procs.stop_all()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(procs.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


# ------------------------------------------------------------------------------------------- workflows
def workflow(identifier: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal workflow definition."""
    return {"identifier": identifier, "label": identifier.replace("_", " "), "version_major": 1,
            "version_minor": 0, "version_micro": 0, "start_parameters": [], "steps": steps}


def fan_out_step(job_type: str, count: int, *, step_id: int = 1, **parameters: Any) -> dict[str, Any]:
    """A ``one_for_one`` step with ``count`` jobs (one per entry of a ``source_paths`` list)."""
    params: list[dict[str, Any]] = [{"id": "source_paths", "type": "array_of_strings",
                                     "value": [f"/input/{job_type}/{i:04d}.dat" for i in range(count)]}]
    for key, value in parameters.items():
        params.append({"id": key, "type": "number" if isinstance(value, int | float) else "string",
                       "value": value})
    return {"id": step_id, "name": job_type, "label": job_type, "mode": "one_for_one", "parameters": params}


def write_workflows(path: Path, workflows: list[dict[str, Any]]) -> Path:
    """Write a workflows.json for the CLI."""
    path.write_text(json.dumps({"workflows": workflows}, indent=2), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- backend
class BackendHarness:
    """An in-process `Backend` on this test's vhost (no local workers: jobs go to worker processes), with
    the reads the tests need."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def start_workflow(self, identifier: str, parameters: dict[str, Any] | None = None) -> int:
        return self.backend.start_workflow(identifier, parameters or {}).result(timeout=30)

    def jobs(self, workflow_id: int) -> list[dict[str, Any]]:
        """Every job of the workflow, full records (status, history, worker, destination_paths)."""
        view = self.backend.workflow(workflow_id)
        assert view is not None, f"no workflow #{workflow_id}"
        records = []
        for step in view.steps:
            for job in self.backend.jobs(workflow_id, step.id, 0, 100_000):
                record = self.backend.job(job.id)
                assert record is not None
                records.append(record)
        return records

    def with_status(self, workflow_id: int, status: str) -> list[dict[str, Any]]:
        return [job for job in self.jobs(workflow_id) if job["status"] == status]

    def wait_finished(self, workflow_id: int, timeout: float) -> str:
        """Wait until the workflow has ended (completed / error / stopped / aborted); return that status."""
        def finished() -> str | None:
            view = self.backend.workflow(workflow_id)
            return view.status if view is not None and view.status in WORKFLOW_FINAL else None

        return wait_for(finished, timeout, f"workflow #{workflow_id} to finish")


@pytest.fixture
def start_backend(rabbitmq_url: str, tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], BackendHarness]]:
    """Start an in-process backend knowing ``workflows`` (definition dicts); stopped at teardown."""
    started: list[Backend] = []

    def start(workflows: list[dict[str, Any]]) -> BackendHarness:
        definitions = merge_definitions([parse_definitions(workflows, "test workflows")])
        backend = Backend(BackendConfig(broker_url=rabbitmq_url, db_path=tmp_path / f"state-{len(started)}.json",
                                        definitions=definitions, registry=None, local_workers=False))
        backend.start()
        started.append(backend)
        assert backend.wait_until_running(30), f"backend did not connect: {backend.last_error}"
        return BackendHarness(backend)

    try:
        yield start
    finally:
        for backend in started:
            backend.stop()


def assert_each_completed_once(jobs: list[dict[str, Any]], expected: int) -> None:
    """Every job completed, with exactly one "completed" entry in its history: nothing lost, nothing
    counted twice."""
    assert len(jobs) == expected
    not_completed = [(job["id"], job["status"]) for job in jobs if job["status"] != "completed"]
    assert not not_completed, f"jobs not completed: {not_completed[:10]}"
    twice = [(job["id"], job["history"]) for job in jobs
             if sum(1 for entry in job["history"] if entry[0] == "completed") != 1]
    assert not twice, f"jobs whose history does not hold exactly one 'completed': {twice[:3]}"
