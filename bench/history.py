"""History: what a state with many finished jobs costs a backend that runs new work.

    python bench/history.py [--jobs 1000000] [--workflows 10] [--new 10000] [--dir /tmp/x]

Builds a state of ``--workflows`` finished workflows sharing ``--jobs`` completed no-op jobs, plus 10 running
workflows (100 queued jobs each), by writing it through the `Store` (documents as the engine leaves them,
cloned from a real run). Then, each in a fresh process:

- **ready**: the real `Backend` on ``memory://`` (in-process workers) opens that state: seconds from
  ``Backend.start`` to running, and the peak RSS of the process;
- **status**: ``stepflow status --db <state>`` (a read without owning the state), wall time;
- **new workflow**: in that backend, once the running workflows are done, a new workflow of ``--new`` no-op jobs, jobs/s from start to completed;
  the same in a backend on an empty state (same process kind, same run): the median of the runs' ratios
  is the figure.

Figures are printed last; ``--runs`` (default 3) repeats the measures and prints medians.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import median, noop_definition, peak_rss_mib, wait_until, work_folder  # noqa: E402

from stepflow_tui.backend.backend import Backend, BackendConfig  # noqa: E402
from stepflow_tui.core.model import Job, State, StepStatus, Workflow, WorkflowStatus, empty_counts  # noqa: E402
from stepflow_tui.store import Store  # noqa: E402

RUNNING_WORKFLOWS = 10
RUNNING_JOBS = 100
TIMEOUT = 1800.0


def backend_on(db_path: Path, jobs: int) -> Backend:
    from stepflow_tui.plugins import load_registry

    definition = noop_definition(jobs)
    return Backend(BackendConfig(broker_url=f"memory://history-{uuid.uuid4().hex[:8]}", db_path=db_path,
                                 definitions={definition.identifier: definition}, registry=load_registry()))


def run_workflow(backend: Backend) -> float:
    """Jobs/s of one new bench workflow, from start_workflow to completed."""
    started = time.perf_counter()
    workflow_id = backend.start_workflow("bench_noop", {}).result(300)
    workflow = backend.state.workflows[workflow_id]
    wait_until(lambda: workflow.status in (WorkflowStatus.COMPLETED, WorkflowStatus.ERROR), TIMEOUT,
               "the new workflow", interval=0.005)
    if workflow.status != WorkflowStatus.COMPLETED:
        raise RuntimeError(f"the new workflow ended {workflow.status.value}")
    return workflow.steps[0].counts["total"] / (time.perf_counter() - started)


def template(folder: Path) -> tuple[Workflow, dict]:
    """A finished workflow and one of its completed jobs, as a real run leaves them."""
    backend = backend_on(folder / "template.json", 2)
    backend.start()
    try:
        if not backend.wait_until_running(30):
            raise RuntimeError(f"the backend did not start: {backend.last_error}")
        run_workflow(backend)
        workflow = next(iter(backend.state.workflows.values()))
        return Workflow.from_dict(workflow.to_dict()), next(iter(backend.state.jobs.values())).to_dict()
    finally:
        backend.stop()


def add_workflow(state: State, model: Workflow, running: bool) -> Workflow:
    workflow = Workflow.from_dict(copy.deepcopy(model.to_dict()))
    workflow.id = state.next_workflow_id
    state.next_workflow_id += 1
    if running:
        workflow.status = WorkflowStatus.PROCESSING
        workflow.steps[0].status = StepStatus.PROCESSING
        workflow.history = workflow.history[:1]
    workflow.steps[0].job_ids = []
    workflow.steps[0].counts = empty_counts()
    state.workflows[workflow.id] = workflow
    state.mark_workflow(workflow)
    return workflow


def add_jobs(state: State, workflow: Workflow, count: int, model: dict, running: bool) -> None:
    step = workflow.steps[0]
    for index in range(count):
        document = dict(model, id=state.next_job_id, workflow_id=workflow.id,
                        parameters=[{"id": "source_path", "type": "string", "value": f"/history/{index}.dat"}])
        if running:
            document.update(status="queued", history=model["history"][:1], progress=0, attempts=0,
                            dispatched=False, destination_paths=[], worker=None, execution_duration=None,
                            started_at=None, finished_at=None)
        state.next_job_id += 1
        job = Job.from_dict(document)
        state.jobs[job.id] = job
        state.mark_job(job)
        step.job_ids.append(job.id)  # as the engine does: the index keeps a finished step's ids and counts
        step.counts[job.status.value] += 1
        step.counts["total"] += 1


def build(db_path: Path, jobs: int, workflows: int) -> None:
    """Write the history state: finished workflows of completed jobs, then the running ones."""
    with tempfile.TemporaryDirectory(prefix="stepflow-history-template-") as tmp:
        model, job = template(Path(tmp))
    store = Store(db_path)
    state = store.open()
    per_workflow = jobs // workflows
    for number in range(workflows):
        workflow = add_workflow(state, model, running=False)
        count = per_workflow if number < workflows - 1 else jobs - per_workflow * (workflows - 1)
        # As big as a real one: a definition lists its step's source paths (2.9 MB for 100,000).
        step = workflow.definition["steps"][0]
        step["parameters"] = [{**step["parameters"][0], "value": [f"/history/{i}.dat" for i in range(count)]}]
        for chunk in range(0, count, 50_000):
            with store.lock:
                add_jobs(state, workflow, min(50_000, count - chunk), job, running=False)
            store.flush(state)
            state.jobs.clear()  # written (their shards are final): keep the builder's memory flat
    for _ in range(RUNNING_WORKFLOWS):
        add_jobs(state, add_workflow(state, model, running=True), RUNNING_JOBS, job, running=True)
    store.flush(state)
    store.close()


def measure(db_path: Path, new_jobs: int) -> None:
    """In a fresh process: open the state, time ready, run a new workflow; print JSON."""
    started = time.perf_counter()
    backend = backend_on(db_path, new_jobs)
    backend.start()
    try:
        if not backend.wait_until_running(600):
            raise RuntimeError(f"the backend did not start: {backend.last_error}")
        ready = time.perf_counter() - started
        rss_ready = peak_rss_mib()
        # The running workflows finish first: the new workflow's rate then shows what the history costs.
        workflows = list(backend.state.workflows.values())
        wait_until(lambda: all(wf.status in (WorkflowStatus.COMPLETED, WorkflowStatus.ERROR) for wf in workflows),
                   TIMEOUT, "the running workflows", interval=0.01)
        rate = run_workflow(backend)
    finally:
        backend.stop()
    print(json.dumps({"ready_seconds": ready, "peak_rss_mib": rss_ready, "rate": rate,
                      "peak_rss_after_mib": peak_rss_mib()}))


def in_subprocess(db_path: Path, new_jobs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", str(db_path), "--new", str(new_jobs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def status_seconds(db_path: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from stepflow_tui.cli import main; raise SystemExit(main())", "status", "--db",
                    str(db_path)], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="finished jobs in the history")
    parser.add_argument("--workflows", type=int, default=10, help="finished workflows sharing them")
    parser.add_argument("--new", type=int, default=10_000, help="jobs of the new workflow measured")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="folder for the states (default: a temporary one, removed)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.new)
        return
    with work_folder(args.dir, "stepflow-history-") as folder:
        started = time.perf_counter()
        history = folder / "history" / "state.json"
        build(history, args.jobs, args.workflows)
        built = time.perf_counter() - started
        size = sum(path.stat().st_size for path in history.parent.rglob("*") if path.is_file())
        pristine = history.parent.with_name("pristine")  # each run starts from the same files
        subprocess.run(["cp", "-a", str(history.parent), str(pristine)], check=True)
        results: list[dict] = []
        empty: list[dict] = []
        statuses: list[float] = []
        for run in range(args.runs):
            subprocess.run(["rm", "-rf", str(history.parent)], check=True)
            subprocess.run(["cp", "-a", str(pristine), str(history.parent)], check=True)
            statuses.append(status_seconds(history))
            results.append(in_subprocess(history, args.new))
            empty.append(in_subprocess(folder / f"empty-{run}" / "state.json", args.new))
            print(f"run {run + 1}: ready {results[-1]['ready_seconds']:.2f} s, peak RSS "
                  f"{results[-1]['peak_rss_mib']:,.0f} MiB, status {statuses[-1]:.2f} s, new workflow "
                  f"{results[-1]['rate']:,.0f} jobs/s (empty state {empty[-1]['rate']:,.0f})", flush=True)
    ready = median([r["ready_seconds"] for r in results])
    rss = median([r["peak_rss_mib"] for r in results])
    rate = median([r["rate"] for r in results])
    empty_rate = median([r["rate"] for r in empty])
    # Each run's two rates were measured back to back: the median of their ratios is the steadier figure.
    ratio = median([r["rate"] / e["rate"] for r, e in zip(results, empty, strict=True)])
    print(f"history: built {args.jobs:,} finished jobs in {args.workflows} workflows + {RUNNING_WORKFLOWS} "
          f"running in {built:.1f} s ({size / 1e6:,.0f} MB on disk); medians of {args.runs} runs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"empty state: ready {median([r['ready_seconds'] for r in empty]):.2f} s, peak RSS "
          f"{median([r['peak_rss_mib'] for r in empty]):,.0f} MiB, new workflow {empty_rate:,.0f} jobs/s")
    print(f"history: {args.jobs:,} jobs; ready {ready:.2f} s; peak RSS {rss:,.0f} MiB; status "
          f"{median(statuses):.2f} s; new {args.new:,}-job workflow {rate:,.0f} jobs/s = "
          f"{ratio:.2f} x empty state")


if __name__ == "__main__":
    main()
