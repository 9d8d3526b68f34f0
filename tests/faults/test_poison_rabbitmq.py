"""Poison on a real RabbitMQ, with worker and backend processes: orders no decoder can read, a result and a
progress report holding lone surrogates, in the middle of a run of 400 jobs. Every job completes once, the
workers live on, the state loads, and the dead-letter queue holds exactly the orders that could not be read."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from rabbitmq.conftest import (
    Processes,
    drain_queue,
    fan_out_step,
    publish_raw,
    wait_consumers,
    wait_for,
    workflow,
    write_workflows,
)

JOBS = 400
BASE = 10**6  # poison job ids: none of the run's
UNREADABLE = [
    b'{"job_id": ' + b"9" * 5000 + b', "parameters": []}',
    b'{"job_id": 1000001, "parameters": [{"id": "n", "type": "integer", "value": ' + b"7" * 5000 + b"}]}",
    b'{"job_id": 1000002, "parameters": [{"id": "x", "type": "array", "value": ' + b"[" * 100_000
    + b"]" * 100_000 + b"}]}",
    b'{"job_id": 1000004, "parameters": [{"id": "x", "type": "string", "value": "\xff"}]}',
]
READABLE_BUT_ODD = b'{"job_id": 1000003, "parameters": [{"id": "x", "type": "array", "value": ' + b"[" * 900 \
    + b"]" * 900 + b"}]}"


def test_poison_in_the_middle_of_a_run_loses_nothing(rabbitmq_url: str, processes: Processes,
                                                     tmp_path: Path) -> None:
    began = time.monotonic()
    db = tmp_path / "state.json"
    workflows = write_workflows(tmp_path / "workflows.json", [workflow("w", [fan_out_step("noop", JOBS)])])
    workers = [processes.worker(rabbitmq_url, "noop", name=f"worker-{i}") for i in (1, 2)]
    wait_consumers(rabbitmq_url, "job_noop", 2)
    backend = processes.cli("run", "w", "--wait", "--no-local-workers", "--broker", rabbitmq_url, "--db", db,
                            "--workflows", workflows, name="backend")
    wait_for(lambda: "workflow #1 w started" in processes.output(backend), 30, "the workflow to start")
    surrogate = json.dumps({"job_id": BASE + 9, "status": "error", "error": "caf\udce9"}).encode()
    progress = json.dumps({"job_id": JOBS, "progression": 5, "instance_id": "w\udce9"}).encode()
    publish_raw(rabbitmq_url, [("job_submit", "job_noop", body) for body in [*UNREADABLE, READABLE_BUT_ODD]]
                + [("job_response", "job_error", surrogate), ("job_response", "job_progression", progress)])

    assert backend.wait(timeout=180) == 0, processes.logs()
    assert all(worker.poll() is None for worker in workers), processes.logs()  # no worker died of it
    status = subprocess.run([sys.executable, "-m", "stepflow_tui", "status", "1", "--json", "--db", str(db)],
                            capture_output=True, text=True, timeout=60, env=Processes.env())
    assert status.returncode == 0, status.stderr
    (report,) = json.loads(status.stdout)
    assert len(report["jobs"]) == JOBS
    assert [job["id"] for job in report["jobs"]
            if [entry[0] for entry in job["history"]].count("completed") != 1] == []
    dead = sorted(body for body, _ in drain_queue(rabbitmq_url, "job_dead_letter"))
    assert dead == sorted(UNREADABLE)
    logs = processes.logs()
    assert "Traceback" not in logs, logs
    print(f"\npoison run: {JOBS} jobs in {time.monotonic() - began:.1f} s; poison orders {len(UNREADABLE) + 1} "
          f"({len(dead)} dead-lettered, 1 run and its answer ignored); lone-surrogate messages 2; jobs lost 0; "
          f"workers alive {sum(w.poll() is None for w in workers)}/2; tracebacks 0")
