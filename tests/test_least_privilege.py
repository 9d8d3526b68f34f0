"""Least privilege: results are accepted only from where they can come (a dispatched job, the worker that
reported it processing); a worker's RabbitMQ user (docs/security.md) can consume its job queue and publish
responses, and nothing else."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions as pe
import pytest
from backend_harness import ForeignWorker, definition, step
from helpers import wait_for

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import OutgoingMessage, connect
from stepflow_tui.core import protocol
from stepflow_tui.core.definitions import merge_definitions, parse_definitions
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.runner import Worker


def test_results_for_undispatched_jobs_or_from_another_worker_are_set_aside(memory_url: str,
                                                                            tmp_path: Path) -> None:
    foreign = ForeignWorker(memory_url, "held", instance_id="worker-a")
    backend = Backend(BackendConfig(
        broker_url=memory_url, db_path=tmp_path / "state.json", window=1,  # one order in flight at a time
        definitions=merge_definitions([parse_definitions([definition("t", step(1, "held", count=3))], "t")])))
    backend.start()
    try:
        assert backend.wait_until_running(10)
        workflow_id = backend.start_workflow("t", {}).result(10)
        (order,) = foreign.wait_orders(1)
        first = protocol.decode_order(order.body).job_id
        never_sent = max(job.id for s in backend.workflow(workflow_id).steps
                         for job in backend.jobs(workflow_id, s.id))
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(never_sent, instance_id="forger").encode())
        foreign.started(first)  # worker-a reports it processing ...
        wait_for(lambda: backend.job(first)["worker"] == "worker-a", 10, "the job to be worker-a's")
        # ... so a result from anyone else is set aside, and worker-a's own is taken
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(first, instance_id="worker-b").encode())
        wait_for(lambda: backend.stats["garbage"] == 2, 10, "both forged results set aside")
        assert backend.job(first)["status"] == "processing" and backend.job(never_sent)["status"] == "queued"
        assert never_sent != first
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(first, instance_id="worker-a").encode())
        wait_for(lambda: backend.job(first)["status"] == "completed", 10, "worker-a's result")
        # an announced worker of the type may finish it (RabbitMQ redelivered the order of a worker that died)
        foreign.instance_id = "worker-c"
        foreign.announce("discovery", interval=5)
        second = protocol.decode_order(foreign.wait_orders(2)[1].body).job_id
        foreign.instance_id = "worker-a"
        foreign.started(second)
        wait_for(lambda: backend.job(second)["worker"] == "worker-a", 10, "the second job to be worker-a's")
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(second, instance_id="worker-c").encode())
        wait_for(lambda: backend.job(second)["status"] == "completed", 10, "worker-c's result")
        assert backend.stats["garbage"] == 2
        dead = []
        while (delivery := foreign.conn.get(topology.JOB_DEAD_LETTER)) is not None:
            dead.append(protocol.decode_response(topology.JOB_COMPLETED, delivery.body))
        assert sorted((m.job_id, m.instance_id) for m in dead) == sorted([(never_sent, "forger"),
                                                                          (first, "worker-b")])
    finally:
        foreign.close()
        backend.stop()


# ------------------------------------------------------------------------------------------ RabbitMQ users
def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def worker_user(rabbitmq_url: str) -> Iterator[str]:
    """A worker's user for job type ``checksum`` with exactly the permissions docs/security.md gives."""
    user, password = f"worker-{uuid.uuid4().hex[:8]}", "w0rker-pw"
    vhost = rabbitmq_url.rpartition("/")[2]
    _rabbitmqctl("add_user", user, password)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user,
                     "^(job_checksum|direct_messaging_.*)$",
                     "^(job_response|worker_response|job_checksum|direct_messaging_.*)$",
                     "^(job_checksum|direct_messaging_.*|job_submit|direct_messaging)$")
        yield rabbitmq_url.replace("guest:guest@", f"{user}:{password}@")
    finally:
        _rabbitmqctl("delete_user", user)


@pytest.mark.rabbitmq
def test_a_worker_user_serves_its_queue_and_can_do_nothing_else(rabbitmq_url: str, worker_user: str) -> None:
    backend = connect(rabbitmq_url)  # the backend's user declares the topology and the job queues first
    backend.declare_backend_topology()
    backend.declare_job_queue("checksum")  # a queue dead-lettered to job_dead_letter: not the worker's to declare
    backend.declare_job_queue("other")

    def checksum(ctx: JobContext) -> dict:
        return {"outputs": {"ok": True}}

    worker = Worker(worker_user, {"checksum": checksum})
    worker.start_in_thread()
    try:
        assert worker.wait_ready(30), worker.failure  # declared what it may, checked the rest exists
        backend.publish([OutgoingMessage(topology.JOB_SUBMIT, "job_checksum", protocol.JobOrder(7, []).encode())])

        def completed() -> bool:
            delivery = backend.get(topology.JOB_COMPLETED)
            return delivery is not None and protocol.decode_response(topology.JOB_COMPLETED, delivery.body).job_id == 7

        wait_for(completed, 30, "the worker's result")
    finally:
        worker.stop(grace=0)
        worker.wait_stopped(30)

    refused = {
        "publish an order": lambda ch: (ch.confirm_delivery(), ch.basic_publish(topology.JOB_SUBMIT, "job_checksum",
                                                                                b"{}")),
        "read results": lambda ch: ch.basic_get(topology.JOB_COMPLETED),
        "read another job queue": lambda ch: ch.basic_get("job_other"),
        "read dead letters": lambda ch: ch.basic_get(topology.JOB_DEAD_LETTER),
        "read worker statuses": lambda ch: ch.basic_get(topology.WORKER_STATUS),
        "delete an exchange": lambda ch: ch.exchange_delete(topology.JOB_SUBMIT),
        "purge its own queue's neighbours": lambda ch: ch.queue_purge("job_other"),
    }
    for what, attempt in refused.items():
        connection = pika.BlockingConnection(pika.URLParameters(worker_user))
        try:
            with pytest.raises(pe.ChannelClosedByBroker) as info:
                attempt(connection.channel())
            assert info.value.reply_code == 403, what
        finally:
            connection.close()
    backend.close()
