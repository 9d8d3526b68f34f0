"""A StepFlow-shaped workflow using every step feature of issue 13, run end to end on ``memory://`` with
in-process workers: segment fan-out (indexes, evaluated expressions), a condition that skips a step, a failing
step with ``allow_failure``, credentials resolved by the worker (ENV and BACKEND through the service's API) and
never stored, a notification step and hooks received by a real local HTTP server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, wait_for
from test_reliability import start_backend  # noqa: F401 (the fixture)

from stepflow_tui.service import CredentialStore, ServiceThread, create_app
from stepflow_tui.worker.context import JobContext

ENCODER_KEY = "s3cr3t-encoder-key-7f1e"
BUCKET_SECRET = "bucket-secret-9a2c-from-env"
SECRETS = (ENCODER_KEY, BUCKET_SECRET)
TOKEN = "full-token-stepflow-run"
SEGMENTS = [{"start": 0, "end": 99}, {"start": 100, "end": 199}, {"start": 200, "end": 249}]


class Hooks:
    """A local webhook receiver: records every request; answers 500 on paths starting with /broken."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                received.append({"path": self.path, "body": body, "type": self.headers.get("Content-Type")})
                self.send_response(500 if self.path.startswith("/broken") else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, path: str) -> list[Any]:
        return [json.loads(r["body"]) for r in self.received if r["path"] == path]


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    receiver = Hooks()
    yield receiver
    receiver.server.shutdown()


def segment_workflow(hook_url: str) -> dict[str, Any]:
    """Our own StepFlow-style definition (the shape of the public examples, not a copy of one)."""
    return {
        "schema_version": "1.8", "identifier": "segment_demo", "label": "Scene-based encode", "icon": "movie",
        "version_major": 1, "version_minor": 0, "version_micro": 0, "tags": ["demo"], "reference": "demo-ref",
        "parameters": [{"id": "media_segments", "type": "array_of_media_segments"}],
        "notification_hooks": [
            {"label": "ops", "endpoint": f"{hook_url}/hook", "conditions": {"workflow_completed": True,
                                                                          "job_error": True}},
            {"label": "broken", "endpoint": f"{hook_url}/broken", "conditions": {"workflow_completed": True}},
        ],
        "start_parameters": [{"id": "source_path", "label": "Source", "type": "file", "required": True},
                             {"id": "threshold", "label": "Threshold", "type": "number", "default": 2}],
        "steps": [
            {"id": 0, "name": "job_scene_detect", "label": "Detect scenes", "icon": "content_cut",
             "parameters": [{"id": "source_paths", "type": "array_of_templates", "value": ["{source_path}"]}]},
            {"id": 1, "name": "job_segment_encode", "label": "Encode segments", "parent_ids": [0],
             "multiple_jobs": "media_segments", "work_dir": "/work",
             "parameters": [
                 {"id": "duration", "type": "template", "value": "<%= sdk_stop_index - sdk_start_index + 1 %>"},
                 {"id": "output", "type": "template", "value": "{name}_<%= sdk_start_index %>{extension}"},
                 {"id": "api_key", "type": "credential", "value": "ENCODER_KEY"},
                 {"id": "bucket_secret", "type": "string", "store": "ENV", "value": "BUCKET_SECRET"}]},
            {"id": 2, "name": "job_thumbnail", "label": "Thumbnails", "parent_ids": [0],
             "condition": "threshold > 5"},
            {"id": 3, "name": "job_qc", "label": "Quality check", "parent_ids": [1], "allow_failure": True},
            {"id": 4, "name": "job_package", "label": "Package", "parent_ids": [1], "required_to_start": [1, 3],
             "mode": "one_for_many"},
            {"id": 5, "name": "notify_done", "label": "Tell the MAM", "mode": "notification", "parent_ids": [4],
             "parameters": [
                 {"id": "url", "type": "template", "value": f"{hook_url}/step/{{workflow_id}}"},
                 {"id": "body", "type": "template",
                  "value": '{{"workflow": {workflow_id}, "reference": "{workflow_reference}"}}'}]},
        ],
    }


def workers(seen: dict[str, list[Any]]) -> dict[str, Any]:
    def scene_detect(ctx: JobContext) -> dict[str, Any]:
        return {"destination_paths": [ctx.param("source_path")],
                "outputs": [{"id": "media_segments", "type": "array_of_media_segments", "value": SEGMENTS}]}

    def segment_encode(ctx: JobContext) -> list[str]:
        if ctx.credential("api_key") != ENCODER_KEY or ctx.credential("bucket_secret") != BUCKET_SECRET:
            raise RuntimeError("wrong credentials")
        seen["encode"].append((ctx.param("sdk_start_index"), ctx.param("sdk_stop_index"), ctx.param("duration"),
                               ctx.param("output"), ctx.param("destination_path")))
        return [ctx.param("destination_path") + f".{ctx.param('sdk_start_index')}"]

    def qc(ctx: JobContext) -> None:
        raise RuntimeError("qc found black frames")

    def package(ctx: JobContext) -> None:
        seen["package"].append(ctx.param("source_paths"))

    def thumbnail(ctx: JobContext) -> None:
        seen["thumbnail"].append(ctx.job_id)

    return {"scene_detect": scene_detect, "segment_encode": segment_encode, "qc": qc, "package": package,
            "thumbnail": thumbnail}


def test_every_step_feature_end_to_end_on_memory(start_backend, hooks: Hooks, tmp_path: Path,  # noqa: F811
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: dict[str, list[Any]] = {"encode": [], "package": [], "thumbnail": []}
    harness = start_backend([segment_workflow(hooks.url)], workers(seen))
    backend = harness.backend
    # The BACKEND store: the service's credentials file, served to the full token.
    CredentialStore.beside(tmp_path / "state.json").set("ENCODER_KEY", ENCODER_KEY)
    service = ServiceThread(create_app(backend, token=TOKEN,
                                       credentials=CredentialStore.beside(tmp_path / "state.json")))
    monkeypatch.setenv("STEPFLOW_API", service.start())
    monkeypatch.setenv("STEPFLOW_API_TOKEN", TOKEN)
    monkeypatch.setenv("BUCKET_SECRET", BUCKET_SECRET)  # the ENV store: the worker's environment
    try:
        workflow_id = backend.start_workflow("segment_demo", {"source_path": "/media/film.mov"}).result(10)
        assert harness.wait_finished(workflow_id, timeout=30) == "completed"
        wait_for(lambda: len(hooks.received) >= 5, 15, "the webhook calls")
        jobs = harness.jobs(workflow_id)
        api_answers = [service_get(service.url, f"/api/workflows/{workflow_id}"),
                       *(service_get(service.url, f"/api/jobs/{job['id']}") for job in jobs)]
    finally:
        service.stop()
    # Segment fan-out: one job per segment, indexes and evaluated expressions in each order.
    assert sorted(seen["encode"]) == [
        (0, 99, "100", "film_0.mov", f"/work/{workflow_id}/film.mov"),
        (100, 199, "100", "film_100.mov", f"/work/{workflow_id}/film.mov"),
        (200, 249, "50", "film_200.mov", f"/work/{workflow_id}/film.mov")]
    by_step = {step.id: step.status for step in backend.workflow(workflow_id).steps}
    assert by_step == {0: "completed", 1: "completed", 2: "skipped", 3: "error", 4: "completed", 5: "completed"}
    assert seen["thumbnail"] == []  # the condition was false
    # allow_failure: qc failed, package still ran on what the encoders produced.
    assert sorted(seen["package"][0]) == [f"/work/{workflow_id}/film.mov.{i}" for i in (0, 100, 200)]
    # The notification step's call and the hooks, with the right bodies.
    assert hooks.bodies(f"/step/{workflow_id}") == [{"workflow": workflow_id, "reference": "demo-ref"}]
    events = [(b["event"], b.get("job_name")) for b in hooks.bodies("/hook")]
    assert events.count(("job_error", "qc")) == 3 and ("workflow_completed", None) in events
    completed = next(b for b in hooks.bodies("/hook") if b["event"] == "workflow_completed")
    assert (completed["workflow_id"], completed["workflow_identifier"]) == (workflow_id, "segment_demo")
    # A hook that fails is retried, shown, and blocks nothing (the workflow completed above).
    wait_for(lambda: "notification hook 'broken'" in caplog.text, 15, "the failed hook's notice")
    assert len([r for r in hooks.received if r["path"] == "/broken"]) == 3
    assert "HTTP 500" in caplog.text
    backend.stop()
    # The secrets were resolved by the worker and are nowhere: state files, logs, API answers, status --json.
    status = run_cli("status", "--json", db=tmp_path / "state.json", cwd=tmp_path)
    texts = {"logs": caplog.text, "api": json.dumps(api_answers), "status --json": status.stdout}
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.name.endswith(".credentials"):
            texts[str(path)] = path.read_text(errors="replace")
    assert any("ENCODER_KEY" in text for text in texts.values())  # the references are there
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"a credential's value leaked into {where}"


def service_get(url: str, path: str) -> Any:
    import urllib.request

    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())
