"""The wire protocol is the contract: a worker written only from DESIGN.md, in raw pika, importing nothing of
stepflow_tui, serves a job type and its jobs complete with the destination paths it returned.

The raw worker runs as a separate process from the script below (its text must not even mention the
package), and reports the modules it had loaded so the test can prove it.

Queue declaration, decided: the raw worker declares ``job_raw_echo`` with the arguments Media Cloud AI's SDK
gives a job queue and ours use too (``x-dead-letter-exchange = job_delayed``, ``x-dead-letter-routing-key`` =
the queue's name, ``x-max-priority = 100``: docs/stepflow.md). RabbitMQ refuses a re-declaration of an
existing queue with different arguments (406 PRECONDITION_FAILED, channel closed), so a foreign worker that
may share a job type with ours must declare exactly these; a rejected order then comes back through
``job_delayed`` after 5 s.
The exchanges it publishes to / binds from are declared the same way, with our arguments, because the worker
may start before any backend (publishing to a missing exchange is a channel error).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Processes, fan_out_step, workflow

JOBS = 20

RAW_WORKER = r'''
import json
import signal
import sys
import time

import pika

url = sys.argv[1]
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
channel.confirm_delivery()  # basic_publish returns once the broker confirmed (raises if unroutable)
channel.exchange_declare("job_submit", "topic", durable=True,
                         arguments={"alternate-exchange": "job_queue_not_found"})
channel.exchange_declare("job_response", "topic", durable=True,
                         arguments={"alternate-exchange": "job_response_not_found"})
channel.queue_declare("job_raw_echo", durable=True, arguments={
    "x-dead-letter-exchange": "job_delayed", "x-dead-letter-routing-key": "job_raw_echo", "x-max-priority": 100})
channel.queue_bind("job_raw_echo", "job_submit", routing_key="job_raw_echo")
channel.basic_qos(prefetch_count=4)
served = []


def on_order(ch, method, properties, body):
    started = time.monotonic()
    order = json.loads(body)
    values = {p["id"]: p.get("value", p.get("default")) for p in order["parameters"]}
    result = {
        "job_id": order["job_id"],
        "status": "completed",
        "execution_duration": time.monotonic() - started,
        "destination_paths": [values["source_path"] + ".echo", "raw://%d" % order["job_id"]],
        "parameters": [],
    }
    ch.basic_publish("job_response", "job_completed", json.dumps(result).encode(),
                     pika.BasicProperties(delivery_mode=2, content_type="application/json"), mandatory=True)
    ch.basic_ack(method.delivery_tag)  # only after the result is confirmed: a crash loses nothing
    served.append(order["job_id"])


channel.basic_consume("job_raw_echo", on_order)
print("ready", flush=True)
while not stopping:
    connection.process_data_events(time_limit=0.1)
connection.close()
print(json.dumps({"served": served, "modules": sorted(sys.modules)}), flush=True)
'''


def test_raw_pika_worker_serves_a_job_type(rabbitmq_url: str, tmp_path: Path, processes: Processes,
                                           start_backend) -> None:
    assert "stepflow" not in RAW_WORKER  # written from the protocol alone
    script = tmp_path / "raw_worker.py"
    script.write_text(RAW_WORKER, encoding="utf-8")
    harness = start_backend([workflow("raw", [fan_out_step("raw_echo", JOBS)])])

    worker = subprocess.Popen([sys.executable, str(script), rabbitmq_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=Processes.env())
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":  # EOF: it died while connecting or declaring
            worker.kill()
            pytest.fail(f"the raw worker did not start: {worker.communicate(timeout=10)[1]}")
        workflow_id = harness.start_workflow("raw")
        assert harness.wait_finished(workflow_id, 30) == "completed"
        worker.terminate()
        out, err = worker.communicate(timeout=15)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=10)
    assert worker.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert not [m for m in report["modules"] if m.startswith("stepflow")]

    jobs = harness.jobs(workflow_id)
    assert sorted(report["served"]) == sorted(job["id"] for job in jobs)
    assert len(jobs) == JOBS
    for job in jobs:
        assert job["status"] == "completed"
        source = next(p["value"] for p in job["parameters"] if p["id"] == "source_path")
        assert job["destination_paths"] == [source + ".echo", f"raw://{job['id']}"]
    view = harness.backend.workflow(workflow_id)
    assert view is not None and view.steps[0].counts["completed"] == JOBS
