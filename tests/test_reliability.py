"""Reliability on the embedded broker: timeouts (worker side and the backend's guard), lost workers, retries
with backoff that block nothing, and workers dropping orders of aborted workflows.

RabbitMQ versions (a SIGSTOPped worker, cancel of a running job, abort of a long queue) and the chaos run are
in tests/faults/. A "foreign" worker here is a raw broker connection driven by the test: it takes orders and
reports what the test wants, like a StepFlow worker that ignores our headers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from backend_harness import ForeignWorker, Harness, definition, parse_time, step  # noqa: F401
from helpers import wait_for

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import OutgoingMessage, connect
from stepflow_tui.core import dispatch, protocol
from stepflow_tui.core.definitions import merge_definitions, parse_definitions
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.model import JobStatus, State
from stepflow_tui.core.protocol import DROP_JOBS, DROPPED_REASON, TIMEOUT_HEADER
from stepflow_tui.plugins import Registry
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.runner import Worker


# ------------------------------------------------------------------------------------------- engine (pure)
def test_engine_guard_fails_only_overdue_processing_jobs() -> None:
    now = [100.0]
    engine = Engine(State(), monotonic=lambda: now[0])
    defs = merge_definitions([parse_definitions([definition("t", step(1, "slow", 2, timeout=4, max_retries=1))],
                                                "t")])
    workflow = engine.start_workflow(defs["t"], {})
    first, second = (engine.state.jobs[i] for i in workflow.steps[0].job_ids)
    engine.mark_dispatched(engine.take_outbox(10))
    assert engine.job_timeout(first) == 4.0
    engine.on_progression(protocol.JobProgression(first.id, 0, instance_id="w1"))
    now[0] += 5.0
    engine.on_progression(protocol.JobProgression(second.id, 0, instance_id="w1"))
    # The guard is timeout + max(10, timeout / 2) = 14 s after the job started processing.
    now[0] += 8.9
    assert engine.fail_overdue() == []
    now[0] += 0.2
    assert [job.id for job in engine.fail_overdue()] == [first.id]
    assert first.status == JobStatus.QUEUED  # retried (max_retries 1)
    assert "timed out after 4 s" in first.history[-2][2]
    assert second.status == JobStatus.PROCESSING
    assert [job.id for job in engine.processing_jobs_of("w1")] == [second.id]
    engine.on_completed(protocol.JobCompleted(second.id))
    now[0] += 100
    assert engine.fail_overdue() == []  # a finished job is never failed by the guard


# ------------------------------------------------------------------------------------------- timeouts
def test_worker_times_out_a_job_that_honours_cancellation(start_backend) -> None:
    seen_cancelled = threading.Event()

    def slow(ctx: JobContext) -> None:
        try:
            ctx.wait(30)
        finally:
            seen_cancelled.set()

    harness = start_backend([definition("t", step(1, "slow", timeout=0.3))], {"slow": slow})
    workflow_id = harness.start("t")
    assert harness.wait_finished(workflow_id) == "error"
    (job,) = harness.jobs(workflow_id)
    assert job["status"] == "error" and job["error"] == "timed out after 0.3 s"
    assert seen_cancelled.wait(5), "the implementation never saw its cancellation flag"


def test_worker_answers_timeout_even_if_the_job_ignores_it_and_the_retry_completes(start_backend) -> None:
    release = threading.Event()
    calls: list[int] = []

    def stubborn(ctx: JobContext) -> dict[str, Any]:
        calls.append(ctx.job_id)
        if len(calls) == 1:
            release.wait(30)  # ignores ctx.cancelled: the worker must answer anyway
        return {"outputs": {"call": len(calls)}}

    harness = start_backend([definition("t", step(1, "stubborn", timeout=0.3, max_retries=1))],
                            {"stubborn": stubborn}, )
    try:
        workflow_id = harness.start("t")
        assert harness.wait_finished(workflow_id) == "completed"
    finally:
        release.set()
    (job,) = harness.jobs(workflow_id)
    statuses = [entry[0] for entry in job["history"]]
    assert statuses.count("completed") == 1 and statuses.count("retrying") == 1
    retry_note = next(entry[2] for entry in job["history"] if entry[0] == "retrying")
    assert "timed out after 0.3 s" in retry_note
    assert job["outputs"] == [{"id": "call", "type": "number", "value": 2}]  # the first call's result ignored


def test_backend_fails_a_job_whose_foreign_worker_ignores_the_timeout(start_backend, memory_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A shorter guard than the real timeout + max(10 s, timeout / 2), so the test stays quick.
    monkeypatch.setattr(dispatch, "guard_seconds", lambda timeout: timeout + 0.3)
    foreign = ForeignWorker(memory_url, "legacy")
    try:
        harness = start_backend([definition("t", step(1, "legacy", timeout=0.2))])
        workflow_id = harness.start("t")
        (order,) = foreign.wait_orders(1)
        assert order.headers[TIMEOUT_HEADER] == "0.2"  # a header (a string: AMQP has no float), not in the body
        assert "timeout" not in order.body.decode()
        job_id = protocol.decode_order(order.body).job_id
        foreign.started(job_id)  # ... and never answers
        assert harness.wait_finished(workflow_id) == "error"
        job = harness.backend.job(job_id)
        assert job["error"] == "timed out after 0.2 s"
    finally:
        foreign.close()


# ------------------------------------------------------------------------------------------- lost workers
def test_jobs_of_a_lost_worker_are_failed_after_a_grace_and_retried(start_backend, memory_url: str) -> None:
    foreign = ForeignWorker(memory_url, "held", instance_id="vanishing")
    try:
        harness = start_backend([definition("t", step(1, "held", max_retries=1))])
        foreign.announce("discovery", interval=0.2)
        wait_for(lambda: harness.backend.workers(), 5, "the foreign worker to be known")
        workflow_id = harness.start("t")
        (order,) = foreign.wait_orders(1)
        job_id = protocol.decode_order(order.body).job_id
        foreign.started(job_id)
        wait_for(lambda: harness.backend.job(job_id)["status"] == "processing", 5, "the job to be processing")
        # The worker falls silent: lost after 3 intervals, its job failed one interval later, then retried.
        wait_for(lambda: harness.backend.workers()[0].lost, 5, "the worker to be lost")
        second = foreign.wait_orders(2)[1]
        assert protocol.decode_order(second.body).job_id == job_id
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(job_id, instance_id="vanishing").encode())
        assert harness.wait_finished(workflow_id) == "completed"
    finally:
        foreign.close()
    job = harness.backend.job(job_id)
    notes = [entry[2] for entry in job["history"] if entry[0] == "retrying"]
    assert len(notes) == 1 and "worker foreign vanishing lost (unseen for" in notes[0]
    assert job["attempts"] == 2


def test_a_redelivered_job_is_not_failed_with_its_lost_worker(start_backend, memory_url: str) -> None:
    foreign = ForeignWorker(memory_url, "held", instance_id="vanishing")
    rescuer = ForeignWorker(memory_url, "held", instance_id="rescuer")
    try:
        harness = start_backend([definition("t", step(1, "held"))])
        foreign.announce("discovery", interval=0.2)
        rescuer.announce("discovery", interval=60)
        wait_for(lambda: len(harness.backend.workers()) == 2, 5, "both workers to be known")
        workflow_id = harness.start("t")
        orders = wait_for(lambda: (foreign.pump(), rescuer.pump(), foreign.orders + rescuer.orders)[2], 5,
                          "the order")
        job_id = protocol.decode_order(orders[0].body).job_id
        foreign.started(job_id)
        wait_for(lambda: harness.backend.job(job_id)["worker"] == "vanishing", 5, "the job on the first worker")
        rescuer.started(job_id)  # as after a redelivery: the job moved before the first worker is lost
        wait_for(lambda: harness.backend.job(job_id)["worker"] == "rescuer", 5, "the job on the rescuer")
        lost = wait_for(lambda: [w for w in harness.backend.workers() if w.lost], 5, "the first worker lost")
        assert lost[0].instance_id == "vanishing"
        # Well past the grace: the job still runs on the rescuer.
        wait_for(lambda: "vanishing" in harness.backend._workers.lost_handled, 5, "the lost worker to be handled")
        assert harness.backend.job(job_id)["status"] == "processing"
        assert harness.status(workflow_id) == "processing"
    finally:
        foreign.close()
        rescuer.close()


# ------------------------------------------------------------------------------------------- retries
def test_retries_back_off_record_each_attempt_and_block_nothing(start_backend) -> None:
    failures = {"left": 2}

    def flaky(ctx: JobContext) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError(f"flaky failure, {failures['left']} left")

    harness = start_backend([definition("flaky", step(1, "flaky", max_retries=3, retry_delay=1.0)),
                             definition("quick", step(1, "noop", 5))],
                            {"flaky": flaky, "noop": lambda ctx: None})
    flaky_id = harness.start("flaky")
    job_id = harness.jobs(flaky_id)[0]["id"]
    wait_for(lambda: harness.backend.job(job_id)["status"] == "retrying", 10, "the first retry to wait")
    quick_id = harness.start("quick")  # started during the delay: must not wait for it
    assert harness.wait_finished(quick_id) == "completed"
    quick_done = parse_time(harness.backend.workflow(quick_id).finished_at)
    assert harness.wait_finished(flaky_id) == "completed"

    job = harness.backend.job(job_id)
    history = job["history"]
    assert [entry[0] for entry in history] == ["queued", "processing", "retrying", "queued", "processing",
                                               "retrying", "queued", "processing", "completed"]
    times = [parse_time(entry[1]) for entry in history]
    assert times == sorted(times)
    retrying = [i for i, entry in enumerate(history) if entry[0] == "retrying"]
    # Each retry waited its delay (1 s, then doubled) before its order was queued again.
    for index, delay in zip(retrying, (1.0, 2.0), strict=True):
        assert (times[index + 1] - times[index]).total_seconds() >= delay * 0.95
        assert history[index][2].endswith(f"in {delay:g} s")
    assert "flaky failure, 1 left" in history[retrying[0]][2]
    assert job["attempts"] == 3
    # The other workflow finished while the flaky job was still waiting for its first retry.
    assert quick_done < times[retrying[0] + 1]


# ------------------------------------------------------------------------------------------- drop list
def test_worker_answers_dropped_orders_without_running_them(memory_url: str, tmp_path: Path) -> None:
    ran: list[int] = []
    worker = Worker(memory_url, {"rec": lambda ctx: ran.append(ctx.job_id)}, concurrency=1)
    conn = connect(memory_url, name="test")
    conn.declare_backend_topology()
    answers: list[tuple[str, Any]] = []
    for name in (topology.JOB_COMPLETED, topology.JOB_ERROR):
        conn.consume(name, lambda d: (answers.append((d.queue, protocol.decode_response(d.queue, d.body))),
                                      conn.ack(d.delivery_tag)))
    worker.start_in_thread()
    try:
        assert worker.wait_ready(5)
        conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "",
                                      f'{{"type": "{DROP_JOBS}", "job_ids": [1, 2]}}'.encode(),
                                      headers={"broadcast": True}, persistent=False)])
        # The drop list is read from the direct queue before these orders: wait until the worker knows it.
        wait_for(lambda: 2 in worker._dropped, 5, "the worker to know the drop list")
        conn.publish([OutgoingMessage(topology.JOB_SUBMIT, topology.job_queue("rec"),
                                      protocol.JobOrder(job_id, []).encode()) for job_id in (1, 2, 3)])
        wait_for(lambda: (conn.process_events(0.01), len(answers) >= 3)[1], 5, "three answers")
    finally:
        worker.stop(grace=1)
        worker.wait_stopped(5)
        conn.close()
    assert ran == [3]
    by_id = {message.job_id: (queue, message) for queue, message in answers}
    for job_id in (1, 2):
        queue, message = by_id[job_id]
        assert queue == topology.JOB_ERROR and message.stopped and message.message == DROPPED_REASON
    assert by_id[3][0] == topology.JOB_COMPLETED


def test_a_cancelled_dispatched_job_retried_runs_again(memory_url: str, tmp_path: Path) -> None:
    """Cancel black-lists the job's queued order with every worker; a retry of that job (same id) must lift the
    black-list, or its new order would be dropped too and the job would wait forever."""
    release = threading.Event()
    ran: list[int] = []

    def gated(ctx: JobContext) -> None:
        ran.append(ctx.job_id)
        if len(ran) == 1:
            release.wait(10)

    backend = Backend(BackendConfig(
        broker_url=memory_url, db_path=tmp_path / "state.json",
        definitions=merge_definitions([parse_definitions([definition("pair", step(1, "gated", 2))], "test")]),
        registry=Registry(workers={"gated": gated}), local_workers=True, local_concurrency=1))
    backend.start()
    try:
        harness = Harness(backend)
        assert backend.wait_until_running(10), backend.last_error
        workflow_id = harness.start("pair")
        first, second = (j["id"] for j in harness.jobs(workflow_id))
        wait_for(lambda: ran == [first], 10, "the first job to run")
        wait_for(lambda: backend.job(second)["dispatched"], 10, "the second order to be sent")
        backend.cancel_job(second).result(timeout=10)
        assert backend.job(second)["status"] == "stopped"
        backend.retry_job(second).result(timeout=10)
        release.set()
        assert harness.wait_finished(workflow_id) == "completed"
        assert second in ran
    finally:
        release.set()
        backend.stop()
