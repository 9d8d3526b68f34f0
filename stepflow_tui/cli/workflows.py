"""Commands on workflows and their jobs: run, wait, status, retry, abort, cancel, prune."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from stepflow_tui.cli.connection import await_backend
from stepflow_tui.cli.follow import follow, format_counts, wait_sent
from stepflow_tui.cli.options import (
    API,
    BROKER,
    DB,
    EXIT_OK,
    GLOBALS,
    READ_ONLY,
    VERBOSE,
    Commands,
    UsageError,
    add_local_worker_options,
)
from stepflow_tui.cli.session import attach, backend_session, change_session, is_attached, load, make_change
from stepflow_tui.core.model import WORKFLOW_FINAL

#: status reads the state file only (or the service running for it).
STATE_ONLY = (DB, API, VERBOSE)


def register(commands: Commands) -> None:
    """Add this group's commands."""
    p = commands.add("run", cmd_run, "start a workflow (and with --wait, follow it to its end)", uses=GLOBALS,
                     epilog="examples:\n"
                            "  stepflow run checksum_folder -p source_dir=./data -p manifest=./MANIFEST --wait\n"
                            "  stepflow run checksum_folder -p source_dir=./data --broker amqp://guest:guest@"
                            "localhost:5672/")
    p.add_argument("identifier", help="the workflow definition's identifier (see: stepflow validate)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a start parameter (repeatable)")
    p.add_argument("--wait", action="store_true",
                   help="follow progress; exit 0 when the workflow completes, 1 when it ends in error")
    add_local_worker_options(p)

    p = commands.add("wait", cmd_wait, "resume and follow a workflow to its end (exit 0 completed, 1 error)",
                     uses=GLOBALS)
    p.add_argument("workflow_id", type=int, metavar="ID")
    add_local_worker_options(p)

    p = commands.add("status", cmd_status, "workflows, their steps' counts and failed jobs", uses=STATE_ONLY)
    p.add_argument("workflow_id", type=int, nargs="?", metavar="ID", help="only this workflow, in detail")
    p.add_argument("--json", action="store_true", help="machine-readable output (with an ID: its jobs too)")

    p = commands.add("retry", cmd_retry, "retry a failed job, or every failed job of a workflow (or of one of "
                                         "its steps)", uses=GLOBALS)
    p.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID")
    p.add_argument("--workflow", type=int, metavar="ID", help="retry every failed job of this workflow")
    p.add_argument("--step", type=int, metavar="STEP_ID", help="with --workflow: only this step")
    p.add_argument("--wait", action="store_true", help="then follow the workflow to its end")
    add_local_worker_options(p)

    p = commands.add("abort", cmd_abort, "abort a workflow: pending steps skipped, unfinished jobs stopped",
                     uses=GLOBALS)
    p.add_argument("workflow_id", type=int, metavar="ID")

    p = commands.add("cancel", cmd_cancel, "cancel one job: a stop order goes to the worker running it; the job "
                                           "ends stopped", uses=GLOBALS)
    p.add_argument("job_id", type=int, metavar="JOB_ID")

    p = commands.add("prune", cmd_prune, "delete finished workflows (completed, error, aborted) older than an "
                                         "age, with their jobs", uses=(DB, API, READ_ONLY, VERBOSE), omit=(BROKER,))
    p.add_argument("--older-than", required=True, metavar="AGE",
                   help="finished longer ago than this: a number and a unit s, m, h or d (e.g. 30d)")
    p.add_argument("--dry-run", action="store_true", help="show what would be removed, remove nothing")


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """``-p KEY=VALUE`` options as a dict; anything else is a `UsageError`."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p {pair!r}: expected KEY=VALUE")
        params[key.strip()] = value
    return params


def cmd_run(args: argparse.Namespace) -> int:
    """Start a workflow; follow it with --wait (always on memory://, where it lives in this process only).
    Attached to a service, its definitions are the ones that count."""
    from stepflow_tui.core.definitions import StartParameterError, resolve_start_parameters
    from stepflow_tui.core.engine import EngineError

    remote = attach(args)
    loaded = None if remote is not None else load(args)
    try:
        definitions = loaded.definitions if loaded is not None else {d.identifier: d for d in remote.definitions()}
        definition = definitions.get(args.identifier)
        if definition is None:
            known = ", ".join(sorted(definitions)) or "none"
            raise UsageError(f"unknown workflow {args.identifier!r} (known: {known})")
        params = parse_params(args.param)
        try:
            resolve_start_parameters(definition, params)
        except StartParameterError as exc:
            raise UsageError(str(exc)) from None
        if args.read_only:
            raise UsageError("read-only mode: run refused")
    except BaseException:
        if remote is not None:
            remote.stop()
        raise
    with backend_session(args, loaded, local_workers=args.local_workers, concurrency=args.concurrency,
                         attached=remote) as backend:
        if not is_attached(backend):
            await_backend(backend, "run", args.connect_timeout)  # no workflow is started that could not be sent
        try:
            workflow_id = backend.start_workflow(args.identifier, params).result(timeout=60)
        except EngineError as exc:  # refused (by the service: stopping, read-only)
            raise UsageError(str(exc)) from None
        where = f"service: {backend.url}" if is_attached(backend) else f"state: {args.db}"
        print(f"workflow #{workflow_id} {definition.identifier} started ({where})", flush=True)
        if args.wait or (args.broker.startswith("memory:") and not is_attached(backend)):
            return follow(backend, workflow_id, command="run",
                          connect_timeout=None if is_attached(backend) else args.connect_timeout)
        if is_attached(backend):
            print(f"the service runs it to its end; follow it with: stepflow wait {workflow_id}")
            return EXIT_OK
        waiting = wait_sent(backend, workflow_id)
        follow_hint = f"stepflow wait {workflow_id} --broker {backend.broker_display_url}"
        if waiting:
            print(f"{waiting} order(s) not sent yet (broker {backend.connection_state}, or beyond the window of "
                  f"orders in flight); a backend sends them and advances the workflow: {follow_hint}")
        else:
            print(f"orders sent; the next steps go out while a backend runs: {follow_hint}")
        return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    """Resume a workflow from the state file and follow it to its end."""
    with backend_session(args, local_workers=args.local_workers, concurrency=args.concurrency) as backend:
        view = backend.workflow(args.workflow_id)
        if view is None:
            raise UsageError(f"no workflow #{args.workflow_id} in {args.db}")
        if view.status not in WORKFLOW_FINAL:
            await_backend(backend, "wait", args.connect_timeout)
        return follow(backend, args.workflow_id, command="wait", connect_timeout=args.connect_timeout)


def cmd_status(args: argparse.Namespace) -> int:
    """Print the workflows: through the service running for the state when there is one, else from the state
    file (read only: works while another process owns it)."""
    remote = attach(args)
    if remote is not None:
        try:
            return status_attached(remote, args)
        finally:
            remote.stop()
    from stepflow_tui.backend.backend import job_view, workflow_view
    from stepflow_tui.store import StoreError, read_state

    if not args.db.exists():
        if args.db_given:  # a mistyped --db / STEPFLOW_DB must not look like an empty state
            raise UsageError(f"no state file at {args.db} (check --db / STEPFLOW_DB)")
        print(f"no workflows yet (no state file at {args.db})")
        return EXIT_OK
    try:
        state = read_state(args.db)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    workflows = sorted(state.workflows.values(), key=lambda w: w.id)
    if args.workflow_id is not None:
        workflows = [w for w in workflows if w.id == args.workflow_id]
        if not workflows:
            raise UsageError(f"no workflow #{args.workflow_id} in {args.db}")
    if args.json:
        records = [{**w.to_dict(), "steps": [{k: v for k, v in s.to_dict().items() if k != "job_ids"}
                                             for s in w.steps]} for w in workflows]
        if args.workflow_id is not None:
            # One workflow asked for: its jobs too (history, attempts, errors), e.g. to check a resume.
            for record, workflow in zip(records, workflows, strict=True):
                record["jobs"] = [state.jobs[i].to_dict() for s in workflow.steps for i in s.job_ids
                                  if i in state.jobs]
        print(json.dumps(records, indent=2))
        return EXIT_OK

    def failed(view: Any) -> list[Any]:
        workflow = state.workflows[view.id]
        return [job_view(state.jobs[i]) for s in workflow.steps if s.counts.get("error") for i in s.job_ids
                if i in state.jobs and state.jobs[i].status.value == "error"][:FAILED_SHOWN + 1]

    print_status([workflow_view(w) for w in workflows], failed, str(args.db))
    return EXIT_OK


#: Failed jobs listed per workflow by ``status``.
FAILED_SHOWN = 10


def print_status(views: Sequence[Any], failed: Callable[[Any], list[Any]], source: str) -> None:
    """Each workflow with its steps' counts and its first failed jobs (``failed(view)`` gives `JobView`s)."""
    if not views:
        print(f"no workflows in {source}")
        return
    for view in views:
        paused = " (paused)" if view.paused else ""
        print(f"#{view.id} {view.identifier} v{view.version}  {view.status}{paused}  "
              f"{format_counts(view.counts)}  started {view.created_at}")
        for step in view.steps:
            print(f"    {step.id}. {step.label or step.name} [{step.name}] {step.status}: {format_counts(step.counts)}")
        jobs = failed(view) if view.counts.get("error") else []
        for job in jobs[:FAILED_SHOWN]:
            print(f"    ✘ job #{job.id} ({job.job_type}): {job.error}")
        total = view.counts.get("error", 0)
        if total > FAILED_SHOWN:
            print(f"    … and {total - FAILED_SHOWN} more failed jobs")


def status_attached(remote: Any, args: argparse.Namespace) -> int:
    """``status`` through the service: its views (``--json``: the API's records, with an ID its jobs too)."""
    if args.workflow_id is not None:
        view = remote.workflow(args.workflow_id)
        if view is None:
            raise UsageError(f"no workflow #{args.workflow_id} at {remote.url}")
        views = [view]
    else:
        views = remote.workflows()
    if args.json:
        records = [remote.request("GET", f"/api/workflows/{view.id}") for view in views]
        if args.workflow_id is not None:
            records[0]["jobs"] = [remote.job(job.id) for step in views[0].steps
                                  for job in remote.jobs(views[0].id, step.id, 0, step.counts.get("total", 0))]
        print(json.dumps(records, indent=2))
        return EXIT_OK

    def failed(view: Any) -> list[Any]:
        return [job for step in view.steps if step.counts.get("error")
                for job in remote.jobs(view.id, step.id, 0, FAILED_SHOWN + 1, status="error")]

    print_status(views, failed, remote.url)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    """Queue a failed job again, or every failed job of a workflow (of one step with --step)."""
    if (args.job_id is None) == (args.workflow is None):
        raise UsageError("retry: give a JOB_ID or --workflow ID (not both)")
    change = ((lambda b: b.retry_job(args.job_id)) if args.job_id is not None
              else (lambda b: b.retry_failed(args.workflow, args.step)))
    session = change_session(args, change, local_workers=args.local_workers, concurrency=args.concurrency)
    with session as (backend, count):
        if args.job_id is not None:
            workflow_id = backend.job(args.job_id)["workflow_id"]
            print(f"job #{args.job_id} queued again (workflow #{workflow_id})")
        else:
            workflow_id = args.workflow
            print(f"{count} failed job(s) of workflow #{workflow_id} queued again")
        if args.wait or (args.broker.startswith("memory:") and not is_attached(backend)):
            return follow(backend, workflow_id, command="retry",
                          connect_timeout=None if is_attached(backend) else args.connect_timeout)
        if not is_attached(backend):
            wait_sent(backend, workflow_id)
        return EXIT_OK


def cmd_abort(args: argparse.Namespace) -> int:
    """Abort a workflow."""
    make_change(args, lambda b: b.abort(args.workflow_id))
    print(f"workflow #{args.workflow_id} aborted")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel one job."""
    make_change(args, lambda b: b.cancel_job(args.job_id))
    print(f"job #{args.job_id} cancelled")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Delete finished workflows older than --older-than (or, with --dry-run, count them)."""
    from stepflow_tui import ops
    from stepflow_tui.store import StoreError

    try:
        age = ops.parse_age(args.older_than)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.read_only and not args.dry_run:
        raise UsageError("read-only mode: prune refused (--dry-run only counts)")
    remote = attach(args)
    if remote is not None:
        return prune_attached(remote, args)
    try:
        result = ops.prune(args.db, age, dry_run=args.dry_run)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    what = pruned_summary(result.workflow_ids, result.jobs, args.older_than)
    if result.dry_run:
        print(f"would remove {what} from {args.db}; the state is {ops.human_size(result.size_before)}")
    else:
        print(f"removed {what} from {args.db}; state {ops.human_size(result.size_before)} -> "
              f"{ops.human_size(result.size_after)}")
    return EXIT_OK


def prune_attached(remote: Any, args: argparse.Namespace) -> int:
    """``prune`` through the service that owns the state."""
    from stepflow_tui.core.engine import EngineError

    try:
        result = remote.prune(args.older_than.strip(), dry_run=args.dry_run).result(timeout=300)
    except EngineError as exc:
        raise UsageError(str(exc)) from None
    finally:
        remote.stop()
    what = pruned_summary(result["workflow_ids"], result["jobs"], args.older_than)
    print(f"{'would remove' if result['dry_run'] else 'removed'} {what} (service {remote.url})")
    return EXIT_OK


def pruned_summary(workflow_ids: Sequence[int], jobs: int, older_than: str) -> str:
    """``2 workflow(s) (#1, #2) and 40 job(s) finished more than 30d ago``."""
    ids = ", ".join(f"#{i}" for i in workflow_ids[:20]) + (" …" if len(workflow_ids) > 20 else "")
    return (f"{len(workflow_ids)} workflow(s) ({ids or 'none'}) and {jobs:,} job(s) finished more than "
            f"{older_than.strip()} ago")
