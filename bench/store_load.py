"""Benchmark of the state store: write N jobs, then load them in a fresh process (time and peak RSS).

    python bench/store_load.py [--jobs 100000] [--workflows 50] [--dir /tmp/x]

Prints the write time, a steady-state flush (a few jobs of the newest shard change), the files written by
it, and for the load in a fresh process: seconds to ``Store.open()`` and peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stepflow_tui.core.model import Job, JobStatus, StepState, Workflow
from stepflow_tui.store import Store

T0 = "2026-01-01T00:00:00Z"


def make_job(job_id: int, workflow_id: int, step_id: int) -> Job:
    """A job shaped like a real one: a few parameters, a three-entry history, outputs."""
    return Job(
        id=job_id,
        workflow_id=workflow_id,
        step_id=step_id,
        job_type="checksum",
        parameters=[
            {"id": "source_path", "type": "string", "value": f"/data/in/file-{job_id:07d}.mov"},
            {"id": "algorithm", "type": "string", "value": "sha256"},
            {"id": "destination_folder", "type": "string", "value": f"/data/out/{workflow_id}"},
        ],
        status=JobStatus.COMPLETED,
        history=[["queued", T0], ["processing", T0], ["completed", T0]],
        progress=100,
        attempts=1,
        dispatched=True,
        destination_paths=[f"/data/out/{workflow_id}/file-{job_id:07d}.sha256"],
        outputs=[{"id": "checksum", "type": "string", "value": "ab" * 32}],
        worker="worker-0123456789abcdef",
        execution_duration=0.25,
        created_at=T0,
        started_at=T0,
        finished_at=T0,
    )


def write(path: Path, jobs: int, workflows: int) -> None:
    store = Store(path)
    state = store.open()
    per_workflow = jobs // workflows
    started = time.perf_counter()
    for _ in range(workflows):
        workflow = Workflow(
            id=state.next_workflow_id,
            identifier="checksum_folder",
            label="Checksum",
            version="1.0.0",
            definition={"identifier": "checksum_folder", "steps": [{"id": 0, "name": "checksum"}]},
            parameters={"source_dir": "/data/in"},
            steps=[StepState(id=0, name="checksum", label="Checksum")],
        )
        state.next_workflow_id += 1
        state.workflows[workflow.id] = workflow
        state.mark_workflow(workflow)
        for _ in range(per_workflow):
            job = make_job(state.next_job_id, workflow.id, 0)
            state.next_job_id += 1
            state.jobs[job.id] = job
            state.mark_job(job)
        store.flush(state)
    print(
        f"write: {len(state.jobs)} jobs in {workflows} flushes: {time.perf_counter() - started:.2f} s, "
        f"{store.stats.bytes_written / 1e6:.1f} MB"
    )
    # Steady state: a few jobs of the newest shard change.
    newest = max(state.jobs)
    before = store.stats.files_written
    started = time.perf_counter()
    for job_id in range(newest - 10, newest + 1):
        state.jobs[job_id].progress = 50
        state.mark_job(state.jobs[job_id])
    store.flush(state)
    print(
        f"steady flush (11 jobs): {time.perf_counter() - started:.3f} s, "
        f"{store.stats.files_written - before} file(s) written; "
        f"writer peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )
    store.close()


def load(path: Path) -> None:
    started = time.perf_counter()
    store = Store(path)
    state = store.open()
    seconds = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    print(
        json.dumps(
            {"jobs": len(state.jobs), "open_seconds": round(seconds, 2), "peak_rss_mib": round(rss_mib)}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load(args.load_only)
        return
    folder = args.dir or Path(tempfile.mkdtemp(prefix="stepflow-bench-"))
    path = folder / "state.json"
    write(path, args.jobs, args.workflows)
    # A fresh process, so the peak RSS is the load's alone.
    for _ in range(3):
        subprocess.run([sys.executable, __file__, "--load-only", str(path)], check=True)


if __name__ == "__main__":
    main()
