"""What an operator does and sees with a real SDK worker: its error message, cancel and abort, the worker list
(Idle / Busy, stopped after SIGTERM), a ``store: BACKEND`` credential resolved through our API, a job type
shared with `stepflow worker`, and an order the SDK keeps rejecting."""

from __future__ import annotations

import signal
import time
from typing import Any

from helpers import wait_for

from .conftest import LABEL, SDK_TYPE, SdkWorkers, Stack, fan_out_step, queue_counts, wait_consumers, workflow


def sdk_workflow(identifier: str, *parameters: dict[str, Any], count: int = 1) -> dict[str, Any]:
    """One one_for_one step of the SDK job type over ``count`` paths, with these parameters."""
    step = fan_out_step(SDK_TYPE, count)
    step["parameters"] += list(parameters)
    return workflow(identifier, [step])


def param(key: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"id": key, "type": "integer" if isinstance(value, int) else "string", "value": value, **extra}


def sdk_jobs(harness: Any, workflow_id: int) -> list[dict[str, Any]]:
    return sorted(harness.jobs(workflow_id), key=lambda job: job["id"])


def status_of(harness: Any, job_id: int) -> str:
    record = harness.backend.job(job_id)
    return record["status"] if record else "?"


def test_the_sdks_error_message_is_shown(stack: Any, sdk_workers: SdkWorkers) -> None:
    ours: Stack = stack([sdk_workflow("failing", param("fail", "disk on fire"))])
    harness = ours.start_backend()
    sdk_workers.start(ours.api_url)
    workflow_id = harness.start_workflow("failing")
    assert harness.wait_finished(workflow_id, 20) == "error"
    (job,) = sdk_jobs(harness, workflow_id)
    assert job["status"] == "error" and "disk on fire" in job["error"], job["error"]


def test_cancel_stops_the_sdk_job(stack: Any, sdk_workers: SdkWorkers) -> None:
    ours: Stack = stack([sdk_workflow("long", param("sleep_ms", 20_000))])
    harness = ours.start_backend()
    sdk = sdk_workers.start(ours.api_url)
    workflow_id = harness.start_workflow("long")
    (job,) = sdk_jobs(harness, workflow_id)
    wait_for(lambda: status_of(harness, job["id"]) == "processing", 15, "the SDK job to run")
    # Its progress shows: the worker published 10 (handle.publish_job_progression) before its long work.
    wait_for(lambda: harness.backend.job(job["id"])["progress"] == 10, 10, "the SDK job's progress")
    asked = time.monotonic()
    harness.backend.cancel_job(job["id"]).result(timeout=10)
    wait_for(lambda: f"stopped {job['id']}" in sdk_workers.log(sdk), 10, "the SDK to stop the job")
    assert time.monotonic() - asked < 5  # not the 20 s the job would have taken
    assert status_of(harness, job["id"]) == "stopped"


def test_abort_keeps_the_queued_sdk_orders_from_running(stack: Any, sdk_workers: SdkWorkers) -> None:
    # The SDK runs one job at a time: job 1 runs, jobs 2-4 wait (one of them prefetched by the SDK).
    ours: Stack = stack([sdk_workflow("batch", param("sleep_ms", 3000), count=4)])
    harness = ours.start_backend()
    sdk = sdk_workers.start(ours.api_url)
    workflow_id = harness.start_workflow("batch")
    first, *queued = sdk_jobs(harness, workflow_id)
    wait_for(lambda: status_of(harness, first["id"]) == "processing", 15, "the first SDK job to run")
    harness.backend.abort(workflow_id).result(timeout=10)
    wait_for(lambda: f"stopped {first['id']}" in sdk_workers.log(sdk), 10, "the running job to stop")
    # Every queued order reaches the SDK worker and is dropped there (measured: all three within 0.1 s of the
    # running job's stop, none run; "Consume black listed job: N" in its log).
    wait_for(lambda: all(f"process {job['id']}" in sdk_workers.log(sdk) or dropped(sdk_workers, sdk, job["id"])
                         for job in queued), 20, f"every queued order to be taken:\n{sdk_workers.log(sdk)}")
    assert [job["id"] for job in queued if f"process {job['id']}" in sdk_workers.log(sdk)] == []
    assert harness.backend.workflow(workflow_id).status == "aborted"


def dropped(sdk_workers: SdkWorkers, sdk: Any, job_id: int) -> bool:
    """The SDK took the order of a black-listed job and acked it without running it."""
    return f"Consume black listed job: {job_id}" in sdk_workers.log(sdk)


def test_the_sdk_worker_is_listed_idle_busy_then_stopped(stack: Any, sdk_workers: SdkWorkers) -> None:
    ours: Stack = stack([sdk_workflow("long", param("sleep_ms", 20_000))])
    harness = ours.start_backend()
    sdk = sdk_workers.start(ours.api_url)

    def listed() -> Any:
        found = [w for w in harness.backend.workers() if w.label == LABEL]
        return found[0] if found else None

    idle = wait_for(lambda: listed() if listed() and listed().activity == "Idle" else None, 15,
                    "the SDK worker, Idle")
    assert idle.job_types == (SDK_TYPE,)
    workflow_id = harness.start_workflow("long")
    (job,) = sdk_jobs(harness, workflow_id)
    busy = wait_for(lambda: listed() if listed().activity == "Busy" else None, 15, "the SDK worker, Busy")
    assert busy.current_jobs == (job["id"],) and not busy.lost
    harness.backend.cancel_job(job["id"]).result(timeout=10)
    sdk.send_signal(signal.SIGTERM)
    stopped = wait_for(lambda: listed() if listed().activity == "Terminated" else None, 15,
                       "the SDK worker, stopped")
    assert not stopped.lost


def test_a_backend_credential_is_resolved_by_the_sdk_through_our_api(stack: Any, sdk_workers: SdkWorkers) -> None:
    ours: Stack = stack([sdk_workflow("secret", param("secret", "STORAGE_KEY", store="BACKEND"))])
    ours.credentials.set("STORAGE_KEY", "s3cr3t")
    harness = ours.start_backend()
    sdk_workers.start(ours.api_url)
    workflow_id = harness.start_workflow("secret")
    assert harness.wait_finished(workflow_id, 20) == "completed"
    (job,) = sdk_jobs(harness, workflow_id)
    assert "secret:s3cr3t" in job["destination_paths"]


def test_an_sdk_worker_and_ours_share_one_job_type(stack: Any, sdk_workers: SdkWorkers, processes: Any,
                                                    rabbitmq_url: str) -> None:
    ours: Stack = stack([workflow("shared", [fan_out_step("noop", 12)])])
    harness = ours.start_backend()
    sdk_workers.start(ours.api_url, job_type="noop")  # declares job_noop exactly as stepflow worker does
    processes.worker(rabbitmq_url, "noop", concurrency=1, name="ours")
    wait_consumers(rabbitmq_url, "job_noop", 2)
    workflow_id = harness.start_workflow("shared")
    assert harness.wait_finished(workflow_id, 25) == "completed"
    ran_on = {job["worker"] for job in sdk_jobs(harness, workflow_id)}
    sdk_ids = {w.instance_id for w in harness.backend.workers() if w.label == LABEL}
    assert len(ran_on) == 2 and len(ran_on & sdk_ids) == 1, (ran_on, sdk_ids)  # each ran some of the jobs


def test_an_order_the_sdk_keeps_rejecting_fails_with_the_reason(stack: Any, sdk_workers: SdkWorkers) -> None:
    ours: Stack = stack([sdk_workflow("bogus", param("bogus", "x"))])
    harness = ours.start_backend()
    sdk_workers.start(ours.api_url)
    workflow_id = harness.start_workflow("bogus")
    (job,) = sdk_jobs(harness, workflow_id)
    noted = wait_for(lambda: (harness.backend.job(job["id"]) or {}).get("error"), 10, "the first rejection")
    assert noted.startswith("order rejected by a worker (1 time)")
    assert harness.wait_finished(workflow_id, 25) == "error"
    error = harness.backend.job(job["id"])["error"]
    assert error.startswith("order rejected by a worker (3 times)") and "'bogus'" in error, error


def test_an_sdk_worker_started_after_an_abort_reads_the_black_list_from_our_api(
        stack: Any, sdk_workers: SdkWorkers, rabbitmq_url: str) -> None:
    ours: Stack = stack([sdk_workflow("batch", param("sleep_ms", 100), count=3), sdk_workflow("after")])
    harness = ours.start_backend()
    first = sdk_workers.start(ours.api_url)  # declares job_sdktest, then goes away
    first.send_signal(signal.SIGTERM)
    wait_for(lambda: first.poll() is not None, 15, "the first SDK worker to exit")
    workflow_id = harness.start_workflow("batch")
    wait_for(lambda: (queue_counts(rabbitmq_url, "job_sdktest") or (0, 0))[0] == 3, 10, "3 orders queued")
    harness.backend.abort(workflow_id).result(timeout=10)  # nobody hears the black-list broadcast now
    dropped_ids = [job["id"] for job in sdk_jobs(harness, workflow_id)]
    assert all(job_id in ours.backend.dropped_job_ids() for job_id in dropped_ids)
    second = sdk_workers.start(ours.api_url)  # GET /api/step_flow/blacklist at start-up
    after = harness.start_workflow("after")
    assert harness.wait_finished(after, 20) == "completed"
    log = sdk_workers.log(second)
    assert f"Black listed jobs: BlackList {{ job_ids: {dropped_ids} }}" in log, log[-2000:]
    assert not set(sdk_workers.processed(second)) & set(dropped_ids)
