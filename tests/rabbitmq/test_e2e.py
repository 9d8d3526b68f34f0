"""End to end on RabbitMQ: the `stepflow` CLI as the backend, `python -m stepflow_tui.worker` processes as the
workers, and what an operator sees (`stepflow run --wait`, `stepflow queues`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from stepflow_tui.store import Store

from .conftest import (
    Processes,
    fan_out_step,
    queue_counts,
    wait_consumers,
    wait_for,
    workflow,
    write_workflows,
)

FILE_COUNT = 200


def make_tree(root: Path, count: int) -> list[Path]:
    """``count`` files of different sizes in nested folders, some names with spaces and non-ASCII."""
    files = []
    for i in range(count):
        folder = root / f"dir{i % 5}" / f"sub{i % 3}" / ("deep" if i % 7 == 0 else "")
        name = f"file {i:03d}.txt" if i % 10 == 0 else (f"é-{i:03d}.bin" if i % 10 == 1 else f"f{i:03d}.dat")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(f"content of file {i}\n".encode() * (i % 17 + 1))
        files.append(path)
    return files


def test_checksum_folder_with_two_worker_processes(rabbitmq_url: str, tmp_path: Path, processes: Processes) -> None:
    source = tmp_path / "data"
    make_tree(source, FILE_COUNT)
    manifest = tmp_path / "MANIFEST.sha256"
    db = tmp_path / "state.json"
    first = processes.worker(rabbitmq_url, concurrency=2, name="worker-a")
    second = processes.worker(rabbitmq_url, concurrency=2, name="worker-b")
    # Both consume every installed job type; wait until both are on job_checksum so both get orders.
    wait_consumers(rabbitmq_url, "job_checksum", 2)

    run = processes.cli("run", "checksum_folder", "--broker", rabbitmq_url, "--db", db,
                        "-p", f"source_dir={source}", "-p", f"manifest={manifest}", "--wait",
                        "--no-local-workers", name="run")
    assert run.wait(timeout=120) == 0, processes.output(run)
    output = processes.output(run)
    assert "completed" in output
    assert "guest:guest" not in output

    lines = manifest.read_text(encoding="utf-8").splitlines()
    assert len(lines) == FILE_COUNT
    check = subprocess.run(["sha256sum", "--check", "--strict", str(manifest)], cwd=source, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK\n") == FILE_COUNT

    # Both worker processes did checksum jobs (the instance id of the reporting worker is kept per job).
    assert first.poll() is None and second.poll() is None
    store = Store(db)
    state = store.open()
    try:
        checksum_jobs = [job for job in state.jobs.values() if job.job_type == "checksum"]
        assert len(checksum_jobs) == FILE_COUNT
        assert all(job.status.value == "completed" for job in checksum_jobs)
        assert len({job.worker for job in checksum_jobs}) == 2
    finally:
        store.close()


def test_job_type_without_queue_errors_via_queue_not_found(rabbitmq_url: str, tmp_path: Path,
                                                           processes: Processes) -> None:
    workflows = write_workflows(tmp_path / "workflows.json",
                                [workflow("orphan", [{"id": 1, "name": "nobody_here", "label": "Nobody"}])])
    run = processes.cli("run", "orphan", "--broker", rabbitmq_url, "--db", tmp_path / "state.json",
                        "--workflows", workflows, "--wait", "--no-local-workers", name="run")
    # Within seconds: the order bounces to job_queue_not_found instead of waiting in a queue nobody reads.
    assert run.wait(timeout=30) == 1, processes.output(run)
    output = processes.output(run)
    assert "no queue for job type 'nobody_here'" in output
    assert "orphan: error" in output
    # The backend never declared the job queue itself (DESIGN.md: only workers do), and it consumed the
    # bounced order from job_queue_not_found.
    assert queue_counts(rabbitmq_url, "job_nobody_here") is None
    assert queue_counts(rabbitmq_url, "job_queue_not_found") == (0, 0)


def test_queues_command_mid_run(rabbitmq_url: str, tmp_path: Path, processes: Processes, start_backend) -> None:
    harness = start_backend([workflow("slow", [fan_out_step("sleep", 12, seconds=0.25)])])
    worker = processes.worker(rabbitmq_url, "sleep", concurrency=1, prefetch=1)
    wait_consumers(rabbitmq_url, "job_sleep", 1)
    workflow_id = harness.start_workflow("slow")
    wait_for(lambda: harness.with_status(workflow_id, "processing"), 30, "a sleep job processing")

    queues = subprocess.run([sys.executable, "-m", "stepflow_tui", "queues", "--broker", rabbitmq_url],
                            cwd=tmp_path, env=Processes.env(), capture_output=True, text=True, timeout=60)
    assert queues.returncode == 0, queues.stderr
    out = queues.stdout
    assert "guest:guest" not in out + queues.stderr
    assert "amqp://guest:***@" in out
    header = next(line for line in out.splitlines() if line.startswith("queue"))
    assert re.search(r"\bready\b.*\bconsumers\b", header), header
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("job_")}
    ready, _unacked, consumers = (int(value) for value in rows["job_sleep"][:3])
    assert consumers == 1
    assert ready >= 1  # 12 jobs of 0.25 s, one at a time: most are still waiting
    for name in ("job_completed", "job_error", "job_queue_not_found", "job_dead_letter"):
        assert name in rows, out
    assert worker.poll() is None
    assert harness.wait_finished(workflow_id, 60) == "completed"
