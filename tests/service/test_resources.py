"""Every resource and command of the API against a real backend (memory://, built-in job types)."""

from __future__ import annotations

from pathlib import Path

from helpers import wait_for

from .conftest import Client

TIMEOUT = 30.0


def start(client: Client, identifier: str, **parameters: str) -> int:
    answer = client.post("/api/workflows", {"identifier": identifier, "parameters": parameters})
    assert answer.status == 201, answer.body
    assert answer.headers["Location"] == f"/api/workflows/{answer.body['id']}"
    return answer.body["id"]


def status_of(client: Client, workflow_id: int) -> str:
    return client.get(f"/api/workflows/{workflow_id}").body["status"]


def wait_status(client: Client, workflow_id: int, status: str) -> None:
    wait_for(lambda: status_of(client, workflow_id) == status, TIMEOUT, f"workflow #{workflow_id} {status}")


def test_health_definitions_and_openapi(client: Client) -> None:
    health = client.get("/api/health").body
    assert health["status"] == "ok" and health["connection"] == "connected" and health["read_only"] is False
    assert health["broker"].startswith("memory://")
    definitions = client.get("/api/definitions").body
    identifiers = [d["identifier"] for d in definitions["data"]]
    assert "checksum_folder" in identifiers and definitions["total"] == len(identifiers)
    one = client.get("/api/definitions/failing_demo")
    assert one.status == 200 and one.body["steps"][1]["name"] == "fail" and one.body["version"] == "1.0.0"
    assert client.get("/api/definitions/nope").status == 404
    assert client.get("/api/openapi.json").body["openapi"].startswith("3.")


def test_workflow_lifecycle_reads(client: Client) -> None:
    first = start(client, "quick")
    wait_status(client, first, "completed")
    second = start(client, "quick")
    wait_status(client, second, "completed")
    listing = client.get("/api/workflows").body
    assert [w["id"] for w in listing["data"]] == [second, first] and listing["total"] == 2
    page = client.get("/api/workflows?offset=1&limit=1").body
    assert [w["id"] for w in page["data"]] == [first] and page["total"] == 2
    assert client.get("/api/workflows?identifier=slow").body["total"] == 0
    assert client.get("/api/workflows?status=completed").body["total"] == 2
    detail = client.get(f"/api/workflows/{first}").body
    assert detail["counts"]["completed"] == 1 and detail["running"] == 0
    jobs = client.get(f"/api/workflows/{first}/steps/1/jobs").body["data"]
    assert len(jobs) == 1 and jobs[0]["status"] == "completed"
    job = client.get(f"/api/jobs/{jobs[0]['id']}").body
    assert job["workflow_id"] == first and job["history"]
    assert client.get(f"/api/workflows/{first}/steps/9/jobs").status == 404
    assert client.get("/api/jobs/424242").status == 404
    assert client.get("/api/workflows/424242").status == 404
    workers = client.get("/api/workers")
    assert workers.status == 200 and isinstance(workers.body["data"], list)
    queues = client.get("/api/queues").body["data"]
    assert all({"name", "exists", "ready"} <= set(q) for q in queues)
    letters = client.get("/api/dead-letters")
    assert letters.status == 200 and letters.body["total"] == 0


def test_step_jobs_pages(client: Client, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for index in range(5):
        (data / f"f{index}.txt").write_text(str(index))
    workflow_id = start(client, "checksum_folder", source_dir=str(data), manifest=str(tmp_path / "m.sha256"))
    wait_status(client, workflow_id, "completed")
    view = client.get(f"/api/workflows/{workflow_id}").body
    many = max(view["steps"], key=lambda s: s["job_count"])
    base = f"/api/workflows/{workflow_id}/steps/{many['id']}/jobs"
    everything = [j["id"] for j in client.get(base).body["data"]]
    assert len(everything) == many["job_count"] >= 5
    assert [j["id"] for j in client.get(base + "?offset=1&limit=2").body["data"]] == everything[1:3]
    assert [j["id"] for j in client.get(f"{base}?after={everything[0]}&limit=2").body["data"]] == everything[1:3]
    assert [j["id"] for j in client.get(f"{base}?before={everything[-1]}&limit=1").body["data"]] == everything[-2:-1]
    assert client.get(base + "?status=error").body["data"] == []


def test_retry_job_and_workflow(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    workflow_id = start(client, "failing_demo", marker=str(marker))
    wait_status(client, workflow_id, "error")
    failed = client.get(f"/api/workflows/{workflow_id}/steps/2/jobs?status=error").body["data"]
    assert len(failed) == 1
    done = client.get(f"/api/workflows/{workflow_id}/steps/1/jobs").body["data"][0]
    refused = client.post(f"/api/jobs/{done['id']}/retry")
    assert refused.status == 409 and "completed" in refused.body["error"]["message"]
    assert client.post(f"/api/jobs/{failed[0]['id']}/retry").body == {"retried": 1}
    wait_status(client, workflow_id, "error")  # still failing: the marker is missing
    assert client.post(f"/api/workflows/{workflow_id}/retry", {"step_id": 9}).status == 400
    marker.write_text("fixed")
    answer = client.post(f"/api/workflows/{workflow_id}/retry", {"step_id": 2})
    assert answer.status == 200 and answer.body == {"retried": 1}
    wait_status(client, workflow_id, "completed")
    assert client.post(f"/api/workflows/{workflow_id}/retry").body == {"retried": 0}


def test_pause_resume_cancel_abort_delete(client: Client) -> None:
    workflow_id = start(client, "slow")
    wait_for(lambda: client.get(f"/api/workflows/{workflow_id}/steps/1/jobs?status=processing").body["data"],
             TIMEOUT, "the sleep job processing")
    assert client.post(f"/api/workflows/{workflow_id}/pause").body["status"] == "paused"
    assert client.post(f"/api/workflows/{workflow_id}/resume").status == 200
    job_id = client.get(f"/api/workflows/{workflow_id}/steps/1/jobs").body["data"][0]["id"]
    assert client.post(f"/api/jobs/{job_id}/cancel").body == {"cancelled": job_id}
    assert client.post(f"/api/jobs/{job_id}/cancel").status == 409
    other = start(client, "slow")
    # Its order sent (a job whose order went out is black-listed by the abort; one not sent never goes out).
    wait_for(lambda: client.get(f"/api/workflows/{other}/steps/1/jobs?status=processing").body["data"],
             TIMEOUT, "the other workflow's sleep job processing")
    refused = client.call("DELETE", f"/api/workflows/{other}")
    assert refused.status == 409 and "abort it before deleting" in refused.body["error"]["message"]
    assert client.post(f"/api/workflows/{other}/abort").body["status"] == "aborted"
    assert client.post(f"/api/workflows/{other}/abort").status == 409
    blacklist = client.get("/api/step_flow/blacklist").body
    assert blacklist["total"] == len(blacklist["data"]) and blacklist["total"] >= 1
    assert client.call("DELETE", f"/api/workflows/{other}").body == {"id": other, "status": "deleted"}
    assert client.get(f"/api/workflows/{other}").status == 404
    assert client.post("/api/workflows/424242/abort").status == 404


def test_start_errors(client: Client) -> None:
    unknown = client.post("/api/workflows", {"identifier": "nope"})
    assert unknown.status == 400 and unknown.body["error"]["field"] == "identifier"
    missing = client.post("/api/workflows", {"identifier": "checksum_folder"})
    assert missing.status == 400 and missing.body["error"]["field"] == "parameters"
    wrong = client.post("/api/workflows", {"identifier": "quick", "parameters": []})
    assert wrong.status == 400 and wrong.body["error"]["field"] == "parameters"


def test_redrive_and_prune(client: Client) -> None:
    answer = client.post("/api/dead-letters/redrive", {"dry_run": True})
    assert answer.status == 200 and answer.body["dry_run"] is True and isinstance(answer.body["counts"], dict)
    assert client.post("/api/dead-letters/redrive", {}).status == 200
    workflow_id = start(client, "quick")
    wait_status(client, workflow_id, "completed")
    assert client.post("/api/prune", {"older_than": "30d"}).body["workflow_ids"] == []
    dry = client.post("/api/prune", {"older_than": "0s", "dry_run": True}).body
    assert dry == {"workflow_ids": [workflow_id], "jobs": 1, "dry_run": True}
    assert client.get(f"/api/workflows/{workflow_id}").status == 200
    assert client.post("/api/prune", {"older_than": "0s"}).body["workflow_ids"] == [workflow_id]
    assert client.get(f"/api/workflows/{workflow_id}").status == 404
    bad = client.post("/api/prune", {"older_than": "soon"})
    assert bad.status == 400 and bad.body["error"]["field"] == "older_than"


def test_job_search_and_step_stats(client: Client) -> None:
    first = start(client, "quick")
    wait_status(client, first, "completed")
    (job,) = client.get(f"/api/workflows/{first}/steps/1/jobs").body["data"]
    found = client.get(f"/api/search/jobs?text=%23{job['id']}").body["data"]
    assert [(j["id"], j["position"]) for j in found] == [(job["id"], 0)]
    assert client.get("/api/search/jobs?text=nothing-like-this").body["data"] == []
    stats = client.get(f"/api/workflows/{first}/steps/1/stats").body
    assert stats["timed"] == 1 and stats["slowest"][0]["id"] == job["id"]
    assert client.get(f"/api/workflows/{first}/steps/9/stats").status == 404
