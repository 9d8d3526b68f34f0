"""The workbench with a 100,000-job workflow in the state (Textual Pilot, headless, the real Backend).

    python bench/tui.py [--jobs 100000] [--pages 25] [--live]

Builds a state holding one (paused) workflow with one step of N queued jobs, then measures:

- first show: from starting the backend (the state is loaded) until the tree shows the workflow;
- expand: from expanding the big step until its first page of jobs is listed;
- paging: each "load more" (a page of 200 jobs) until listed, then Page Down through everything listed;
- 1,000 updates: progress messages about 1,000 listed jobs go through the broker; the time from the backend's
  first update naming any of them (the UI is told) until every one of those lines shows it, and from
  publishing to that;
- UI stalls: the longest gap between two ticks of a 10 ms timer in the app during paging and updates (a
  frozen UI shows as a long gap).

``--live`` resumes the workflow first, with in-process workers (as bare ``stepflow`` runs on memory://), so
the paging is measured while jobs complete in the same process; the update measurement is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import build_state, noop_definition, peak_rss_mib  # noqa: E402
from textual import events  # noqa: E402

from stepflow_tui.backend.backend import Backend, BackendConfig  # noqa: E402
from stepflow_tui.backend.views import Update  # noqa: E402
from stepflow_tui.broker import topology  # noqa: E402
from stepflow_tui.broker.base import OutgoingMessage, connect  # noqa: E402
from stepflow_tui.core.protocol import JobProgression  # noqa: E402
from stepflow_tui.plugins import load_registry  # noqa: E402
from stepflow_tui.tui.app import WorkbenchApp  # noqa: E402
from stepflow_tui.tui.widgets.tree import NodeRef  # noqa: E402

TIMEOUT = 120.0
SIZE = (120, 40)
UPDATES = 1000


class GcPauses:
    """The longest pause of the cyclic garbage collector (a full collection scans every live object)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.worst = 0.0
        self.full = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.worst = max(self.worst, time.perf_counter() - self.started)
            self.full += info.get("generation") == 2


class Stalls:
    """The longest gap between two ticks of a 10 ms timer running in the app (the UI's responsiveness)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.worst = 0.0

    def tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last)
        self.last = now

    def reset(self) -> None:
        self.last = time.perf_counter()
        self.worst = 0.0


def send_key(app: WorkbenchApp, key: str, character: str | None = None) -> None:
    """Send a key as the terminal driver does. (``Pilot.press`` then also waits until the process looks idle,
    two 20 ms sleeps or more, which would time Pilot, not the app; here the caller waits for what the key
    does.)"""
    event = events.Key(key, character)
    event.set_sender(app)
    app._driver.send_message(event)


async def wait_for(pilot, condition, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await pilot.pause(0.002)


async def drive(backend: Backend, url: str, workflow_id: int, pages: int, started: float, live: bool) -> dict:
    results: dict = {}
    app = WorkbenchApp(backend, cursor_blink=False)
    # No scroll animations: Pilot waits for each to finish, which would time the animation, not the work.
    app.animation_level = "none"
    app_started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        tree = app.main_screen.tree
        workflow_ref = NodeRef("workflow", workflow_id)
        await wait_for(pilot, lambda: tree.node_for(workflow_ref) is not None, "the workflow in the tree")
        shown = time.perf_counter()
        results["first_show"] = shown - started
        results["first_show_app"] = shown - app_started
        stalls = Stalls()
        app.set_interval(0.01, stalls.tick)
        if live:  # the jobs run (in-process workers, as bare `stepflow` on memory://) while the operator pages
            backend.resume(workflow_id).result(TIMEOUT)
            results["done_before"] = backend.workflow(workflow_id).done

        # expand the big step
        results["paging_started"] = time.perf_counter()
        step_ref = NodeRef("step", workflow_id, 1)
        assert tree.reveal(step_ref), "the step is not in the tree"
        await pilot.pause()
        stalls.reset()
        t0 = time.perf_counter()
        send_key(app, "space", " ")
        await wait_for(pilot, lambda: tree.loaded_count(workflow_id, 1) > 0, "the first page of jobs")
        results["expand"] = time.perf_counter() - t0

        # page through: "load more" pages, then Page Down through every listed line
        page_times = []
        def window_end() -> int:
            return (tree.listed_window(workflow_id, 1) or (0, 0))[1]

        for _ in range(pages):
            end = window_end()
            if not tree.reveal(NodeRef("more", workflow_id, 1)):
                break
            t0 = time.perf_counter()
            send_key(app, "enter", "\r")
            await wait_for(pilot, lambda n=end: window_end() > n, "a page of jobs")
            page_times.append(time.perf_counter() - t0)
        results["pages"] = page_times
        results["paged_to"] = window_end()
        results["listed"] = tree.loaded_count(workflow_id, 1)
        tree.reveal(step_ref)
        t0 = time.perf_counter()
        presses = 0
        while tree.cursor_line < tree.last_line:
            line = tree.cursor_line
            send_key(app, "pagedown")
            await wait_for(pilot, lambda n=line: tree.cursor_line != n, "the cursor to move a page down")
            presses += 1
        results["pagedown"] = (time.perf_counter() - t0) / max(1, presses)
        results["pagedown_presses"] = presses
        results["paging_stall"] = stalls.worst
        if live:
            results["done_after"] = backend.workflow(workflow_id).done
            results["paging_time"] = time.perf_counter() - results.pop("paging_started")
            return results
        tree.reveal(step_ref)
        await pilot.pause(0.2)

        # 1,000 updates about listed jobs, through the broker like a worker's progress messages
        job_ids = sorted(tree.visible_job_ids)[:UPDATES]
        wanted = frozenset(job_ids)
        seen: set[int] = set()
        first_told: list[float] = []  # the backend's first update naming any of them

        def on_update(update: Update) -> None:  # in the backend's thread
            if wanted & update.job_ids:
                if not seen:
                    first_told.append(time.perf_counter())
                seen.update(wanted & update.job_ids)

        backend.subscribe(on_update)
        conn = connect(url, name="bench-updates")
        messages = [OutgoingMessage(topology.JOB_RESPONSE, topology.JOB_PROGRESSION,
                                    JobProgression(job_id, 50, instance_id="bench").encode())
                    for job_id in job_ids]
        stalls.reset()
        published = time.perf_counter()
        conn.publish(messages)
        await wait_for(pilot, lambda: all(tree.job_status(j) == "processing" for j in job_ids),
                       f"{len(job_ids)} job lines updated")
        applied = time.perf_counter()
        conn.close()
        results["updates"] = len(job_ids)
        results["update_ui"] = applied - first_told[0] if first_told else float("nan")
        results["update_total"] = applied - published
        results["update_stall"] = stalls.worst
        label = str(tree.node_for(NodeRef("job", workflow_id, 1, job_ids[-1])).label)
        assert "50%" in label, f"the last updated line reads {label!r}"
        # what the workbench defers to a pause in the operator's input (tui/collector.py)
        t0 = time.perf_counter()
        gc.collect()
        results["idle_gc"] = time.perf_counter() - t0
        results["idle_gcs"] = app.collector.collections
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=25, help='"load more" pages to list (200 jobs each)')
    parser.add_argument("--live", action="store_true",
                        help="run the jobs (in-process workers) while paging; no update measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stepflow-tui-bench-") as tmp:
        db_path = Path(tmp) / "state.json"
        workflow_id = build_state(db_path, args.jobs)
        url = f"memory://tui-bench-{uuid.uuid4().hex[:8]}"
        definition = noop_definition(1)
        started = time.perf_counter()
        backend = Backend(BackendConfig(broker_url=url, db_path=db_path, local_workers=args.live,
                                        registry=load_registry() if args.live else None,
                                        definitions={definition.identifier: definition}))
        backend.start()
        if not backend.wait_until_running(60):
            raise RuntimeError(f"the backend did not start: {backend.last_error}")
        loaded = time.perf_counter() - started
        gc_pauses = GcPauses()
        try:
            results = asyncio.run(drive(backend, url, workflow_id, args.pages, started, args.live))
        finally:
            backend.stop()
    pages = results["pages"]
    print(f"tui: a workflow of {args.jobs:,} jobs in one step, {SIZE[0]}x{SIZE[1]} headless, real backend "
          f"(memory://); peak RSS {peak_rss_mib():,.0f} MiB")
    print(f"first show: {results['first_show']:.2f} s from backend start (state loaded in {loaded:.2f} s; "
          f"app start to tree {results['first_show_app']:.2f} s)")
    print(f"expand the big step: {results['expand'] * 1000:.0f} ms")
    print(f"paging: {len(pages)} pages of 200 (to job {results['paged_to']:,}), median "
          f"{statistics.median(pages) * 1000:.0f} ms, worst {max(pages) * 1000:.0f} ms; Page Down through the "
          f"{results['listed']:,} listed lines: "
          f"{results['pagedown'] * 1000:.0f} ms per press ({results['pagedown_presses']} presses); "
          f"longest UI stall {results['paging_stall'] * 1000:.0f} ms")
    if args.live:
        done = results["done_after"] - results["done_before"]
        print(f"while paging, the workflow ran on: {done:,} jobs completed in {results['paging_time']:.1f} s "
              f"({done / results['paging_time']:,.0f} jobs/s, backend, workers and workbench in one process)")
        return
    print(f"{results['updates']:,} job updates: applied {results['update_ui'] * 1000:.0f} ms after the "
          f"backend's first update naming them ({results['update_total'] * 1000:.0f} ms from publishing); "
          f"longest UI stall {results['update_stall'] * 1000:.0f} ms")
    print(f"garbage collector: longest pause {gc_pauses.worst * 1000:.0f} ms, {gc_pauses.full} full collections "
          f"({results['idle_gcs']} at idle moments); a full collection now takes {results['idle_gc'] * 1000:.0f} ms "
          f"(the workbench runs them after 1 s without input)")


if __name__ == "__main__":
    main()
