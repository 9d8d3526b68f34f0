"""Issue 13's step features on real RabbitMQ, served by a protocol-only worker (raw pika, a separate process
importing nothing of ours) for job types foreign to us: segment fan-out with the right indexes and evaluated
expressions, a condition skipping a step, a failing step with allow_failure, credentials resolved by the worker
as Media Cloud AI's SDK does (BACKEND through our API after a session login, ENV from its environment) and
never stored, and webhooks received with the right bodies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import wait_for
from stepflow_features import BUCKET_SECRET, ENCODER_KEY, SECRETS, Hooks, segment_workflow

from stepflow_tui.service import CredentialStore, ServiceThread, create_app

from .conftest import Processes

TOKEN = "full-token-raw-segments"

RAW_WORKER = r'''
import json
import os
import signal
import sys
import time
import urllib.request

import pika

url = sys.argv[1]
job_types = ("scene_detect", "segment_encode", "qc", "package")
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
seen = []


def api(path, body=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    request = urllib.request.Request(os.environ["BACKEND_HOSTNAME"] + path, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def resolve(parameter):
    store = parameter.get("store") or "BACKEND"
    if store == "ENV":
        return os.environ[parameter["value"]]
    session = api("/sessions", {"session": {"email": os.environ["BACKEND_USERNAME"],
                                            "password": os.environ["BACKEND_PASSWORD"]}})
    return api("/credentials/" + parameter["value"], token=session["access_token"])["data"]["value"]


connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.confirm_delivery()
channel.exchange_declare("job_submit", "topic", durable=True,
                         arguments={"alternate-exchange": "job_queue_not_found"})
channel.exchange_declare("job_response", "topic", durable=True,
                         arguments={"alternate-exchange": "job_response_not_found"})


def reply(ch, queue, body):
    ch.basic_publish("job_response", queue, json.dumps(body).encode(),
                     pika.BasicProperties(delivery_mode=2, content_type="application/json"), mandatory=True)


def on_order(ch, method, properties, body):
    order = json.loads(body)
    job_type = method.routing_key[len("job_"):]
    values = {p["id"]: p.get("value", p.get("default")) for p in order["parameters"]}
    result = {"job_id": order["job_id"], "status": "completed", "execution_duration": 0.01,
              "destination_paths": [], "parameters": []}
    if job_type == "scene_detect":
        result["destination_paths"] = [values["source_path"]]
        result["parameters"] = [{"id": "media_segments", "type": "array_of_media_segments",
                                 "value": [{"start": 0, "end": 99}, {"start": 100, "end": 199},
                                           {"start": 200, "end": 249}]}]
    elif job_type == "segment_encode":
        secrets = [resolve(p) for p in order["parameters"] if p["type"] == "credential" or p.get("store")]
        seen.append({"start": values["sdk_start_index"], "stop": values["sdk_stop_index"],
                     "duration": values["duration"], "output": values["output"],
                     "destination": values["destination_path"], "secrets_ok": secrets == sys.argv[2:4]})
        result["destination_paths"] = ["%s.%d" % (values["destination_path"], values["sdk_start_index"])]
    elif job_type == "qc":
        reply(ch, "job_error", {"job_id": order["job_id"], "status": "error",
                                "parameters": [{"id": "message", "type": "string", "value": "black frames"}]})
        ch.basic_ack(method.delivery_tag)
        return
    else:
        seen.append({"package": values["source_paths"]})
    reply(ch, "job_completed", result)
    ch.basic_ack(method.delivery_tag)


for job_type in job_types:
    queue = "job_" + job_type
    channel.queue_declare(queue, durable=True, arguments={"x-dead-letter-exchange": "job_dead_letter"})
    channel.queue_bind(queue, "job_submit", routing_key=queue)
    channel.basic_consume(queue, on_order)
channel.basic_qos(prefetch_count=4)
print("ready", flush=True)
while not stopping:
    connection.process_data_events(time_limit=0.1)
connection.close()
print(json.dumps({"seen": seen, "modules": sorted(sys.modules)}), flush=True)
'''


def test_raw_worker_runs_segments_conditions_failures_credentials_and_hooks(
        rabbitmq_url: str, tmp_path: Path, start_backend, hooks: Hooks) -> None:
    assert "stepflow" not in RAW_WORKER.lower()  # written from the protocol alone
    script = tmp_path / "raw_segments.py"
    script.write_text(RAW_WORKER, encoding="utf-8")
    harness = start_backend([segment_workflow(hooks.url)])
    backend = harness.backend
    state = Path(backend.config.db_path)
    CredentialStore.beside(state).set("ENCODER_KEY", ENCODER_KEY)
    service = ServiceThread(create_app(backend, token=TOKEN, credentials=CredentialStore.beside(state)))
    api_url = service.start()
    env = dict(Processes.env(), BACKEND_HOSTNAME=f"{api_url}/api", BACKEND_USERNAME="worker@example.com",
               BACKEND_PASSWORD=TOKEN, BUCKET_SECRET=BUCKET_SECRET)
    worker = subprocess.Popen([sys.executable, str(script), rabbitmq_url, ENCODER_KEY, BUCKET_SECRET],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready", worker.communicate(timeout=10)[1]
        workflow_id = harness.start_workflow("segment_demo", {"source_path": "/media/film.mov"})
        assert harness.backend.workflow(workflow_id) is not None
        wait_for(lambda: backend.workflow(workflow_id).status in ("completed", "error"), 60, "the workflow")
        wait_for(lambda: len(hooks.bodies("/hook")) >= 4, 20, "the hooks")
        worker.terminate()
        out, err = worker.communicate(timeout=15)
    finally:
        service.stop()
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert not [m for m in report["modules"] if m.startswith("stepflow")]
    view = backend.workflow(workflow_id)
    assert view.status == "completed"
    assert {s.id: s.status for s in view.steps} == {0: "completed", 1: "completed", 2: "skipped", 3: "error",
                                                    4: "completed", 5: "completed"}
    encodes = sorted((s for s in report["seen"] if "start" in s), key=lambda s: s["start"])
    destination = f"/work/{workflow_id}/film.mov"
    assert [(s["start"], s["stop"], s["duration"], s["output"], s["destination"], s["secrets_ok"])
            for s in encodes] == [(0, 99, "100", "film_0.mov", destination, True),
                                  (100, 199, "100", "film_100.mov", destination, True),
                                  (200, 249, "50", "film_200.mov", destination, True)]
    (package,) = [s["package"] for s in report["seen"] if "package" in s]
    assert sorted(package) == [f"{destination}.{i}" for i in (0, 100, 200)]
    assert hooks.bodies(f"/step/{workflow_id}") == [{"workflow": workflow_id, "reference": "demo-ref"}]
    events = sorted((b["event"], b.get("job_name")) for b in hooks.bodies("/hook"))
    assert events == [("job_error", "qc")] * 3 + [("workflow_completed", None)]
    backend.stop()
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.name.endswith(".credentials") and path != script:
            text = path.read_text(errors="replace")
            assert not any(secret in text for secret in SECRETS), f"a credential's value leaked into {path}"
