"""The service's API with a big state, while jobs run (a real `Backend` on memory:// with in-process workers,
served by the real aiohttp application from a thread, as `stepflow backend` runs them; the client is a
`RemoteBackend` in a process of its own, as an operator's CLI or workbench is, over real HTTP).

    python bench/service.py [--jobs 100000] [--requests 200] [--live 50000] [--completions 20]

Measures:

- API p50 / p99 of: the workflow list, a workflow's detail, a page of 200 of the big step's jobs (at random
  offsets) and a job's record — with ``--jobs`` jobs in the state (one paused workflow) while a workflow of
  ``--live`` noop jobs runs;
- completion seen: for ``--completions`` one-job workflows, how long after the service's own backend announced
  the completion an attached `RemoteBackend` subscriber (the workbench's and ``run --wait``'s way) read it.

Figures only: nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import build_state, noop_definition, wait_until  # noqa: E402

from stepflow_tui.backend.backend import Backend, BackendConfig  # noqa: E402
from stepflow_tui.backend.remote import RemoteBackend  # noqa: E402
from stepflow_tui.backend.views import Update  # noqa: E402
from stepflow_tui.core.definitions import definition_from_dict  # noqa: E402
from stepflow_tui.plugins import load_registry  # noqa: E402
from stepflow_tui.service import ServiceThread, create_app  # noqa: E402

TIMEOUT = 300.0
QUICK = definition_from_dict({"identifier": "bench_quick", "label": "One noop job",
                              "steps": [{"id": 1, "name": "noop", "label": "noop"}]}, "bench")


ROWS = ("list workflows", "workflow detail", "jobs page (200)", "job record")


def percentiles(timings: list[float]) -> str:
    """``p50 X ms, p99 Y ms`` of timings in seconds."""
    ordered = sorted(timings)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def interleaved(calls: list[Callable[[], object]], count: int) -> list[list[float]]:
    """The duration of each of ``count`` rounds of ``calls`` (one of each per round, so that every kind of
    request meets the same moments of the live workflow), in seconds, per call."""
    timings: list[list[float]] = [[] for _ in calls]
    for _ in range(count):
        for call, row in zip(calls, timings, strict=True):
            started = time.perf_counter()
            call()
            row.append(time.perf_counter() - started)
    return timings


def client_main(url: str, big: int, jobs: int, requests: int) -> None:
    """The measuring client (``--client URL``): the requests of each row, interleaved; prints the timings as
    JSON, one list per row."""
    remote = RemoteBackend(url)
    job_ids = [job.id for job in remote.jobs(big, 1, 0, min(jobs, 1000))]
    calls = [
        lambda: remote.request("GET", "/api/workflows"),
        lambda: remote.request("GET", f"/api/workflows/{big}"),
        lambda: remote.request("GET", f"/api/workflows/{big}/steps/1/jobs", query={
            "offset": random.randrange(max(1, jobs - 200)), "limit": 200}),
        lambda: remote.request("GET", f"/api/jobs/{random.choice(job_ids)}"),
    ]
    print(json.dumps(interleaved(calls, requests)))


def measure_in_a_process(url: str, big: int, jobs: int, requests: int) -> list[list[float]]:
    """Run `client_main` in a child process; its timings."""
    answer = subprocess.run([sys.executable, __file__, "--client", url, "--big", str(big), "--jobs", str(jobs),
                             "--requests", str(requests)], capture_output=True, text=True, timeout=TIMEOUT,
                            check=False)
    if answer.returncode != 0:
        raise RuntimeError(f"the measuring client failed: {answer.stderr.strip()[-2000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def completion_delays(backend: Backend, remote: RemoteBackend, count: int) -> list[float]:
    """For ``count`` one-job workflows: seconds from the service's backend announcing the completion to an
    attached subscriber having read it."""
    seen_local: dict[int, float] = {}
    seen_remote: dict[int, float] = {}
    done = threading.Condition()

    def completed_in(read: Callable[[int], object], update: Update, seen: dict[int, float]) -> None:
        for workflow_id in update.workflow_ids:
            view = read(workflow_id)
            if workflow_id not in seen and view is not None and view.status == "completed":
                with done:
                    seen[workflow_id] = time.perf_counter()
                    done.notify_all()

    backend.subscribe(lambda update: completed_in(backend.workflow, update, seen_local))
    remote.subscribe(lambda update: completed_in(remote.workflow, update, seen_remote))
    delays = []
    for _ in range(count):
        workflow_id = backend.start_workflow("bench_quick", {}).result(TIMEOUT)
        both = (lambda wid: lambda: wid in seen_remote and wid in seen_local)(workflow_id)
        with done:
            if not done.wait_for(both, TIMEOUT):
                raise TimeoutError(f"workflow #{workflow_id} not seen completed")
        delays.append(seen_remote[workflow_id] - seen_local[workflow_id])
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs of the paused workflow in the state")
    parser.add_argument("--requests", type=int, default=200, help="requests per measured call")
    parser.add_argument("--live", type=int, default=50_000, help="noop jobs running during the measurements "
                        "(enough to last them all: the figures line says how many ran meanwhile)")
    parser.add_argument("--completions", type=int, default=20, help="one-job workflows for the completion delay")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--big", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.big, args.jobs, args.requests)
        return 0

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "state.json"
        big = build_state(db, args.jobs)
        live = noop_definition(args.live)
        definitions = {"bench_noop": live, "bench_quick": QUICK}
        config = BackendConfig(broker_url=f"memory://bench-{uuid.uuid4().hex[:8]}", db_path=db,
                               definitions=definitions, registry=load_registry(), local_concurrency=4)
        backend = Backend(config)
        backend.start()
        service = ServiceThread(create_app(backend))
        url = service.start()
        remote = RemoteBackend(url)
        try:
            remote.start()
            backend.wait_until_running(TIMEOUT)
            running = backend.start_workflow("bench_noop", {}).result(TIMEOUT)
            # Measured at full rate, not while its creation is written (a workflow of 50,000 jobs holds the
            # readers once, ~0.5 s, when it is created: docs/performance.md, round 6).
            wait_until(lambda: backend.workflow(running).counts.get("completed", 0) > 0, TIMEOUT,
                       "the live workflow's first completion")
            done_before = backend.workflow(running).counts.get("completed", 0)
            timings = measure_in_a_process(url, big, args.jobs, args.requests)
            done_after = backend.workflow(running).counts.get("completed", 0)
            figures = [(name, percentiles(row)) for name, row in zip(ROWS, timings, strict=True)]
            delays = completion_delays(backend, remote, args.completions)
        finally:
            remote.stop()
            service.stop()
            backend.stop()

    print(f"service: {args.jobs:,} jobs in the state, {args.requests} requests per call, live jobs done "
          f"{done_before:,} -> {done_after:,} of {args.live:,} during the requests")
    for name, figure in figures:
        print(f"{name}: {figure}")
    print(f"completion seen by an attached client: median {statistics.median(delays) * 1000:.1f} ms, "
          f"max {max(delays) * 1000:.1f} ms after the service ({len(delays)} workflows)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
