"""Following a workflow on the terminal: a progress line while it runs, a summary at its end."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from stepflow_tui.cli.options import EXIT_FAILED, EXIT_OK
from stepflow_tui.cli.session import is_attached
from stepflow_tui.core.model import WORKFLOW_FINAL, WorkflowStatus


def wait_sent(backend: Any, workflow_id: int, timeout: float = 30.0) -> int:
    """Wait (up to ``timeout``) until the orders that can go out now went out; return how many still wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and backend.engine.pending_count():
        if backend.engine.in_flight >= backend.config.window:
            break  # the window is full: the rest go out as jobs finish, while a backend runs
        time.sleep(0.05)
    return backend.engine.pending_count()


def follow(backend: Any, workflow_id: int, out: TextIO | None = None, *, command: str = "wait",
           connect_timeout: float | None = None) -> int:
    """Print progress until the workflow is finished; exit code 0 completed, 1 otherwise. With
    ``connect_timeout``, a broker that fails for good ends it at once (`UsageError`), one that does not answer
    for that long too (`BrokerUnreachable`); a state file that cannot be written ends it with exit 1."""
    import threading

    from stepflow_tui.cli.connection import Countdown, check_backend

    out = out or sys.stdout
    countdown = Countdown(command, backend.broker_display_url, connect_timeout or 0.0)
    tty = out.isatty()
    changed = threading.Event()
    backend.subscribe(lambda update: changed.set() if (workflow_id in update.workflow_ids or update.connection
                                                       or update.messages) else None)
    last_line = ""
    last_print = 0.0
    connection = backend.connection_state
    unreachable = False
    while True:
        try:
            view = backend.workflow(workflow_id)
        except ConnectionError as exc:  # an attached service restarting: wait for it, as its event stream does
            if not unreachable:
                print(f"\n{exc}: waiting for the service to answer again", file=out, flush=True)
            unreachable = True
            changed.wait(1.0)
            continue
        unreachable = False
        if view is None:
            print(f"workflow #{workflow_id} was deleted", file=out)
            return EXIT_FAILED
        unsaved = getattr(backend, "save_error", None)  # an attached service saves on its own
        line = progress_line(view) + (" (not saved)" if unsaved else "")
        if backend.connection_state != connection:
            connection = backend.connection_state
            print(f"\nbroker {backend.broker_display_url}: {connection}", file=out, flush=True)
        if connect_timeout is not None:
            check_backend(backend, countdown)
        now = time.monotonic()
        if line != last_line and (tty or now - last_print >= 2.0 or view.finished_at):
            if tty:
                out.write("\r\x1b[2K" + line)
                out.flush()
            else:
                print(line, file=out, flush=True)
            last_line, last_print = line, now
        ended = _ended(backend, view, out, tty, command, unsaved)
        if ended is not None:
            return ended
        changed.wait(1.0)
        changed.clear()


def _ended(backend: Any, view: Any, out: TextIO, tty: bool, command: str, unsaved: str | None) -> int | None:
    """The exit code when following ``view`` ends here (finished, stuck paused, state not saved), else None."""
    workflow_id = view.id
    if unsaved:
        # Nothing is acknowledged while the state cannot be written: the broker keeps those results for the next
        # backend, and counts shown beyond the last save would be a lie.
        if tty:
            out.write("\n")
        print(f"stepflow {command}: {unsaved}; stopping: what happened since the last save is not saved, and "
              f"its results stay in the broker for the next backend (free space, then: stepflow wait "
              f"{workflow_id})", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if view.status in WORKFLOW_FINAL:
        if tty:
            out.write("\n")
        print_summary(backend, view, out)
        return EXIT_OK if view.status == WorkflowStatus.COMPLETED else EXIT_FAILED
    if view.status == "paused" and not backend.running_count(workflow_id) and not is_attached(backend):
        # Nothing can move it now, and while this process holds the state file nobody can resume it.
        if tty:
            out.write("\n")
        print(f"workflow #{workflow_id} is paused and none of its jobs is running: resume it in the "
              f"workbench (stepflow, then p), or follow it again later with: stepflow wait {workflow_id}",
              file=out, flush=True)
        return EXIT_FAILED
    return None


def progress_line(view: Any) -> str:
    """One line: the workflow's status, jobs done and failed, and each started step's completed/total."""
    counts = view.counts
    done = counts.get("completed", 0) + counts.get("skipped", 0)
    steps = " ".join(f"[{s.label or s.name}: {s.counts.get('completed', 0)}/{s.counts.get('total', 0)}"
                     f"{' ✘' + str(s.counts['error']) if s.counts.get('error') else ''}]"
                     for s in view.steps if s.status != "pending")
    errors = counts.get("error", 0)
    paused = " (paused)" if view.paused else ""
    return (f"#{view.id} {view.identifier} {view.status}{paused}: {done}/{counts.get('total', 0)} jobs done"
            f"{f', {errors} failed' if errors else ''} {steps}")


def print_summary(backend: Any, view: Any, out: TextIO) -> None:
    """The end of a workflow: each step's counts and, unless it completed, its failed jobs (10 per step)."""
    print(f"workflow #{view.id} {view.identifier}: {view.status}", file=out)
    for step in view.steps:
        print(f"  step {step.id} {step.label or step.name} ({step.name}): {step.status} — "
              f"{format_counts(step.counts)}", file=out)
    if view.status != "completed":
        shown = 0
        for step in view.steps:
            if not step.counts.get("error"):
                continue
            for job in backend.jobs(view.id, step.id, 0, 10, status="error"):
                print(f"  job #{job.id} ({job.job_type}) failed: {job.error}", file=out)
                shown += 1
        if shown:
            print("  retry in the workbench (stepflow, then r) after fixing the cause", file=out)
    out.flush()


def format_counts(counts: dict[str, int]) -> str:
    """``12 jobs: 10 completed, 2 error``."""
    order = ("completed", "processing", "queued", "retrying", "error", "skipped", "stopped")
    parts = [f"{counts.get(k, 0)} {k}" for k in order if counts.get(k)]
    return f"{counts.get('total', 0)} jobs" + (": " + ", ".join(parts) if parts else "")
