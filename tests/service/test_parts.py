"""The service's smaller parts: views to and from JSON, the credentials file, the lock file's API address,
and the OpenAPI document checked against the application's routes."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from stepflow_tui.backend.views import (
    JobView,
    StepView,
    Update,
    WorkerView,
    WorkflowView,
    job_from_dict,
    job_to_dict,
    update_from_dict,
    update_to_dict,
    worker_from_dict,
    worker_to_dict,
    workflow_from_dict,
    workflow_to_dict,
)
from stepflow_tui.service import CredentialError, CredentialStore, create_app, parse_listen
from stepflow_tui.service.app import ServiceError
from stepflow_tui.service.openapi import openapi_document
from stepflow_tui.store import StoreLocked
from stepflow_tui.store.lockfile import LockFile, read_lock_info

COUNTS = {"queued": 1, "completed": 2, "total": 3}


def test_views_round_trip_through_json() -> None:
    workflow = WorkflowView(id=3, identifier="w", label="W", version="1.0.0", status="processing", paused=True,
                            parameters={"a": [1, {"b": None}]}, counts=COUNTS,
                            steps=(StepView(1, "noop", "N", "completed", COUNTS, 3),), created_at="t0",
                            updated_at="t1", finished_at=None)
    job = JobView(7, 3, 1, "noop", "error", 40, "boom")
    worker = WorkerView("i", "L", ("noop", "fail"), "Busy", (7,), "h", 12, "1", "t", False)
    update = Update(workflow_ids=frozenset({3, 1}), job_ids=frozenset({7}), queues=True, connection="connected",
                    messages=("m",))
    for value, to_dict, from_dict in [(workflow, workflow_to_dict, workflow_from_dict),
                                      (job, job_to_dict, job_from_dict), (worker, worker_to_dict, worker_from_dict),
                                      (update, update_to_dict, update_from_dict)]:
        assert from_dict(json.loads(json.dumps(to_dict(value)))) == value
    assert update_to_dict(update)["workflow_ids"] == [1, 3]
    assert update_from_dict({}) == Update()


def test_credentials_file(tmp_path: Path) -> None:
    store = CredentialStore.beside(tmp_path / "state.json")
    assert store.keys() == [] and store.get("K") is None
    first = store.set("K", "v1")
    store.set("OTHER", "x")
    again = store.set("K", "v2")
    assert again.id == first.id and store.get("K").value == "v2"
    assert store.keys() == ["K", "OTHER"]
    assert store.path == tmp_path / "state.json.credentials"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.delete("OTHER") and not store.delete("OTHER")
    assert [p.name for p in tmp_path.iterdir()] == ["state.json.credentials"]  # no temp file left
    with pytest.raises(CredentialError):
        store.set("bad key", "v")
    store.path.write_text("{not json")
    with pytest.raises(CredentialError) as error:
        store.keys()
    assert "v2" not in str(error.value)


def test_lock_file_records_the_api(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert read_lock_info(state) == (None, None)
    lock = LockFile(state)
    lock.acquire()
    try:
        assert read_lock_info(state) == (os.getpid(), None)
        lock.set_api("http://127.0.0.1:4000")
        assert read_lock_info(state) == (os.getpid(), "http://127.0.0.1:4000")
        assert lock.path.read_text() == f"{os.getpid()}\nhttp://127.0.0.1:4000\n"
        with pytest.raises(StoreLocked) as error:
            LockFile(state).acquire()
        assert error.value.pid == os.getpid()  # the pid line still parses with the URL after it
    finally:
        lock.release()
    assert read_lock_info(state) == (None, None)
    assert lock.path.read_text() == f"{os.getpid()}\n"  # a stopped owner serves nothing


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:4000") == ("127.0.0.1", 4000)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("4000", ":4000", "host:", "host:99999", "host:x"):
        with pytest.raises(ServiceError):
            parse_listen(bad)


class _NoBackend:
    def subscribe(self, callback) -> None:
        pass


def test_openapi_describes_every_route() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.0") and document["info"]["title"]
    app = create_app(_NoBackend())
    routed = set()
    for route in app.router.routes():
        path = route.resource.canonical
        if route.method != "HEAD":
            routed.add((path, route.method.lower()))
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routed == described

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]  # every reference resolves
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and operation["responses"], (path, method)
            assert all(re.fullmatch(r"[1-5]\d\d", code) for code in operation["responses"])
            names = {p["$ref"].rsplit("/", 1)[1] for p in operation.get("parameters", [])}
            declared = {document["components"]["parameters"][n]["name"] for n in names
                        if document["components"]["parameters"][n]["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)


def test_read_credential_value() -> None:
    import io

    from stepflow_tui.service.credentials import read_value

    assert read_value(io.StringIO("s3cret\n")) == "s3cret"
    assert read_value(io.StringIO("two\nlines\r\n")) == "two\nlines"
    with pytest.raises(CredentialError):
        read_value(io.StringIO("\n"))


def test_find_service(tmp_path: Path) -> None:
    from stepflow_tui.backend.remote import find_service

    state = tmp_path / "state.json"
    assert find_service(state, env={}) is None
    assert find_service(state, api="http://h:1", env={}) == ("http://h:1", None)
    assert find_service(state, env={"STEPFLOW_API": "http://e:2", "STEPFLOW_API_TOKEN": "t"}) == ("http://e:2", "t")
    lock = LockFile(state)
    lock.acquire()
    try:
        lock.set_api("http://127.0.0.1:4000")
        (tmp_path / "state.json.token").write_text("filetoken\n")
        assert find_service(state, env={}) == ("http://127.0.0.1:4000", "filetoken")
    finally:
        lock.release()
    assert find_service(state, env={}) is None


def test_remote_backend_has_the_backend_api() -> None:
    """What the workbench (`WorkbenchBackend`) and the CLI use of `Backend`, with the same parameters."""
    import inspect

    from stepflow_tui.backend import WorkbenchBackend
    from stepflow_tui.backend.backend import Backend
    from stepflow_tui.backend.remote import RemoteBackend

    names = {n for n, v in vars(WorkbenchBackend).items() if callable(v) and not n.startswith("_")}
    names |= {"running_count", "wait_until_running", "stop", "start"}
    for name in sorted(names):
        expected = list(inspect.signature(getattr(Backend, name)).parameters)
        actual = list(inspect.signature(getattr(RemoteBackend, name)).parameters)
        assert actual[:len(expected)] == expected, name


def test_json_bytes_is_json_dumps_encoded_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """`json_bytes` gives json.dumps's text; a long list is encoded SLICE items per call (the encoder holds the
    GIL for a whole call), and `Encoded` text is spliced as it is."""
    from stepflow_tui.service import encoding
    from stepflow_tui.service.encoding import SLICE, Encoded, encoded_list, json_bytes

    jobs = [{"id": i, "params": [{"id": "p", "value": f"/in/é{i}\u2028"}], "d": i / 7, "ok": i % 2 == 0,
             "none": None} for i in range(2 * SLICE + 3)]
    documents = [
        {"data": {"id": 1, "steps": [{"id": 1, "jobs": {"total": 3}}], "jobs": jobs, "tags": []}},
        {"data": [{"id": 1, "jobs": jobs}, {"id": 2, "jobs": jobs[:3]}, {}], "total": 2},
        {"data": jobs[:SLICE], "total": SLICE}, {1: jobs, "x": [jobs]}, [], {}, "é", 1.5, None,
    ]
    calls: list[int] = []
    dumps = json.dumps

    def counting(value: object, *args: object, **kwargs: object) -> str:
        calls.append(len(value) if isinstance(value, list) else 1)
        return dumps(value, *args, **kwargs)

    monkeypatch.setattr(encoding.json, "dumps", counting)
    for document in documents:
        assert json_bytes(document) == dumps(document).encode("utf-8")
    calls.clear()
    json_bytes(documents[0])
    assert max(calls) == SLICE and sum(1 for n in calls if n == SLICE) == 2  # the 403 jobs: 200 + 200 + 3
    pages = [jobs[:2], [], jobs[2:5]]
    spliced = {"id": 7, "jobs": encoded_list(dumps(page)[1:-1] for page in pages), "steps": [Encoded(("[1", "]"))]}
    assert json_bytes(spliced) == dumps({"id": 7, "jobs": jobs[:5], "steps": [[1]]}).encode("utf-8")
    assert json_bytes({"jobs": encoded_list([])}) == b'{"jobs": []}'
