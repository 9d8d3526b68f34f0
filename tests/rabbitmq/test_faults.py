"""Faults on RabbitMQ: a worker killed or stopped mid-job, garbage on the response queues, every connection
of the vhost closed mid-run. In each case nothing is lost and nothing is counted twice."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import threading

import pytest

from stepflow_tui.backend.views import Update

from .conftest import (
    Processes,
    assert_each_completed_once,
    drain_queue,
    fan_out_step,
    publish_raw,
    queue_counts,
    vhost_of,
    wait_consumers,
    wait_for,
    workflow,
)


def processing_jobs(harness, workflow_id: int, at_least: int) -> list[dict]:
    """Wait until at least ``at_least`` jobs are processing; return them."""
    return wait_for(lambda: (lambda jobs: jobs if len(jobs) >= at_least else None)(
        harness.with_status(workflow_id, "processing")), 30, f"{at_least} job(s) processing")


def test_sigkill_worker_holding_jobs_redelivers_them(rabbitmq_url: str, processes: Processes,
                                                     start_backend) -> None:
    jobs = 12
    harness = start_backend([workflow("sleepy", [fan_out_step("sleep", jobs, seconds=0.5)])])
    doomed = processes.worker(rabbitmq_url, "sleep", concurrency=2, prefetch=4, name="doomed")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("sleepy")

    held = processing_jobs(harness, workflow_id, 2)
    doomed_id = held[0]["worker"]
    assert doomed_id and all(job["worker"] == doomed_id for job in held)
    doomed.send_signal(signal.SIGKILL)
    assert doomed.wait(timeout=10) == -signal.SIGKILL

    rescuer = processes.worker(rabbitmq_url, "sleep", concurrency=2, prefetch=4, name="rescuer")
    assert harness.wait_finished(workflow_id, 60) == "completed"
    assert rescuer.poll() is None

    records = harness.jobs(workflow_id)
    assert_each_completed_once(records, jobs)
    by_id = {job["id"]: job for job in records}
    # The jobs the killed worker was running were redelivered and finished by the other one.
    assert any(by_id[job["id"]]["worker"] not in (None, doomed_id) for job in held)
    step = harness.backend.workflow(workflow_id).steps[0]
    assert step.counts["completed"] == step.counts["total"] == jobs


def test_sigterm_busy_worker_exits_cleanly_and_nothing_is_lost(rabbitmq_url: str, processes: Processes,
                                                               start_backend) -> None:
    jobs = 12
    harness = start_backend([workflow("sleepy", [fan_out_step("sleep", jobs, seconds=0.5)])])
    busy = processes.worker(rabbitmq_url, "sleep", concurrency=2, prefetch=4, name="busy")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("sleepy")
    held = processing_jobs(harness, workflow_id, 2)

    busy.send_signal(signal.SIGTERM)
    # Exit 0 within the grace (30 s; the jobs take 0.5 s), having finished what it was running.
    assert busy.wait(timeout=35) == 0, processes.output(busy)
    assert "stopping" in processes.output(busy)
    wait_for(lambda: all(harness.backend.job(job["id"])["status"] == "completed" for job in held), 10,
             "the jobs running at SIGTERM to complete")
    assert harness.backend.workflow(workflow_id).status == "processing"  # the rest waits for a worker

    processes.worker(rabbitmq_url, "sleep", concurrency=2, prefetch=4, name="second")
    assert harness.wait_finished(workflow_id, 60) == "completed"
    assert_each_completed_once(harness.jobs(workflow_id), jobs)


def test_garbage_on_response_queues_is_set_aside(rabbitmq_url: str, processes: Processes, start_backend,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stepflow_tui.backend")
    jobs = 8
    harness = start_backend([workflow("sleepy", [fan_out_step("sleep", jobs, seconds=0.2)])])
    processes.worker(rabbitmq_url, "sleep", concurrency=1, name="worker")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("sleepy")
    processing_jobs(harness, workflow_id, 1)

    malformed = {
        ("job_completed", b"this is not JSON {"),
        ("job_completed", b'{"status": "completed", "destination_paths": []}'),  # no job_id
        ("job_completed", b'["a", "list"]'),
        ("job_error", b"\xff\xfe not utf-8 either"),
        ("job_error", b'{"job_id": "seven", "error": "boom"}'),  # job_id of the wrong type
        ("job_error", b'{"job_id": 3, "parameters": "not a list"}'),
    }
    unknown = [
        ("job_completed", json.dumps({"job_id": 987654, "status": "completed", "execution_duration": 0.1,
                                      "destination_paths": ["/x"], "parameters": []}).encode()),
        ("job_error", json.dumps({"job_id": 987654, "status": "error", "parameters": [
            {"id": "message", "type": "string", "value": "boom"}]}).encode()),
    ]
    publish_raw(rabbitmq_url, [("job_response", key, body) for key, body in sorted(malformed) + unknown])

    stats = harness.backend.stats
    wait_for(lambda: stats["garbage"] == len(malformed) and stats["unknown"] == len(unknown), 30,
             "the backend to set the garbage aside")
    assert harness.wait_finished(workflow_id, 60) == "completed"
    assert_each_completed_once(harness.jobs(workflow_id), jobs)

    # The malformed messages are in job_dead_letter, x-death naming the queue they came from; the
    # well-formed ones about an unknown job were acked, counted and logged.
    wait_for(lambda: (queue_counts(rabbitmq_url, "job_dead_letter") or (0, 0))[0] == len(malformed), 10,
             f"{len(malformed)} messages in job_dead_letter")
    dead = drain_queue(rabbitmq_url, "job_dead_letter")
    assert {(headers["x-death"][0]["queue"], body) for body, headers in dead} == malformed
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("malformed" in w for w in warnings) == len(malformed)
    assert sum("unknown job #987654" in w for w in warnings) == len(unknown)


def test_connections_closed_mid_run_both_sides_reconnect(rabbitmq_url: str, processes: Processes,
                                                         start_backend) -> None:
    jobs = 300
    harness = start_backend([workflow("many", [fan_out_step("sleep", jobs, seconds=0.02)])])
    states: list[str] = []
    reconnected = threading.Event()

    def on_update(update: Update) -> None:
        if update.connection:
            states.append(update.connection)
            if update.connection == "connected" and "reconnecting" in states:
                reconnected.set()

    harness.backend.subscribe(on_update)
    worker = processes.worker(rabbitmq_url, "sleep", concurrency=2, name="worker")
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("many")
    wait_for(lambda: len(harness.with_status(workflow_id, "completed")) >= 10, 30, "10 jobs completed")

    # Only this test's vhost: other test runs on the same broker keep their connections.
    closed = subprocess.run(["rabbitmqctl", "close_all_connections", "-p", vhost_of(rabbitmq_url), "test"],
                            capture_output=True, text=True, timeout=60)
    assert closed.returncode == 0, closed.stderr
    done_when_closed = len(harness.with_status(workflow_id, "completed"))
    assert done_when_closed < jobs, "the run finished before the connections were closed: nothing was tested"

    wait_for(reconnected.is_set, 30, "the backend to report reconnecting, then connected")
    print(f"connections closed with {done_when_closed}/{jobs} jobs completed; backend states: {states}")
    assert harness.wait_finished(workflow_id, 90) == "completed"
    assert_each_completed_once(harness.jobs(workflow_id), jobs)
    assert worker.poll() is None
    assert "lost the broker connection" in processes.output(worker)
