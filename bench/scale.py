"""Scale: one step of 100,000 no-op jobs on the embedded broker, then a restart on that state.

    python bench/scale.py [--jobs 100000] [--dir /tmp/x]

Runs the real `Backend` on ``memory://`` with its in-process workers. Prints the total time, the jobs/s of the
first and of the last tenth of the jobs (flat means no cost that grows with the number of jobs done), the
peak RSS of the process, the bytes written to the state and the number of flushes. Then, in a fresh process
each (three times), a restart on that state: seconds until the backend is loaded and running.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import median, noop_definition, peak_rss_mib, work_folder  # noqa: E402

from stepflow_tui.backend.backend import Backend, BackendConfig  # noqa: E402
from stepflow_tui.core.model import JobStatus, WorkflowStatus  # noqa: E402

TIMEOUT = 1800.0


def make_backend(db_path: Path, jobs: int) -> Backend:
    from stepflow_tui.plugins import load_registry

    definition = noop_definition(jobs)
    return Backend(BackendConfig(broker_url=f"memory://scale-{uuid.uuid4().hex[:8]}", db_path=db_path,
                                 definitions={definition.identifier: definition}, registry=load_registry()))


def run(db_path: Path, jobs: int) -> dict:
    backend = make_backend(db_path, jobs)
    backend.start()
    samples: list[tuple[float, int]] = []
    try:
        if not backend.wait_until_running(30):
            raise RuntimeError(f"the backend did not start: {backend.last_error}")
        started = time.perf_counter()
        workflow_id = backend.start_workflow("bench_noop", {}).result(300)
        created = time.perf_counter()
        workflow = backend.state.workflows[workflow_id]
        counts = workflow.steps[0].counts
        done = threading.Event()

        def sample() -> None:
            # Reads without the lock (a dict lookup): the sampler must not slow the broker thread down.
            while not done.is_set():
                samples.append((time.perf_counter(), counts[JobStatus.COMPLETED.value]))
                if workflow.status in (WorkflowStatus.COMPLETED, WorkflowStatus.ERROR, WorkflowStatus.ABORTED):
                    break
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sampler.join(TIMEOUT)
        done.set()
        finished = time.perf_counter()
        if workflow.status != WorkflowStatus.COMPLETED:
            raise RuntimeError(f"the workflow ended {workflow.status.value}, not completed")
    finally:
        backend.stop()
    tenth = jobs / 10

    def reached(count: float) -> float:
        return next(t for t, n in samples if n >= count)

    return {
        "jobs": jobs,
        "total_seconds": finished - started,
        "create_seconds": created - started,
        "first_tenth_rate": tenth / (reached(tenth) - created),
        "last_tenth_rate": tenth / (finished - reached(jobs - tenth)),
        "peak_rss_mib": peak_rss_mib(),
        "bytes_written": backend.store.stats.bytes_written,
        "flushes": backend.store.stats.flushes,
    }


def restart(db_path: Path, jobs: int) -> None:
    """In a fresh process: load the state and start the backend; print seconds until it runs (JSON)."""
    started = time.perf_counter()
    backend = make_backend(db_path, jobs)
    backend.start()
    if not backend.wait_until_running(60):
        raise RuntimeError(f"the backend did not start: {backend.last_error}")
    seconds = time.perf_counter() - started
    # Every job of the state, in memory or left on disk (a finished workflow's: see docs/state.md).
    loaded = sum(step.counts["total"] for workflow in backend.state.workflows.values() for step in workflow.steps)
    backend.stop()
    print(json.dumps({"ready_seconds": seconds, "jobs": loaded, "peak_rss_mib": peak_rss_mib()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="folder for the state (default: a temporary one, removed)")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--restart", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.restart:
        restart(args.restart, args.jobs)
        return
    with work_folder(args.dir, "stepflow-scale-") as folder:
        db_path = folder / "state.json"
        result = run(db_path, args.jobs)
        restarts = []
        for _ in range(args.restarts):
            out = subprocess.run([sys.executable, __file__, "--restart", str(db_path), "--jobs", str(args.jobs)],
                                 check=True, capture_output=True, text=True).stdout
            restarts.append(json.loads(out.strip().splitlines()[-1]))
    jobs = result["jobs"]
    ratio = result["last_tenth_rate"] / result["first_tenth_rate"]
    print(f"scale: {jobs:,} jobs in one step on memory:// (in-process workers)")
    print(f"total: {result['total_seconds']:.1f} s ({jobs / result['total_seconds']:,.0f} jobs/s), "
          f"of which creating the workflow {result['create_seconds']:.2f} s")
    print(f"first tenth: {result['first_tenth_rate']:,.0f} jobs/s; last tenth: {result['last_tenth_rate']:,.0f} "
          f"jobs/s; last/first: {ratio:.2f}")
    print(f"peak RSS: {result['peak_rss_mib']:,.0f} MiB")
    print(f"state: {result['bytes_written'] / 1e6:,.1f} MB written in {result['flushes']:,} flushes "
          "(the store's close included)")
    ready = median([r["ready_seconds"] for r in restarts])
    print(f"restart: ready in {ready:.2f} s (median of {len(restarts)}; {restarts[0]['jobs']:,} jobs loaded, "
          f"peak RSS {max(r['peak_rss_mib'] for r in restarts):,.0f} MiB)")
    print(f"written: {result['bytes_written'] / jobs:,.0f} bytes per job")


if __name__ == "__main__":
    main()
