"""A RabbitMQ cluster of three nodes (see conftest.py): the backend and a worker given every node's address,
the queues the backend owns as quorum queues; stopping the node the backend is on, then the worker's node, in
the middle of 1,000 jobs loses nothing and completes each job once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker.base import BrokerError, connect
from stepflow_tui.core.definitions import merge_definitions, parse_definitions
from stepflow_tui.store.store import read_state
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.runner import Worker

pytestmark = [pytest.mark.e2e]

JOBS = 1000
#: The worker's status interval: unseen for 4 of them, it would be taken for lost and its running jobs failed.
STATUS_INTERVAL = 2.5


def fan_out(count: int) -> dict[str, Any]:
    """A workflow of one step with ``count`` noop jobs."""
    paths = [f"/input/{i:04d}.dat" for i in range(count)]
    step = {"id": 1, "name": "noop", "label": "noop", "mode": "one_for_one",
            "parameters": [{"id": "source_paths", "type": "array_of_strings", "value": paths}]}
    return {"identifier": "many", "label": "many", "version_major": 1, "version_minor": 0, "version_micro": 0,
            "start_parameters": [], "steps": [step]}


def completed(backend: Backend, workflow_id: int) -> int:
    view = backend.workflow(workflow_id)
    return view.counts.get("completed", 0) if view is not None else 0


def connected_elsewhere(backend: Backend, old: str) -> str | None:
    """The node the backend is connected to once it is not ``old``."""
    node = backend.broker_node
    return node if backend.connection_state == "connected" and node and node != old else None


def queue_types(cluster: Any, vhost: str) -> dict[str, str]:
    out = cluster.rabbitmqctl(0, "list_queues", "-p", vhost, "name", "type", "--quiet", "--no-table-headers")
    return dict(line.split("\t") for line in out.splitlines() if "\t" in line)


def test_node_stops_lose_nothing(rabbit_cluster: Any, tmp_path: Path) -> None:
    cluster = rabbit_cluster
    runs: Counter[int] = Counter()
    # Jobs past the limit wait for it to rise: each node stops while jobs are still to run.
    gate = threading.Condition()
    limit = [300]
    started = [0]

    def counting_noop(ctx: JobContext) -> dict[str, Any]:
        with gate:
            runs[ctx.job_id] += 1
            started[0] += 1
            ordinal = started[0]
            gate.wait_for(lambda: ordinal <= limit[0], timeout=120)
        return {"destination_paths": []}

    def open_gate(to: float) -> None:
        with gate:
            limit[0] = to
            gate.notify_all()

    # The worker prefers c3, the backend c1: each stop below hits one of them.
    worker = Worker(cluster.urls([2, 1, 0]), {"noop": counting_noop}, concurrency=8, prefetch=50,
                    status_interval=STATUS_INTERVAL, queue_type="quorum", name="cluster-worker")
    worker.start_in_thread()
    assert worker.wait_ready(30), f"worker not ready: {worker.failure}"
    definitions = merge_definitions([parse_definitions([fan_out(JOBS)], "cluster test")])
    db = tmp_path / "state.json"
    backend = Backend(BackendConfig(broker_url=cluster.urls([0, 1, 2]), queue_type="quorum", db_path=db,
                                    definitions=definitions, registry=None, local_workers=False))
    backend.start()
    figures: dict[str, float] = {}
    try:
        assert backend.wait_until_running(30), backend.last_error
        first = backend.broker_node
        assert first is not None and cluster.index_of_port(first) == 0
        types = queue_types(cluster, "/")
        assert types["job_completed"] == "quorum" and types["job_dead_letter"] == "quorum"
        assert types["job_noop"] == "classic"  # the SDK's arguments

        workflow_id = backend.start_workflow("many", {}).result(timeout=30)
        began = time.monotonic()
        wait_for(lambda: completed(backend, workflow_id) >= 280, 60, "280 jobs done")

        # 1. The node the backend is connected to stops: the backend moves to the next node.
        cluster.stop_node(0)
        stopped = time.monotonic()
        second = wait_for(lambda: connected_elsewhere(backend, first), 60, "the backend on another node")
        figures["backend failover s"] = time.monotonic() - stopped
        assert cluster.index_of_port(second) == 1  # the node after the lost one
        open_gate(600)
        wait_for(lambda: completed(backend, workflow_id) >= 580, 60, "580 jobs done after the failover")
        cluster.start_node(0)  # back before the next stop: quorum queues need two of three nodes

        # 2. The worker's node stops (the job queue's node, classic: unavailable until it is back).
        worker_node = worker.broker_node
        assert worker_node is not None and cluster.index_of_port(worker_node) == 2
        cluster.stop_node(2)
        stopped = time.monotonic()
        wait_for(lambda: worker.broker_node not in (None, worker_node), 60, "the worker on another node")
        figures["worker failover s"] = time.monotonic() - stopped
        open_gate(float("inf"))
        # The node stays down longer than a worker may stay unseen: the worker, reconnecting with its jobs
        # running, still tells the backend it is alive, so none of its jobs is failed as lost.
        wait_for(lambda: time.monotonic() - stopped > 4 * STATUS_INTERVAL + 1, 30, "a long outage", interval=0.2)
        assert not any(view.lost for view in backend.workers())
        cluster.start_node(2)
        back = time.monotonic()

        status = wait_for(lambda: (view := backend.workflow(workflow_id)) and view.status in ("completed", "error")
                          and view.status, 120, "the workflow to finish")
        figures["worker's node stop to the last job s (node restart included)"] = time.monotonic() - stopped
        figures["worker's node back to the last job s"] = time.monotonic() - back
        figures["workflow s"] = time.monotonic() - began
        assert status == "completed", backend.workflow(workflow_id)
        assert completed(backend, workflow_id) == JOBS
    finally:
        open_gate(float("inf"))
        backend.stop()
        worker.stop(grace=5)

    # Every job ran (none lost), the state says each completed once, and the state file loads.
    assert len(runs) == JOBS
    figures["jobs run twice"] = sum(1 for count in runs.values() if count > 1)
    state = read_state(db)
    jobs = [job for job in state.jobs.values() if job.workflow_id == workflow_id]
    assert len(jobs) == JOBS
    assert all(job.status == "completed" for job in jobs)
    assert all(sum(1 for entry in job.history if entry[0] == "completed") == 1 for job in jobs)
    print("cluster figures:", {k: round(v, 2) for k, v in figures.items()})


def test_a_queue_type_mismatch_is_a_clear_error(rabbit_cluster: Any) -> None:
    cluster = rabbit_cluster
    cluster.rabbitmqctl(1, "add_vhost", "mismatch")
    cluster.rabbitmqctl(1, "set_permissions", "-p", "mismatch", "guest", ".*", ".*", ".*")
    quorum = connect(cluster.urls([1, 2, 0], "mismatch"), name="quorum-backend", queue_type="quorum")
    try:
        quorum.declare_backend_topology()
    finally:
        quorum.close()
    classic = connect(cluster.urls([1, 2, 0], "mismatch"), name="classic-backend")
    try:
        with pytest.raises(BrokerError, match="--queue-type"):
            classic.declare_backend_topology()
    finally:
        classic.close()
