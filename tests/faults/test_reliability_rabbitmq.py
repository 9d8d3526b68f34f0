"""Reliability on RabbitMQ with worker processes: a frozen (SIGSTOP) worker is found lost and its job runs
elsewhere, a running job is cancelled and its worker freed, a timeout stops a job, and an abort keeps the
queued orders of the workflow from running."""

from __future__ import annotations

import signal
from pathlib import Path

from rabbitmq.conftest import (
    Processes,
    drain_queue,
    fan_out_step,
    publish_raw,
    queue_counts,
    wait_consumers,
    wait_for,
    workflow,
)

from .conftest import start_test_worker


def job_where(harness, workflow_id: int, condition, what: str, timeout: float = 30) -> dict:
    """Wait until one of the workflow's jobs satisfies ``condition``; return it."""
    return wait_for(lambda: next((job for job in harness.jobs(workflow_id) if condition(job)), None), timeout,
                    what)


def test_jobs_of_a_frozen_worker_are_failed_as_lost_and_retried_elsewhere(rabbitmq_url: str, processes: Processes,
                                                                         start_backend) -> None:
    steps = [dict(fan_out_step("sleep", 2, seconds=2), max_retries=1)]
    harness = start_backend([workflow("held", steps)])
    frozen = processes.worker(rabbitmq_url, "sleep", concurrency=1, prefetch=1, name="frozen")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("held")
    held = job_where(harness, workflow_id, lambda job: job["status"] == "processing" and job["worker"],
                     "a job processing on the first worker")
    frozen_id = held["worker"]
    # Frozen, its connection stays open: RabbitMQ keeps its order unacked until the heartbeat timeout (60 s),
    # far longer than this test. Only the backend's lost-worker rule can move the job.
    frozen.send_signal(signal.SIGSTOP)
    try:
        rescuer = processes.worker(rabbitmq_url, "sleep", concurrency=2, name="rescuer")
        assert harness.wait_finished(workflow_id, 60) == "completed"
        job = harness.backend.job(held["id"])
        notes = [entry[2] for entry in job["history"] if entry[0] == "retrying"]
        assert len(notes) == 1 and f"{frozen_id} lost (unseen for" in notes[0], job["history"]
        assert job["worker"] != frozen_id and job["attempts"] == 2
        assert [w.lost for w in harness.backend.workers() if w.instance_id == frozen_id] == [True]
        assert rescuer.poll() is None
    finally:
        frozen.kill()  # SIGKILL works on a stopped process; its order goes back to the (finished) queue
        frozen.wait(timeout=10)


def test_cancel_stops_a_running_job_and_frees_its_worker(rabbitmq_url: str, processes: Processes,
                                                         start_backend) -> None:
    harness = start_backend([workflow("long", [fan_out_step("sleep", 2, seconds=30)])])
    processes.worker(rabbitmq_url, "sleep", concurrency=1, prefetch=1, name="single")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("long")
    first = job_where(harness, workflow_id, lambda job: job["status"] == "processing", "the first job running")

    harness.backend.cancel_job(first["id"]).result(timeout=10)
    assert harness.backend.job(first["id"])["status"] == "stopped"
    # One slot, one order held: the second job can only start once the worker gave up the first (30 s sleep).
    second = job_where(harness, workflow_id, lambda job: job["id"] != first["id"] and job["status"] == "processing",
                       "the second job to start on the freed worker", timeout=15)
    assert second["worker"] == first["worker"]
    stopped = harness.backend.job(first["id"])
    assert stopped["history"][-1][0] == "stopped" and stopped["error"] == "cancelled by operator"

    harness.backend.cancel_job(second["id"]).result(timeout=10)
    # issue 15: jobs cancelled, none failed: the workflow ends "stopped" (it ended "error" before)
    assert harness.wait_finished(workflow_id, 10) == "stopped"
    wait_for(lambda: any(w.activity == "Idle" for w in harness.backend.workers()), 10, "the worker to be idle")


def test_a_timeout_stops_a_job_on_a_worker_process(rabbitmq_url: str, processes: Processes, start_backend) -> None:
    steps = [dict(fan_out_step("sleep", 1, seconds=30), timeout=1)]
    harness = start_backend([workflow("late", steps)])
    worker = processes.worker(rabbitmq_url, "sleep", concurrency=1, name="sleeper")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("late")
    assert harness.wait_finished(workflow_id, 20) == "error"
    (job,) = harness.jobs(workflow_id)
    assert job["error"] == "timed out after 1 s"
    wait_for(lambda: "timed out after 1 s; cancelling it" in processes.output(worker), 5, "the worker's log line")


def test_abort_keeps_queued_orders_from_running(rabbitmq_url: str, processes: Processes, start_backend,
                                                tmp_path: Path) -> None:
    jobs = 50
    effects = tmp_path / "effects"
    harness = start_backend([workflow("queue", [fan_out_step("record", jobs, seconds=0.5)])])
    worker = start_test_worker(processes, rabbitmq_url, effects, "record", name="recorder", concurrency=1)
    wait_consumers(rabbitmq_url, "job_record", 1)
    workflow_id = harness.start_workflow("queue")
    job_where(harness, workflow_id, lambda job: job["status"] == "completed", "the first job to complete")

    harness.backend.abort(workflow_id).result(timeout=10)
    completed = {job["id"] for job in harness.jobs(workflow_id) if job["status"] == "completed"}
    # Every order left in the queue reaches the worker and is answered without running.
    wait_for(lambda: processes.output(worker).count("order dropped (workflow aborted)") >= jobs - len(completed) - 1,
             30, "the worker to drop the queued orders")
    wait_for(lambda: queue_counts(rabbitmq_url, "job_record") == (0, 1), 10, "job_record to be empty")
    ran = [int(line) for line in (effects / "runs.log").read_text().split()]
    assert len(ran) == len(set(ran))
    in_hand = set(ran) - completed
    assert len(in_hand) <= 1, f"jobs run after the abort: {sorted(in_hand)} (completed before: {sorted(completed)})"
    statuses = {job["status"] for job in harness.jobs(workflow_id) if job["id"] not in completed}
    assert statuses == {"stopped"}


def test_malformed_messages_last_in_a_batch_are_dead_lettered_without_a_reconnect(rabbitmq_url: str,
                                                                                  start_backend) -> None:
    harness = start_backend([workflow("idle", [fan_out_step("noop", 1)])])
    garbage = [b"not json", b'{"status": "completed"}']
    publish_raw(rabbitmq_url, [("job_response", "job_completed", body) for body in garbage])
    wait_for(lambda: harness.backend.stats["garbage"] == 2, 10, "both malformed messages set aside")
    dead: list = []
    wait_for(lambda: (dead.extend(drain_queue(rabbitmq_url, "job_dead_letter")), len(dead) == 2)[1], 10,
             "two dead letters")
    # Acking the batch must not touch the rejected tags (a channel error that costs a reconnect).
    assert harness.backend.connection_state == "connected" and harness.backend.last_error is None
