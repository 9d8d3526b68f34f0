"""Shared test harnesses (not a test module): a Backend on an embedded broker with in-process workers
(`Harness`, the `start_backend` fixture in conftest.py), a raw connection playing a foreign worker, and a pure
engine with a fixed clock. Test modules import these instead of importing each other."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from helpers import wait_for

from stepflow_tui.backend.backend import Backend
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import Connection, Delivery, OutgoingMessage, connect
from stepflow_tui.core import protocol
from stepflow_tui.core.definitions import parse_definitions
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.model import WORKFLOW_FINAL, State


def make_engine() -> Engine:
    ticks = itertools.count()
    return Engine(State(), clock=lambda: f"2026-01-01T00:00:{next(ticks) % 60:02d}Z", monotonic=lambda: 0.0)


def engine_definition(steps, start_parameters=()):
    return parse_definitions({"identifier": "wf", "label": "WF", "start_parameters": list(start_parameters),
                              "steps": steps}, "test.json")[0]


def step(step_id: int, name: str, count: int = 1, **options: Any) -> dict[str, Any]:
    """A one_for_one step of ``count`` jobs; ``options`` are step keys (timeout, max_retries, retry_delay)."""
    return {"id": step_id, "name": name, "label": name, "mode": "one_for_one",
            "parameters": [{"id": "source_paths", "type": "array_of_strings",
                            "value": [f"/in/{name}/{i}" for i in range(count)]}], **options}


def definition(identifier: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"identifier": identifier, "label": identifier, "version_major": 1, "version_minor": 0,
            "version_micro": 0, "start_parameters": [], "steps": list(steps)}


def parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")


class Harness:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def start(self, identifier: str) -> int:
        return self.backend.start_workflow(identifier, {}).result(timeout=10)

    def jobs(self, workflow_id: int) -> list[dict[str, Any]]:
        view = self.backend.workflow(workflow_id)
        assert view is not None
        return [self.backend.job(j.id) for s in view.steps for j in self.backend.jobs(workflow_id, s.id, 0, 10_000)]

    def status(self, workflow_id: int) -> str:
        view = self.backend.workflow(workflow_id)
        assert view is not None
        return view.status

    def wait_finished(self, workflow_id: int, timeout: float = 20) -> str:
        return wait_for(lambda: (s := self.status(workflow_id)) in WORKFLOW_FINAL and s,
                        timeout, f"workflow #{workflow_id} to finish")


class ForeignWorker:
    """A raw connection playing a worker of ``job_type``: it declares the job queue, keeps every order (never
    acks unless told) and reports only what the test says. Driven from the test thread (`pump`)."""

    def __init__(self, url: str, job_type: str, instance_id: str = "foreign-1") -> None:
        self.instance_id = instance_id
        self.conn: Connection = connect(url, name="foreign")
        self.conn.declare_backend_topology()
        self.queue = self.conn.declare_job_queue(job_type)
        self.orders: list[Delivery] = []
        self.conn.consume(self.queue, self.orders.append)

    def pump(self) -> None:
        self.conn.process_events(0.01)

    def wait_orders(self, count: int, timeout: float = 10) -> list[Delivery]:
        return wait_for(lambda: (self.pump(), len(self.orders) >= count)[1] and self.orders, timeout,
                        f"{count} order(s) for the foreign worker")

    def send(self, routing_key: str, body: bytes) -> None:
        exchange = topology.WORKER_RESPONSE if routing_key.startswith("worker_") else topology.JOB_RESPONSE
        self.conn.publish([OutgoingMessage(exchange, routing_key, body, persistent=False)])

    def announce(self, kind: str, interval: float) -> None:
        self.send(topology.WORKER_DISCOVERY if kind == "discovery" else topology.WORKER_STATUS,
                  protocol.WorkerStatus(instance_id=self.instance_id, queue_name=self.queue, label="foreign",
                                        version="0", kind=kind, interval=interval).encode())

    def started(self, job_id: int) -> None:
        self.send(topology.JOB_PROGRESSION, protocol.JobProgression(job_id, 0, instance_id=self.instance_id).encode())

    def close(self) -> None:
        self.conn.close()


