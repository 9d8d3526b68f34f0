"""StepFlow's REST API as a StepFlow client sees it, and /metrics as Prometheus reads it.

The expectations are written from media-io/ex_step_flow (lib/step_flow/router.ex, controllers/*.ex and
view/*.ex, v0.2.12), not from this project's code: the field sets below are those the views render, the
query parameters those the contexts read (page from 0, size, Phoenix lists as ``name[]``), the errors those
WorkflowDefinitionView's ``error.json`` renders. A real Backend on memory:// (in-process workers announce
themselves on the same broker) behind the real aiohttp application.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import step, wait_for, workflow, write_workflows
from prometheus_client.parser import text_string_to_metric_families

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker.memory import MemoryBroker
from stepflow_tui.core.definitions import load_definitions
from stepflow_tui.plugins import load_registry
from stepflow_tui.service import ServiceThread, create_app
from stepflow_tui.worker.runner import Worker

from .conftest import TOKEN, Client

TIMEOUT = 30.0
API = "/api/step_flow"
# --- StepFlow's views (lib/step_flow/view/*.ex) -------------------------------------------------------------
WORKFLOW_CREATED = {"schema_version", "id", "identifier", "version_major", "version_minor", "version_micro",
                    "tags", "reference", "parameters", "created_at"}  # workflow_view.ex "workflow_created.json"
WORKFLOW = WORKFLOW_CREATED | {"steps"}  # "workflow.json" (+ artifacts, jobs, rights when loaded)
JOB = {"id", "workflow_id", "name", "step_id", "params", "progressions", "status", "inserted_at", "updated_at"}
STATUS = {"id", "state", "description", "inserted_at"}  # status_view.ex "state.json"
PROGRESSION = {"id", "datetime", "docker_container_id", "job_id", "progression"}
JOB_STATES = {"queued", "skipped", "processing", "retrying", "error", "completed"}  # Jobs.Status.StateEnum
STEP_JOBS = {"total", "completed", "errors", "processing", "queued", "skipped"}  # Workflows.get_step_status
DEFINITION_SIMPLE = {"id", "identifier", "label", "version_major", "version_minor", "version_micro"}
DEFINITION_FULL = DEFINITION_SIMPLE | {"schema_version", "icon", "tags", "start_parameters", "parameters"}
DEFINITION_WITH_STEPS = DEFINITION_SIMPLE | {"icon", "tags", "start_parameters", "parameters", "steps"}
WORKER_DEFINITION = {"id", "queue_name", "label", "short_description", "description", "version", "parameters",
                     "created_at"}
# The Ecto types of those fields (workflows/workflow.ex, jobs/job.ex, jobs/status.ex): what a client decodes
WORKFLOW_TYPES = {"schema_version": str, "id": int, "identifier": str, "version_major": int, "version_minor": int,
                  "version_micro": int, "tags": list, "reference": (str, type(None)), "steps": list,
                  "parameters": list, "created_at": str}
JOB_TYPES = {"id": int, "workflow_id": int, "name": str, "step_id": int, "params": list, "progressions": list,
             "status": list, "inserted_at": str, "updated_at": str}
STATUS_TYPES = {"id": int, "state": str, "description": dict, "inserted_at": str}
STATISTICS = {"processing", "error", "completed", "bins"}
BIN = {"bin", "start_date", "end_date", "processing", "error", "completed"}


def definitions(tmp_path: Path) -> dict[str, Any]:
    path = write_workflows(tmp_path / "workflows.json", [
        workflow("greet", [step(1, "noop", parameters=[{"id": "message", "type": "template",
                                                         "value": "{text}-{count}"}])],
                 tags=["demo"], parameters=[{"id": "text", "type": "string", "value": "to_change"}],
                 start_parameters=[
                     {"id": "text", "label": "Text", "type": "string", "default": "hi"},
                     {"id": "count", "label": "Count", "type": "number", "required": True}]),
        workflow("slow", [step(1, "sleep", parameters=[{"id": "seconds", "type": "number", "value": 60}])]),
        workflow("flaky", [step(1, "fail", parameters=[
            {"id": "unless_exists", "type": "string", "value": str(tmp_path / "fixed")}])]),
        workflow("shouting", [step(1, "shout")]),  # only the worker started by a test runs it
    ])
    return {d.identifier: d for d in load_definitions(path)}


def make_backend(tmp_path: Path, url: str) -> Backend:
    config = BackendConfig(broker_url=url, db_path=tmp_path / "state.json", definitions=definitions(tmp_path),
                           registry=load_registry(), local_concurrency=4)
    backend = Backend(config)
    backend.start()
    assert backend.wait_until_running(10)
    return backend


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """``served(token=None)`` -> a client of a fresh app around a fresh Backend on the same state and broker
    (call it again after ``stop_all`` to restart)."""
    url = f"memory://sfapi-{uuid.uuid4().hex[:10]}"
    running: list[tuple[Backend, ServiceThread]] = []

    def start(token: str | None = None) -> Client:
        backend = make_backend(tmp_path, url)
        thread = ServiceThread(create_app(backend, token=token))
        running.append((backend, thread))
        return Client(thread.start(), token)

    def stop_all() -> None:
        while running:
            backend, thread = running.pop()
            thread.stop()
            backend.stop()

    start.stop_all = stop_all  # type: ignore[attr-defined]
    start.broker_url = url  # type: ignore[attr-defined]
    yield start
    stop_all()
    MemoryBroker.drop(url)


@pytest.fixture
def client(served: Callable[..., Client]) -> Client:
    return served()


def launch(client: Client, identifier: str, path: str = "/launch_workflow", **body: Any) -> dict[str, Any]:
    body.setdefault("reference", f"ref-{identifier}")  # StepFlow's workflow changeset requires one
    answer = client.post(API + path, {"workflow_identifier": identifier, **body})
    assert answer.status == 201, answer.body
    assert set(answer.body["data"]) == WORKFLOW_CREATED
    return answer.body["data"]


def show(client: Client, workflow_id: int) -> dict[str, Any]:
    answer = client.get(f"{API}/workflows/{workflow_id}")
    assert answer.status == 200, answer.body
    return answer.body["data"]


def jobs_in(client: Client, workflow_id: int, state: str) -> list[dict[str, Any]]:
    """Jobs of the workflow whose last status is ``state`` (StepFlow: the last status entry is the job's)."""
    return [job for job in show(client, workflow_id)["jobs"] if job["status"] and job["status"][-1]["state"] == state]


def wait_jobs(client: Client, workflow_id: int, state: str, count: int = 1) -> list[dict[str, Any]]:
    return wait_for(lambda: len(found := jobs_in(client, workflow_id, state)) >= count and found, TIMEOUT,
                    f"{count} job(s) of workflow #{workflow_id} {state}")


def assert_types(found: dict[str, Any], types: dict[str, Any]) -> None:
    wrong = {key: type(found[key]).__name__ for key, kind in types.items() if not isinstance(found[key], kind)}
    assert not wrong, wrong


def assert_reason(answer: Any, status: int = 422) -> str:
    """WorkflowDefinitionView's error.json: ``{"errors": [{"reason", "message"}]}``; its reason."""
    assert answer.status == status, (answer.status, answer.body)
    errors = answer.body["errors"]
    assert isinstance(errors, list) and errors[0]["reason"] and errors[0]["message"], answer.body
    return errors[0]["reason"]


def assert_stepflow_error(answer: Any, status: int = 422) -> None:
    """Either of StepFlow's error bodies: error.json's reasons, or ChangesetView's ``{field: [messages]}``."""
    assert answer.status == status, (answer.status, answer.body)
    errors = answer.body["errors"]
    if isinstance(errors, dict):
        assert errors and all(isinstance(m, list) and m and all(isinstance(x, str) for x in m)
                              for m in errors.values()), answer.body
    else:
        assert_reason(answer, status)


def test_launch_with_parameters_show_and_list(client: Client) -> None:
    created = launch(client, "greet", parameters={"count": 3, "text": "hello", "not_a_parameter": 1},
                     reference="media-42")
    assert created["identifier"] == "greet" and created["reference"] == "media-42" and created["tags"] == ["demo"]
    # test/api/workflows_test.exs "valid with valid parameters": the value lands in the parameters list
    assert [p for p in created["parameters"] if p["id"] == "text"] == [{"id": "text", "type": "string",
                                                                        "value": "hello"}]
    assert {"id": "count", "value": 3}.items() <= next(p for p in created["parameters"]
                                                       if p["id"] == "count").items()
    [job] = wait_jobs(client, created["id"], "completed")
    detail = show(client, created["id"])
    assert WORKFLOW | {"jobs", "artifacts", "rights"} <= set(detail)
    assert detail["reference"] == "media-42" and detail["version_major"] == 1
    [first_step] = detail["steps"]
    assert first_step["status"] == "completed" and set(first_step["jobs"]) == STEP_JOBS
    assert first_step["jobs"]["completed"] == first_step["jobs"]["total"] == 1
    assert set(job) == JOB and job["workflow_id"] == created["id"] and job["step_id"] == 1
    assert_types(detail, WORKFLOW_TYPES)
    assert_types(job, JOB_TYPES)
    for entry in job["status"]:
        assert_types(entry, STATUS_TYPES)
    assert {"id": "message", "type": "string", "value": "hello-3"}.items() <= job["params"][0].items()
    assert [s["state"] for s in job["status"]][-1] == "completed"
    assert all(set(s) == STATUS and s["state"] in JOB_STATES for s in job["status"])
    assert all(set(p) == PROGRESSION for p in job["progressions"])

    other = launch(client, "greet", path="/workflows", parameters={"count": "1"})  # POST /workflows: the same
    listing = client.get(f"{API}/workflows?size=1").body
    assert listing["total"] == 2 and [w["id"] for w in listing["data"]] == [other["id"]]
    assert WORKFLOW <= set(listing["data"][0])
    assert [w["id"] for w in client.get(f"{API}/workflows?page=1&size=1").body["data"]] == [created["id"]]
    assert client.get(f"{API}/workflows?identifier=slow").body["total"] == 0
    assert client.get(f"{API}/workflows?workflow_ids[]=greet&workflow_ids[]=slow").body["total"] == 2
    assert [w["id"] for w in client.get(f"{API}/workflows?ids[]={created['id']}").body["data"]] == [created["id"]]
    wait_jobs(client, other["id"], "completed")
    assert client.get(f"{API}/workflows?states[]=completed").body["total"] == 2
    assert client.get(f"{API}/workflows?states[]=error").body["total"] == 0
    assert client.get(f"{API}/workflows?after_date=2000-01-01&before_date=2999-12-31").body["total"] == 2
    assert client.get(f"{API}/workflows?before_date=2000-01-01").body["total"] == 0


def test_definitions_listed_shown_and_posted_across_restarts(served: Callable[..., Client]) -> None:
    client = served()
    listing = client.get(f"{API}/definitions").body
    assert listing["total"] == 4 and all(set(d) == DEFINITION_FULL for d in listing["data"])
    simple = client.get(f"{API}/definitions?mode=simple&size=3&page=1").body
    assert simple["total"] == 4 and len(simple["data"]) == 1 and set(simple["data"][0]) == DEFINITION_SIMPLE
    assert [d["identifier"] for d in client.get(f"{API}/definitions?search=GREET").body["data"]] == ["greet"]
    assert client.get(f"{API}/definitions?versions[]=1.0.0").body["total"] == 4
    assert client.get(f"{API}/definitions?versions[]=9.9.9").body["total"] == 0
    one = client.get(f"{API}/definitions/greet").body["data"]
    assert set(one) == DEFINITION_WITH_STEPS and one["steps"][0]["name"] == "noop"
    assert [p["id"] for p in one["start_parameters"]] == ["text", "count"]
    assert "Unable to locate" in assert_reason(client.get(f"{API}/definitions/nope"))

    posted = client.post(f"{API}/definitions", workflow("posted", [step(1, "noop")], version_major=2))
    assert posted.status == 201 and posted.body["data"]["identifier"] == "posted"
    assert "steps" in assert_reason(client.post(f"{API}/definitions", {"identifier": "broken", "label": "x"}))
    created = launch(client, "posted", reference="kept")
    newer = client.post(f"{API}/definitions", workflow("posted", [step(1, "noop"), step(2, "noop", parent_ids=[1])],
                                                        version_major=3))
    assert newer.status == 201 and len(newer.body["data"]["steps"]) == 2
    assert [s["id"] for s in show(client, created["id"])["steps"]] == [1]  # started from version 2
    served.stop_all()  # type: ignore[attr-defined]

    client = served()  # a new backend and app on the same state: the posted definition and the reference stay
    assert client.get(f"{API}/definitions/posted").body["data"]["version_major"] == 3
    assert client.get(f"{API}/definitions").body["total"] == 5
    assert show(client, created["id"])["reference"] == "kept"


def test_jobs_read_and_encoded_a_page_at_a_time(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """A workflow's jobs are read and encoded a page at a time (pages of 2 jobs, slices of 2 here): the answer
    is json.dumps's text of the whole, every job once in its step's order, a list's first ones cut mid-page."""
    from stepflow_tui.service import encoding, stepflow_queries

    monkeypatch.setattr(stepflow_queries, "_READ_PAGE", 2)
    monkeypatch.setattr(encoding, "SLICE", 2)
    monkeypatch.setattr(stepflow_queries, "LIST_JOBS", 3)
    paths = [f"/in/{i}.dat" for i in range(5)]
    fan = workflow("fan", [
        step(1, "noop", parameters=[{"id": "source_paths", "type": "array_of_strings", "value": paths}]),
        step(2, "noop", parent_ids=[1], mode="one_for_many")])
    assert client.post(f"{API}/definitions", fan).status == 201
    created = launch(client, "fan")
    wait_jobs(client, created["id"], "completed", 6)
    answer = client.get(f"{API}/workflows/{created['id']}")
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.payload == json.dumps(answer.body).encode("utf-8")
    jobs = answer.body["data"]["jobs"]
    assert [job["step_id"] for job in jobs] == [1, 1, 1, 1, 1, 2] and len({job["id"] for job in jobs}) == 6
    assert [job["params"][0]["value"] for job in jobs[:5]] == paths
    listed = client.get(f"{API}/workflows?identifier=fan")
    assert listed.payload == json.dumps(listed.body).encode("utf-8")
    assert listed.body["data"][0]["jobs"] == jobs[:3]


def test_events_abort_retry_delete_pause(client: Client, tmp_path: Path) -> None:
    slow = launch(client, "slow")
    wait_jobs(client, slow["id"], "processing")
    paused = client.post(f"{API}/workflows/{slow['id']}/events", {"event": "pause"})
    assert paused.status == 200 and paused.body == {"status": "ok"}
    assert client.post(f"{API}/workflows/{slow['id']}/events", {"event": "resume"}).body == {"status": "ok"}
    assert client.post(f"{API}/workflows/{slow['id']}/events", {"event": "abort"}).body == {"status": "ok"}
    wait_jobs(client, slow["id"], "skipped")  # StepFlow skips the jobs of an aborted workflow
    assert client.post(f"{API}/workflows/{slow['id']}/events", {"event": "abort"}).body == {"status": "ok"}

    flaky = launch(client, "flaky")
    [failed] = wait_jobs(client, flaky["id"], "error")
    assert failed["status"][-1]["description"]["message"]
    (tmp_path / "fixed").write_text("now it passes")
    retried = client.post(f"{API}/workflows/{flaky['id']}/events", {"event": "retry", "job_id": failed["id"]})
    assert retried.status == 200 and retried.body == {"status": "ok"}
    [done] = wait_jobs(client, flaky["id"], "completed")
    assert [s["state"] for s in done["status"]].count("error") == 1
    again = client.post(f"{API}/workflows/{flaky['id']}/events", {"event": "retry", "job_id": done["id"]})
    assert again.status == 403 and again.body["status"] == "error"  # StepFlow: "illegal operation"

    deleted = client.post(f"{API}/workflows/{flaky['id']}/events", {"event": "delete"})
    assert deleted.body == {"status": "ok"} and client.get(f"{API}/workflows/{flaky['id']}").status == 404
    running = launch(client, "slow")
    wait_jobs(client, running["id"], "processing")
    answer = client.call("DELETE", f"{API}/workflows/{running['id']}")  # a running workflow too, as StepFlow
    assert answer.status == 204 and client.get(f"{API}/workflows/{running['id']}").status == 404
    assert client.get(f"{API}/workflows").body["total"] == 1


def test_statistics_workers_and_jobs(client: Client) -> None:
    first = launch(client, "greet", parameters={"count": 1})
    second = launch(client, "greet", parameters={"count": 2})
    for created in (first, second):
        wait_jobs(client, created["id"], "completed")
    stats = client.get(f"{API}/workflows_statistics").body["data"]
    assert set(stats) == STATISTICS and stats["completed"] == 2 and stats["processing"] == 2
    assert stats["bins"] and all(set(b) == BIN for b in stats["bins"])
    assert sum(b["completed"] for b in stats["bins"]) == 2
    assert client.get(f"{API}/workflows_statistics?identifiers[]=slow").body["data"]["completed"] == 0
    assert client.get(f"{API}/workflows_statistics?start_date=2000-01-01T00:00:00&end_date=2000-01-02T00:00:00"
                      "&time_interval=3600").body["data"] == {"processing": 0, "error": 0, "completed": 0,
                                                               "bins": []}

    workers = wait_for(lambda: client.get(f"{API}/worker_definitions").body["total"] and
                       client.get(f"{API}/worker_definitions?size=100").body, TIMEOUT, "workers announced")
    assert all(set(w) == WORKER_DEFINITION for w in workers["data"])
    assert {"job_noop", "job_sleep", "job_fail"} <= {w["queue_name"] for w in workers["data"]}

    mine = client.get(f"{API}/jobs?workflow_id={second['id']}").body
    assert mine["total"] == 1 and [j["workflow_id"] for j in mine["data"]] == [second["id"]]
    assert set(mine["data"][0]) == JOB
    every = client.get(f"{API}/jobs?job_type=noop").body
    assert every["total"] == 2 and [j["workflow_id"] for j in every["data"]] == [second["id"], first["id"]]
    assert client.get(f"{API}/jobs?job_type=job_noop&size=1&page=1").body["data"][0]["workflow_id"] == first["id"]
    assert client.get(f"{API}/jobs?job_type=sleep").body == {"data": [], "total": 0}
    assert client.get(f"{API}/jobs?workflow_id={first['id']}&step_id=2").body["total"] == 0


BAD_REQUESTS: list[tuple[str, str, Any]] = [
    ("POST", "/launch_workflow", b"{not json"),
    ("POST", "/launch_workflow", [1, 2]),
    ("POST", "/launch_workflow", {}),
    ("POST", "/launch_workflow", {"workflow_identifier": 12}),
    ("POST", "/launch_workflow", {"workflow_identifier": "nope"}),
    ("POST", "/workflows", {"workflow_identifier": "greet", "parameters": [1], "reference": "r"}),
    ("POST", "/workflows", {"workflow_identifier": "greet", "parameters": {}, "reference": "r"}),  # count required
    ("POST", "/workflows", {"workflow_identifier": "greet", "parameters": {"count": "many"}, "reference": "r"}),
    ("POST", "/workflows", {"workflow_identifier": "greet", "parameters": {"count": 1}, "reference": 5}),
    ("POST", "/workflows", {"workflow_identifier": "greet", "parameters": {"count": 1}}),  # no reference
    ("POST", "/workflows", {"workflow_identifier": "greet", "parameters": {"count": 1}, "reference": ""}),
    ("POST", "/definitions", {"identifier": "Not Valid!"}),
    ("POST", "/definitions", {"workflow_definition": "text"}),
    ("POST", "/workflows/{id}/events", {}),
    ("POST", "/workflows/{id}/events", {"event": "explode"}),
    ("POST", "/workflows/{id}/events", {"event": "retry"}),
    ("POST", "/workflows/{id}/events", {"event": "retry", "job_id": "abc"}),
    ("POST", "/workflows/{id}/events", {"event": "retry", "job_id": 987654}),
    ("POST", "/workflows/{id}/events", {"event": "retry", "job_id": True}),
    ("GET", "/workflows/abc", None),
    ("GET", "/workflows?page=abc", None),
    ("GET", "/workflows?size=0", None),
    ("GET", "/workflows?size=-1", None),
    ("GET", "/workflows?size=99999999999999999999999", None),
    ("GET", "/workflows?before_date=yesterday", None),
    ("GET", "/workflows?version_major=x", None),
    ("GET", "/workflows?ids[]=x", None),
    ("GET", "/definitions?mode=weird", None),
    ("GET", "/definitions?page=-1", None),
    ("GET", "/workflows_statistics?start_date=garbage", None),
    ("GET", "/workflows_statistics?time_interval=soon", None),
    ("GET", "/workflows_statistics?time_interval=999999999999999999", None),
    ("GET", "/jobs?workflow_id=one", None),
    ("GET", "/worker_definitions?size=x", None),
]


def test_bad_requests_are_422_with_a_reason_never_500(client: Client) -> None:
    workflow_id = launch(client, "greet", parameters={"count": 1})["id"]
    for method, path, body in BAD_REQUESTS:
        path = API + path.replace("{id}", str(workflow_id))
        raw = body if isinstance(body, bytes) else None
        answer = client.call(method, path, None if raw else body, raw=raw)
        assert answer.status == 422, (method, path, body, answer.status, answer.body)
        assert_stepflow_error(answer)
    assert_reason(client.get(f"{API}/workflows/424242"), 404)
    assert_reason(client.post(f"{API}/workflows/424242/events", {"event": "abort"}), 404)
    assert client.call("PUT", f"{API}/workflows/{workflow_id}", {}).status == 403
    # the bodies StepFlow's own tests expect (test/api/workflows_test.exs, workflow_definitions_test.exs)
    incorrect = "Incorrect parameters"
    assert client.post(f"{API}/launch_workflow", {}).body == {"errors": [
        {"message": incorrect, "reason": "Missing Workflow identifier parameter"}]}
    assert client.get(f"{API}/definitions/empty_workflow.json").body == {"errors": [
        {"message": incorrect, "reason": "Unable to locate workflow with this identifier"}]}
    no_reference = client.post(f"{API}/workflows", {"workflow_identifier": "greet", "parameters": {"count": 1}})
    assert no_reference.status == 422 and no_reference.body == {"errors": {"reference": ["can't be blank"]}}


def test_stepflow_login_and_bare_token(served: Callable[..., Client]) -> None:
    client = served(token=TOKEN)
    login = client.post("/api/sessions", {"session": {"email": "ops@example.com", "password": TOKEN}}, token=None)
    token = login.body["access_token"]
    assert client.get(f"{API}/workflows", token=None).status == 401
    assert client.get(f"{API}/workflows", token=None, headers={"Authorization": token}).status == 200
    assert client.get(f"{API}/workflows", token=token).status == 200  # Bearer <token>
    assert client.get("/metrics", token=None).status == 401
    assert client.get("/metrics", token=None, headers={"Authorization": token}).status == 200
    assert client.get(f"{API}/metrics", token=token).status == 200  # where StepFlow's router served them


def scrape(client: Client) -> dict[str, Any]:
    answer = client.get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(answer.body.decode())}


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float | None:
    return next((s.value for s in families[family].samples if s.name == sample and s.labels == labels), None)


def test_metrics_follow_the_state(client: Client) -> None:
    before = scrape(client)
    assert before["step_flow_jobs_completed"].type == "counter"
    assert value(before, "step_flow_jobs_completed", "step_flow_jobs_completed_total", name="noop") is None
    for count in (1, 2):
        launch(client, "greet", parameters={"count": count})
    launch(client, "flaky")

    def settled() -> dict[str, Any] | None:
        families = scrape(client)
        done = value(families, "step_flow_jobs_completed", "step_flow_jobs_completed_total", name="noop")
        failed = value(families, "step_flow_jobs_error", "step_flow_jobs_error_total", name="fail")
        return families if done == 2 and failed == 1 else None

    families = wait_for(settled, TIMEOUT, "2 noop jobs completed and 1 fail job in error in /metrics")
    assert value(families, "step_flow_workflows_created", "step_flow_workflows_created_total", identifier="greet") == 2
    assert value(families, "step_flow_workflows_completed", "step_flow_workflows_completed_total",
                 identifier="greet") == 2
    assert value(families, "step_flow_workflows_error", "step_flow_workflows_error_total", identifier="flaky") == 1
    assert value(families, "step_flow_jobs_created", "step_flow_jobs_created_total", name="noop") == 2
    histogram = families["stepflow_job_duration_seconds"]
    assert histogram.type == "histogram"
    assert value(families, "stepflow_job_duration_seconds", "stepflow_job_duration_seconds_count",
                 job_type="noop") == 2
    assert value(families, "stepflow_job_duration_seconds", "stepflow_job_duration_seconds_bucket",
                 job_type="noop", le="+Inf") == 2
    consumers = wait_for(lambda: value(scrape(client), "stepflow_queue_consumers", "stepflow_queue_consumers",
                                       queue="job_noop"), TIMEOUT, "the job_noop queue polled")
    assert consumers >= 1
    assert value(families, "stepflow_workers", "stepflow_workers", state="lost") == 0
    assert sum(s.value for s in families["stepflow_workers"].samples) >= 1
    again = scrape(client)  # a second scrape counts nothing twice
    assert value(again, "step_flow_jobs_completed", "step_flow_jobs_completed_total", name="noop") == 2
    assert value(again, "stepflow_job_duration_seconds", "stepflow_job_duration_seconds_count", job_type="noop") == 2


def test_a_worker_that_announces_itself_becomes_a_worker_definition(served: Callable[..., Client]) -> None:
    client = served()
    worker = Worker(served.broker_url, {"shout": lambda ctx: {}}, label="Shouter",  # type: ignore[attr-defined]
                    status_interval=0.2, name="shouter")
    worker.start_in_thread()
    try:
        def shouter() -> dict[str, Any] | None:
            found = client.get(f"{API}/worker_definitions?size=100").body["data"]
            return next((w for w in found if w["queue_name"] == "job_shout"), None)

        definition = wait_for(shouter, TIMEOUT, "the shout worker in /worker_definitions")
        assert set(definition) == WORKER_DEFINITION and definition["label"] == "Shouter"
        assert isinstance(definition["id"], int) and definition["version"]
        created = launch(client, "shouting")
        wait_jobs(client, created["id"], "completed")
    finally:
        worker.stop(grace=1.0)
        worker.wait_stopped(10)
    wait_for(lambda: shouter() is None, TIMEOUT, "the terminated worker gone from /worker_definitions")


def test_statistics_bins_count_back_from_the_end_date() -> None:
    """workflow_view.ex "statistics.json": bin n covers [end - (n+1)·interval, end - n·interval]."""
    from types import SimpleNamespace

    from stepflow_tui.service.stepflow_views import statistics_json

    def run(status: str, created: str, finished: str | None) -> SimpleNamespace:
        return SimpleNamespace(status=status, created_at=created, finished_at=finished)

    end = datetime(2026, 1, 1, 12, 0, 0)
    views = [run("completed", "2026-01-01T11:00:30.5Z", "2026-01-01T11:59:10Z"),
             run("error", "2026-01-01T11:58:00Z", "2026-01-01T11:58:30Z"),
             run("processing", "2026-01-01T10:00:00Z", None),  # before the start: not counted
             run("aborted", "2026-01-01T11:59:59Z", "2026-01-01T11:59:59.9Z")]
    data = statistics_json(views, datetime(2026, 1, 1, 11, 0, 0), end, 60)["data"]
    assert (data["processing"], data["completed"], data["error"]) == (3, 1, 1)
    bins = {b["bin"]: b for b in data["bins"]}
    assert sorted(bins) == [0, 1, 2, 59]
    assert bins[0] == {"bin": 0, "start_date": "2026-01-01 11:59:00", "end_date": "2026-01-01 12:00:00",
                       "processing": 1, "error": 0, "completed": 1}
    assert (bins[1]["processing"], bins[1]["error"]) == (0, 1)  # the error workflow ended 90 s before the end
    assert bins[2]["processing"] == 1 and bins[59]["processing"] == 1


def test_posted_definitions_file_that_went_bad_is_logged_not_fatal(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from stepflow_tui.service.stepflow_files import StepFlowFiles

    files = StepFlowFiles(tmp_path / "state.json")
    files.add_definition(workflow("kept", [step(1, "noop")]))
    files.set_reference(7, "ref")
    text = files.definitions_path.read_text()
    files.definitions_path.write_text(text.replace('"workflows": [', '"workflows": [{"identifier": "Bad!"}, '))
    again = StepFlowFiles(tmp_path / "state.json")
    assert [d.identifier for d in again.load()] == ["kept"] and again.reference(7) == "ref"
    assert "no longer valid" in caplog.text
    files.definitions_path.write_text("{not json")
    assert StepFlowFiles(tmp_path / "state.json").load() == [] and "cannot be read" in caplog.text


def test_job_duration_trusts_no_foreign_figure() -> None:
    from stepflow_tui.service.metrics import job_duration

    times = {"started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:02.5Z"}
    assert job_duration({"execution_duration": 1.5, **times}) == 1.5
    assert job_duration({"execution_duration": None, **times}) == 2.5
    assert job_duration({"execution_duration": "soon", **times}) == 2.5
    assert job_duration({"execution_duration": float("nan")}) is None
    assert job_duration({"execution_duration": -3.0}) is None
    assert job_duration({}) is None
