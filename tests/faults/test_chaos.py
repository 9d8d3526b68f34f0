"""The chaos run: one workflow of 1,200 jobs on two worker processes while a worker is SIGKILLed (and replaced),
the backend is SIGKILLed (and restarted with ``stepflow wait``) and every broker connection of the vhost is
closed once. Two malformed messages are published to ``job_completed`` on the way, a poison order (a job id of
5,000 digits) to the job queue and an error with a lone surrogate (what a Python worker sends for a file name
that is not UTF-8) about a job the backend does not know.

Each job's effect is a file (see `chaos_worker`): ``<id>.done`` is created once, a second run of a job appends
to ``<id>.dup``. At the end: every job completed and counted once, each effect exists, the state file loads,
``job_dead_letter`` holds exactly the two malformed messages and the poison order, and no job ran a second time without a fault to
explain it (see `unexplained_reruns`). The figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rabbitmq.conftest import (
    Processes,
    drain_queue,
    publish_raw,
    vhost_of,
    wait_consumers,
    wait_for,
    workflow,
    write_workflows,
)

from .chaos_worker import kind_of
from .conftest import start_test_worker

JOBS = 1200
MALFORMED = [b"not json at all", b'{"status": "completed", "no_job_id": true}']
POISON_ORDER = b'{"job_id": ' + b"9" * 5000 + b', "parameters": []}'
LONE_SURROGATE = b'{"job_id": 987654321, "status": "error", "error": "caf\\udce9"}'


def epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def run_starts(path: Path) -> list[float]:
    """The start times written in an effect file ("pid start" lines)."""
    return [float(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]


def classify_reruns(effects: Path, faults: list[tuple[float, float, str]], jobs: dict[int, dict]
                    ) -> tuple[int, int, list[str]]:
    """Sort every second run of a job by what explains it: (by a worker-side fault, by the backend restart,
    unexplained descriptions).

    At-least-once allows a job to run again in two cases only:
    - a fault cut the path between a run and the broker's ack of its order (the worker died or lost its
      connection after the effect): the order is redelivered. That fault happened after the first run
      started and before the second run started.
    - the backend died after publishing an order and before recording it as sent: on restart it sends the
      order again (``resuming: N job orders to send``). The job was unfinished when the backend was killed.
    A fault is the interval from just before the test acted to just after (rabbitmqctl takes a second)."""
    by_worker = by_restart = 0
    unexplained = []
    restarts = [(begin, end) for begin, end, what in faults if what == "backend SIGKILL"]
    for dup in sorted(effects.glob("*.dup")):
        job = jobs[int(dup.stem)]
        first = run_starts(effects / dup.name.replace(".dup", ".done"))[0]
        created = epoch(job["history"][0][1])
        completed = epoch(next(entry[1] for entry in job["history"] if entry[0] == "completed"))
        for again in run_starts(dup):
            if any(first <= end and begin <= again for begin, end, _ in faults):
                by_worker += 1
            elif any(created <= end and begin <= completed for begin, end in restarts):
                by_restart += 1
            else:
                unexplained.append(f"job {job['id']}: first run at {first:.3f}, again at {again:.3f}")
    return by_worker, by_restart, unexplained


def test_chaos_run(rabbitmq_url: str, processes: Processes, tmp_path: Path) -> None:
    began = time.monotonic()
    effects = tmp_path / "effects"
    db = tmp_path / "state.json"
    steps = [{"id": 1, "name": "chaos", "label": "chaos", "mode": "one_for_one", "max_retries": 3,
              "retry_delay": 0.1, "parameters": [{"id": "source_paths", "type": "array_of_strings",
                                                  "value": [f"/in/{i:04d}.dat" for i in range(JOBS)]}]}]
    workflows = write_workflows(tmp_path / "workflows.json", [workflow("chaos", steps)])
    common = ["--no-local-workers", "--broker", rabbitmq_url, "--db", str(db), "--workflows", str(workflows)]
    faults: list[tuple[float, float, str]] = []  # (began, ended, what)

    def done() -> int:
        return sum(1 for name in os.listdir(effects) if name.endswith(".done")) if effects.exists() else 0

    def worker(name: str):
        return start_test_worker(processes, rabbitmq_url, effects, "chaos", name=name, concurrency=2)

    doomed = worker("worker-1")
    worker("worker-2")
    wait_consumers(rabbitmq_url, "job_chaos", 2)
    backend = processes.cli("run", "chaos", "--wait", *common, name="backend-1")
    wait_for(lambda: "workflow #1 chaos started" in processes.output(backend), 30, "the workflow to start")

    # 1. A worker dies mid-run; a new one takes its place.
    wait_for(lambda: done() >= 200, 60, "200 jobs done")
    began_at = time.time()
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    faults.append((began_at, time.time(), "worker SIGKILL"))
    worker("worker-3")
    publish_raw(rabbitmq_url, [("job_response", "job_completed", body) for body in MALFORMED]
                + [("job_submit", "job_chaos", POISON_ORDER), ("job_response", "job_error", LONE_SURROGATE)])

    # 2. The backend dies mid-run; `stepflow wait` takes over from its state file.
    wait_for(lambda: done() >= 450, 60, "450 jobs done")
    began_at = time.time()
    backend.send_signal(signal.SIGKILL)
    backend.wait(timeout=10)
    faults.append((began_at, time.time(), "backend SIGKILL"))
    backend = processes.cli("wait", "1", "-v", *common, name="backend-2")  # -v: logs how many orders it resends

    # 3. Every connection of the vhost is closed by the broker once.
    wait_for(lambda: done() >= 750, 60, "750 jobs done")
    began_at = time.time()
    subprocess.run(["rabbitmqctl", "close_all_connections", "-p", vhost_of(rabbitmq_url), "chaos"],
                   check=True, capture_output=True, timeout=60)
    faults.append((began_at, time.time(), "connections closed"))

    try:
        assert backend.wait(timeout=120) == 0, processes.output(backend)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the workflow did not finish:\n{processes.logs()}") from None
    elapsed = time.monotonic() - began
    assert "workflow #1 chaos: completed" in processes.output(backend)

    # The state file loads, and says every job completed exactly once.
    status = subprocess.run([sys.executable, "-m", "stepflow_tui", "status", "1", "--json", "--db", str(db)],
                            capture_output=True, text=True, timeout=60, env=Processes.env())
    assert status.returncode == 0, status.stderr
    (report,) = json.loads(status.stdout)
    jobs = report["jobs"]
    assert len(jobs) == JOBS
    assert [job["id"] for job in jobs if job["status"] != "completed"] == []
    twice = [job["id"] for job in jobs if [entry[0] for entry in job["history"]].count("completed") != 1]
    assert twice == [], f"jobs completed more than once in their history: {twice[:10]}"
    (step,) = report["steps"]
    assert step["counts"]["completed"] == step["counts"]["total"] == JOBS

    # Every effect exists; the jobs meant to fail once failed once and were retried.
    assert done() == JOBS
    by_index = {int(Path(job["destination_paths"][0]).stem): job for job in jobs}
    fail_once = [by_index[i] for i in range(JOBS) if kind_of(i) == "fail_once"]
    assert all(any(entry[0] == "retrying" for entry in job["history"]) for job in fail_once)

    # No job ran again without a fault to explain it (see `classify_reruns`), and no more orders were sent
    # again by the restarted backend than it said.
    by_jobs = {job["id"]: job for job in jobs}
    by_worker, by_restart, unexplained = classify_reruns(effects, faults, by_jobs)
    assert unexplained == [], unexplained[:10]
    resent = re.search(r"resuming: (\d+) job orders to send", processes.output(backend))
    assert by_restart <= (int(resent.group(1)) if resent else 0)
    reruns = by_worker + by_restart
    completed_at = {job["id"]: epoch(next(e[1] for e in job["history"] if e[0] == "completed")) for job in jobs}
    after_completion = sum(1 for dup in effects.glob("*.dup") for again in run_starts(dup)
                           if again > completed_at[int(dup.stem)])

    # The dead-letter queue holds the two malformed messages and the poison order, nothing else; the workers
    # survived the poison order (none but the killed one exited) and the backend the lone surrogate.
    dead = drain_queue(rabbitmq_url, "job_dead_letter")
    assert sorted(body for body, _ in dead) == sorted(MALFORMED + [POISON_ORDER])

    redelivered = sum(len(p.read_text().split()) for p in effects.glob("redelivered-*.log"))
    retried = sum(1 for job in jobs if job["attempts"] > 1)
    print(f"\nchaos run: {JOBS} jobs in {elapsed:.1f} s; faults: "
          + ", ".join(name for _, _, name in faults)
          + f"; kills: 2; orders redelivered by RabbitMQ: {redelivered}; jobs sent more than once: {retried} "
          f"({len(fail_once)} meant to fail once); jobs run twice: {reruns} ({by_worker} after a worker-side "
          f"fault, {by_restart} resent by the restarted backend; {after_completion} of them after their "
          f"completion was recorded); "
          f"dead letters: {len(dead)}")
