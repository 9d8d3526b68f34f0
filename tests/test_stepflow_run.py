"""A StepFlow-shaped workflow using every step feature of issue 13, run end to end on ``memory://`` with
in-process workers: segment fan-out (indexes, evaluated expressions), a condition that skips a step, a failing
step with ``allow_failure``, credentials resolved by the worker (ENV and BACKEND through the service's API) and
never stored, a notification step and hooks received by a real local HTTP server."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli, wait_for
from stepflow_features import BUCKET_SECRET, ENCODER_KEY, SECRETS, SEGMENTS, Hooks, segment_workflow

from stepflow_tui.service import CredentialStore, ServiceThread, create_app
from stepflow_tui.worker.context import JobContext

TOKEN = "full-token-stepflow-run"


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


def test_every_step_feature_end_to_end_on_memory(start_backend, hooks: Hooks, tmp_path: Path,
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
    assert status.returncode == 0, status.stderr
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
