"""The backend's side of Media Cloud AI's protocol on the embedded broker, with a raw connection playing an SDK
worker: a dropped job that starts anyway is stopped on that worker, an error about no job is a notice, and an
order the worker keeps rejecting (through job_delayed's 5 s, which memory:// reproduces) fails its job."""

from __future__ import annotations

import json
from typing import Any

from backend_harness import ForeignWorker, definition, step
from helpers import wait_for

from stepflow_tui.broker import topology
from stepflow_tui.core import protocol


def direct_bodies(foreign: ForeignWorker, queue: str) -> list[dict[str, Any]]:
    bodies = []
    while (delivery := foreign.conn.get(queue)) is not None:
        bodies.append(json.loads(delivery.body))
        foreign.conn.ack(delivery.delivery_tag)
    return bodies


def test_a_dropped_job_an_sdk_worker_starts_anyway_is_stopped_there(start_backend: Any, memory_url: str) -> None:
    harness = start_backend([definition("ext", step(1, "ext", count=2))])
    foreign = ForeignWorker(memory_url, "ext", "sdk-like")
    queue = foreign.conn.declare_direct_queue("sdk-like", [])
    try:
        workflow_id = harness.start("ext")
        first, second = (json.loads(d.body)["job_id"] for d in foreign.wait_orders(2))
        harness.backend.abort(workflow_id).result(timeout=10)
        told = wait_for(lambda: direct_bodies(foreign, queue), 5, "the black list")
        assert {"type": "add_to_black_list", "job_id": first} in told
        foreign.started(second)  # as if the worker's black list had forgotten it
        stop = wait_for(lambda: direct_bodies(foreign, queue), 5, "a stop order")
        assert stop == [{"type": "stop_process", "job_id": second, "parameters": []}]
    finally:
        foreign.close()


def test_an_error_about_no_job_is_a_notice(start_backend: Any, memory_url: str) -> None:
    harness = start_backend([definition("ext", step(1, "ext"))])
    notices: list[str] = []
    harness.backend.subscribe(lambda update: notices.extend(update.messages))
    foreign = ForeignWorker(memory_url, "ext")
    try:
        foreign.send(topology.JOB_ERROR, b'{"status": "error", "message": "unknown variant `drop_jobs`"}')
        wait_for(lambda: any("unknown variant `drop_jobs`" in n for n in notices), 5, "the notice")
        assert harness.backend.stats["garbage"] == 0
    finally:
        foreign.close()


def test_an_order_a_worker_keeps_rejecting_fails_after_three_rounds(start_backend: Any, memory_url: str) -> None:
    harness = start_backend([definition("ext", step(1, "ext"))])
    foreign = ForeignWorker(memory_url, "ext")
    try:
        workflow_id = harness.start("ext")
        for round_ in range(3):  # each comes back from job_delayed after 5 s
            order = foreign.wait_orders(round_ + 1, timeout=10)[round_]
            foreign.conn.reject(order.delivery_tag, requeue=False)
        assert harness.wait_finished(workflow_id, 10) == "error"
        (job,) = harness.jobs(workflow_id)
        assert job["error"] == "order rejected by a worker (3 times)"
    finally:
        foreign.close()


def test_an_order_the_busy_sdk_refused_is_sent_again_not_failed(start_backend: Any, memory_url: str) -> None:
    harness = start_backend([definition("ext", step(1, "ext"))])
    foreign = ForeignWorker(memory_url, "ext")
    try:
        workflow_id = harness.start("ext")
        (first,) = foreign.wait_orders(1)
        job_id = json.loads(first.body)["job_id"]
        refusal = {"job_id": job_id, "status": "error", "parameters": [
            {"id": "message", "type": "string", "value": protocol.SDK_BUSY_REFUSAL}]}
        foreign.conn.ack(first.delivery_tag)  # as the SDK does
        foreign.send(topology.JOB_ERROR, json.dumps(refusal).encode())
        second = foreign.wait_orders(2)[1]
        assert json.loads(second.body)["job_id"] == job_id
        (job,) = harness.jobs(workflow_id)
        assert job["status"] == "queued" and job["attempts"] == 2 and job["history"][-1][2].startswith(
            "refused by a busy worker")
    finally:
        foreign.close()
