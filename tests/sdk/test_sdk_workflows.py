"""Media Cloud AI's real SDK worker and ours on one vhost, through our backend and its API: a workflow mixing
our job types and an SDK job type completes in either start order, with its progress, errors, cancel, abort,
credentials, worker list and a shared job type."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import LABEL, SDK_TYPE, SdkWorkers, Stack, fan_out_step, wait_consumers, workflow


def sdk_step(step_id: int, *parents: int, mode: str = "one_for_one", **parameters: Any) -> dict[str, Any]:
    params = [{"id": key, "type": "integer" if isinstance(value, int) else "string", "value": value}
              for key, value in parameters.items()]
    step: dict[str, Any] = {"id": step_id, "name": SDK_TYPE, "label": "sdk", "mode": mode, "parameters": params}
    if parents:
        step["parent_ids"] = list(parents)
    return step


def errors(harness: Any, workflow_id: int) -> list[tuple[int, str, str | None]]:
    return [(job["id"], job["status"], job["error"]) for job in harness.jobs(workflow_id)
            if job["status"] != "completed"]


def noop_after(step_id: int, parent: int) -> dict[str, Any]:
    return {"id": step_id, "name": "noop", "label": "noop", "mode": "one_for_one", "parent_ids": [parent]}


MIXED = workflow("mixed", [fan_out_step("noop", 3), sdk_step(2, 1, sleep_ms=300), sdk_step(3, 2, mode="one_for_many"),
                           noop_after(4, 3)])


@pytest.mark.parametrize("sdk_first", [True, False], ids=["sdk-first", "backend-first"])
def test_a_workflow_mixing_our_job_types_and_an_sdk_job_type_completes(
        stack: Any, sdk_workers: SdkWorkers, processes: Any, rabbitmq_url: str, sdk_first: bool) -> None:
    ours: Stack = stack([MIXED])
    if sdk_first:
        sdk = sdk_workers.start(ours.api_url)
        harness = ours.start_backend()
    else:
        harness = ours.start_backend()
        sdk = sdk_workers.start(ours.api_url)
    processes.worker(rabbitmq_url, "noop", name="ours")
    wait_consumers(rabbitmq_url, "job_noop", 1)
    workflow_id = harness.start_workflow("mixed")
    assert harness.wait_finished(workflow_id, 25) == "completed", errors(harness, workflow_id)
    jobs = {job["id"]: job for job in harness.jobs(workflow_id)}
    by_step: dict[int, list[dict[str, Any]]] = {}
    for job in jobs.values():
        by_step.setdefault(job["step_id"], []).append(job)
    assert [len(by_step[s]) for s in (1, 2, 3)] == [3, 3, 1]
    one_for_one = sorted(path for job in by_step[2] for path in job["destination_paths"])
    assert one_for_one == [f"/input/noop/{i:04d}.dat.sdk" for i in range(3)]
    (many,) = by_step[3]
    assert sorted(many["destination_paths"]) == sorted(f"{p}.sdk" for p in one_for_one), many["parameters"]
    assert len(by_step[4]) == 3
    # Progress reached us: the SDK job was processing on the SDK worker (its docker_container_id).
    sdk_ids = {w.instance_id for w in harness.backend.workers() if w.label == LABEL}
    assert len(sdk_ids) == 1
    for job in by_step[2] + by_step[3]:
        assert job["worker"] in sdk_ids and [h[0] for h in job["history"]][:3] == ["queued", "processing",
                                                                                   "completed"]
    # Every SDK job ran there (at least once: an order the SDK refused while busy is sent again).
    assert set(sdk_workers.processed(sdk)) == {j["id"] for j in by_step[2] + by_step[3]}
