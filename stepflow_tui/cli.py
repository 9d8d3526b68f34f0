"""The `stepflow` command.

Bare `stepflow` opens the workbench (TUI). Subcommands: run, wait, status, plugins, validate, worker, queues,
retry, abort, cancel, dead-letters, redrive, prune, serve. Global options (--broker, --ca-file, --db,
--workflows, --read-only, -v) are accepted before or after the subcommand, each with an environment variable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepflow_tui import __version__

log = logging.getLogger("stepflow_tui.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A problem the user can fix (bad definitions, parameters, state file in use): exit 2, one line."""


def default_db() -> Path:
    env = os.environ.get("STEPFLOW_DB")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "stepflow" / "state.json"


# ---------------------------------------------------------------------------------------------- arguments
def _global_options(parser: argparse.ArgumentParser, *, top: bool, broker: bool = True) -> None:
    # On subparsers the defaults are SUPPRESS so that a value given before the subcommand is not reset.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options (before or after the command)")
    if broker:
        group.add_argument("--broker", metavar="URL", default=default(None),
                           help="memory:// (embedded, the default) or amqp://user:pass@host:5672/vhost "
                                "[env STEPFLOW_BROKER_URL]")
    group.add_argument("--ca-file", metavar="PATH", default=default(None),
                       help="CA certificate(s) to verify an amqps:// broker with [env STEPFLOW_CA_FILE]")
    group.add_argument("--db", metavar="FILE", default=default(None),
                       help=f"state file [env STEPFLOW_DB; default {default_db()}]")
    group.add_argument("--workflows", metavar="FILE", default=default(None),
                       help="workflow definitions, on top of those plugins ship "
                            "[env STEPFLOW_WORKFLOWS; default ./workflows.json if present]")
    group.add_argument("--read-only", action="store_true", default=default(False),
                       help="refuse every change (run, retry, abort, cancel, pause, delete, prune, redrive)")
    group.add_argument("-v", "--verbose", action="count", default=default(0),
                       help="more logging on stderr (-vv for debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepflow",
        description="A terminal workbench for workflows of jobs run by workers over RabbitMQ. "
                    "Without a command, opens the workbench.",
        epilog="Examples:\n"
               "  stepflow                                   # the workbench, embedded broker\n"
               "  stepflow run checksum_folder -p source_dir=./data -p manifest=./MANIFEST --wait\n"
               "  stepflow worker --broker amqp://guest:guest@localhost:5672/ --concurrency 4\n"
               "  stepflow status",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"stepflow-tui {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, *, broker: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, top=False, broker=broker)
        return p

    p = command("run", "start a workflow (and with --wait, follow it to its end)")
    p.add_argument("identifier", help="the workflow definition's identifier (see: stepflow validate)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a start parameter (repeatable)")
    p.add_argument("--wait", action="store_true",
                   help="follow progress; exit 0 when the workflow completes, 1 when it ends in error")
    p.add_argument("--local-workers", dest="local_workers", action="store_true", default=None,
                   help="also run in-process workers for every installed job type (always on memory://)")
    p.add_argument("--no-local-workers", dest="local_workers", action="store_false",
                   help="never run in-process workers")
    p.add_argument("--concurrency", type=int, default=4, metavar="N", help="in-process workers' pool size")

    p = command("wait", "resume and follow a workflow to its end (exit 0 completed, 1 error)")
    p.add_argument("workflow_id", type=int, metavar="ID")
    p.add_argument("--local-workers", dest="local_workers", action="store_true", default=None,
                   help="also run in-process workers (always on memory://)")
    p.add_argument("--no-local-workers", dest="local_workers", action="store_false")
    p.add_argument("--concurrency", type=int, default=4, metavar="N")

    p = command("status", "workflows, their steps' counts and failed jobs")
    p.add_argument("workflow_id", type=int, nargs="?", metavar="ID", help="only this workflow, in detail")
    p.add_argument("--json", action="store_true", help="machine-readable output (with an ID: its jobs too)")

    p = command("plugins", "installed plugins, their job types and workers, and load failures")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("validate", "check a workflows.json (default: --workflows, ./workflows.json, plugins')")
    p.add_argument("file", nargs="?", help="the file to check")

    # The worker's own options include --broker: not twice (argparse refuses a duplicate option).
    p = command("worker", "run a headless worker (for systemd, containers): consumes job queues", broker=False)
    from stepflow_tui.worker.__main__ import add_worker_arguments

    add_worker_arguments(p)
    for action in p._actions:  # keep a --broker given before the subcommand (like the global options)
        if action.dest == "broker":
            action.default = argparse.SUPPRESS

    p = command("queues", "one line per queue: ready, unacked, consumers")

    p = command("retry", "retry a failed job, or every failed job of a workflow (or of one of its steps)")
    p.add_argument("job_id", type=int, nargs="?", metavar="JOB_ID")
    p.add_argument("--workflow", type=int, metavar="ID", help="retry every failed job of this workflow")
    p.add_argument("--step", type=int, metavar="STEP_ID", help="with --workflow: only this step")
    p.add_argument("--wait", action="store_true", help="then follow the workflow to its end")
    p.add_argument("--local-workers", dest="local_workers", action="store_true", default=None)
    p.add_argument("--no-local-workers", dest="local_workers", action="store_false")
    p.add_argument("--concurrency", type=int, default=4, metavar="N")

    p = command("abort", "abort a workflow: pending steps skipped, unfinished jobs stopped")
    p.add_argument("workflow_id", type=int, metavar="ID")

    p = command("cancel", "cancel one job: a stop order goes to the worker running it; the job ends stopped")
    p.add_argument("job_id", type=int, metavar="JOB_ID")

    p = command("dead-letters", "list what is in job_dead_letter (original queue, reason, payload excerpt) "
                                "without consuming it")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show the first N messages (default 20)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = command("redrive", "send the dead letters back to the queues they died in (after showing the counts)")
    p.add_argument("--queue", metavar="Q", help="only those of this original queue (job_checksum or checksum)")
    p.add_argument("--dry-run", action="store_true", help="show the counts, send nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for a confirmation on a terminal")

    p = command("prune", "delete finished workflows (completed, error, aborted) older than an age, with their "
                         "jobs", broker=False)
    p.add_argument("--older-than", required=True, metavar="AGE",
                   help="finished longer ago than this: a number and a unit s, m, h or d (e.g. 30d)")
    p.add_argument("--dry-run", action="store_true", help="show what would be removed, remove nothing")

    p = command("serve", "serve the workbench in a browser (textual-serve)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    return parser


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    for name, default in (("broker", None), ("ca_file", None), ("db", None), ("workflows", None),
                          ("read_only", False), ("verbose", 0)):
        if not hasattr(args, name):
            setattr(args, name, default)
    args.broker = args.broker or os.environ.get("STEPFLOW_BROKER_URL") or "memory://"
    args.db = Path(args.db).expanduser() if args.db else default_db()
    args.workflows = args.workflows or os.environ.get("STEPFLOW_WORKFLOWS")
    args.ca_file = args.ca_file or os.environ.get("STEPFLOW_CA_FILE")
    return args


def apply_ca_file(args: argparse.Namespace) -> None:
    """--ca-file / STEPFLOW_CA_FILE becomes ``?cafile=`` of an amqps:// URL (broker/amqp.py builds the TLS
    context from it). Ignored for memory:// (no network); an error for plain amqp:// (it would not be used)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from stepflow_tui.broker.base import mask_url

    if not args.ca_file:
        return
    parts = urlsplit(args.broker)
    if parts.scheme == "memory":
        return
    if parts.scheme != "amqps":
        raise UsageError(f"--ca-file {args.ca_file}: the broker URL {mask_url(args.broker)} is not amqps://")
    path = Path(args.ca_file).expanduser()
    if not path.is_file():
        raise UsageError(f"--ca-file {path}: no such file")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "cafile"]
    query.append(("cafile", str(path.resolve())))
    args.broker = urlunsplit(parts._replace(query=urlencode(query, safe="/")))  # a readable path when shown


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # pika logs each failed connection attempt as several ERROR records and a traceback; we report the same
    # failure in one line (password masked), so pika speaks only with -vv.
    logging.getLogger("pika").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


# ---------------------------------------------------------------------------------------------- loading
def load_registry():
    from stepflow_tui.plugins import load_registry as load

    return load()


def load_all_definitions(workflows: str | None, registry) -> dict[str, Any]:
    """Plugin-shipped definitions first, then the user's file on top (same identifier: the file wins).
    A broken user file is an error (exit 2); a broken plugin definition is a warning."""
    from stepflow_tui.core.definitions import (
        DefinitionError,
        load_definitions,
        merge_definitions,
        parse_definitions,
    )

    sources = []
    for plugin_name, source in getattr(registry, "workflow_sources", []):
        try:
            if isinstance(source, (str, Path)):
                sources.append(load_definitions(source))
            else:
                sources.append(parse_definitions(source, f"plugin {plugin_name}"))
        except DefinitionError as exc:
            log.warning("plugin %s ships invalid definitions: %s", plugin_name, exc)
    path = Path(workflows) if workflows else Path("workflows.json")
    if workflows or path.exists():
        if not path.exists():
            raise UsageError(f"{path}: no such workflows file (--workflows / STEPFLOW_WORKFLOWS)")
        try:
            sources.append(load_definitions(path))
        except DefinitionError as exc:
            raise UsageError(str(exc)) from None
    return merge_definitions(sources)


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p {pair!r}: expected KEY=VALUE")
        params[key.strip()] = value
    return params


def make_backend(args: argparse.Namespace, definitions: dict, registry, *, local_workers: bool | None = None,
                 concurrency: int = 4, locked_hint: str = ""):
    from stepflow_tui.backend.backend import Backend, BackendConfig
    from stepflow_tui.store import StoreError, StoreLocked

    config = BackendConfig(broker_url=args.broker, db_path=args.db, definitions=definitions, registry=registry,
                           local_workers=local_workers, local_concurrency=max(1, concurrency),
                           read_only=args.read_only)
    backend = Backend(config)
    try:
        backend.start()
    except StoreLocked as exc:
        raise UsageError(f"{exc}{locked_hint}") from None
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    return backend


# ---------------------------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from stepflow_tui.core.definitions import StartParameterError, resolve_start_parameters

    registry = load_registry()
    definitions = load_all_definitions(args.workflows, registry)
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
    memory = args.broker.startswith("memory:")
    backend = make_backend(args, definitions, registry, local_workers=args.local_workers,
                           concurrency=args.concurrency)
    try:
        workflow_id = backend.start_workflow(args.identifier, params).result(timeout=60)
        print(f"workflow #{workflow_id} {definition.identifier} started (state: {args.db})", flush=True)
        if args.wait or memory:
            return follow(backend, workflow_id)
        waiting = _wait_sent(backend, workflow_id)
        follow_hint = f"stepflow wait {workflow_id} --broker {backend.broker_display_url}"
        if waiting:
            print(f"{waiting} order(s) not sent yet (broker {backend.connection_state}, or beyond the window of "
                  f"orders in flight); a backend sends them and advances the workflow: {follow_hint}")
        else:
            print(f"orders sent; the next steps go out while a backend runs: {follow_hint}")
        return EXIT_OK
    finally:
        backend.stop()


def _wait_sent(backend, workflow_id: int, timeout: float = 30.0) -> int:
    """Wait (up to ``timeout``) until the orders that can go out now went out; return how many still wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and backend.engine.pending_count():
        if backend.engine.in_flight >= backend.config.window:
            break  # the window is full: the rest go out as jobs finish, while a backend runs
        time.sleep(0.05)
    return backend.engine.pending_count()


def cmd_wait(args: argparse.Namespace) -> int:
    registry = load_registry()
    definitions = load_all_definitions(args.workflows, registry)
    backend = make_backend(args, definitions, registry, local_workers=args.local_workers,
                           concurrency=args.concurrency)
    try:
        if backend.workflow(args.workflow_id) is None:
            raise UsageError(f"no workflow #{args.workflow_id} in {args.db}")
        return follow(backend, args.workflow_id)
    finally:
        backend.stop()


def follow(backend, workflow_id: int, out=None) -> int:
    """Print progress until the workflow is finished; exit code 0 completed, 1 otherwise."""
    import threading

    out = out or sys.stdout
    tty = out.isatty()
    changed = threading.Event()
    backend.subscribe(lambda update: changed.set() if (workflow_id in update.workflow_ids or update.connection
                                                       or update.messages) else None)
    last_line = ""
    last_print = 0.0
    connection = backend.connection_state
    while True:
        view = backend.workflow(workflow_id)
        if view is None:
            print(f"workflow #{workflow_id} was deleted", file=out)
            return EXIT_FAILED
        line = progress_line(view)
        if backend.connection_state != connection:
            connection = backend.connection_state
            print(f"\nbroker {backend.broker_display_url}: {connection}", file=out, flush=True)
        now = time.monotonic()
        if line != last_line and (tty or now - last_print >= 2.0 or view.finished_at):
            if tty:
                out.write("\r\x1b[2K" + line)
                out.flush()
            else:
                print(line, file=out, flush=True)
            last_line, last_print = line, now
        if view.status in ("completed", "error", "stopped", "aborted"):
            if tty:
                out.write("\n")
            print_summary(backend, view, out)
            return EXIT_OK if view.status == "completed" else EXIT_FAILED
        if view.status == "paused" and not backend.running_count(workflow_id):
            # Nothing can move it now, and while this process holds the state file nobody can resume it.
            if tty:
                out.write("\n")
            print(f"workflow #{workflow_id} is paused and none of its jobs is running: resume it in the "
                  f"workbench (stepflow, then p), or follow it again later with: stepflow wait {workflow_id}",
                  file=out, flush=True)
            return EXIT_FAILED
        changed.wait(1.0)
        changed.clear()


def progress_line(view) -> str:
    counts = view.counts
    done = counts.get("completed", 0) + counts.get("skipped", 0)
    steps = " ".join(f"[{s.label or s.name}: {s.counts.get('completed', 0)}/{s.counts.get('total', 0)}"
                     f"{' ✘' + str(s.counts['error']) if s.counts.get('error') else ''}]"
                     for s in view.steps if s.status != "pending")
    errors = counts.get("error", 0)
    paused = " (paused)" if view.paused else ""
    return (f"#{view.id} {view.identifier} {view.status}{paused}: {done}/{counts.get('total', 0)} jobs done"
            f"{f', {errors} failed' if errors else ''} {steps}")


def print_summary(backend, view, out) -> None:
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
    order = ("completed", "processing", "queued", "retrying", "error", "skipped", "stopped")
    parts = [f"{counts.get(k, 0)} {k}" for k in order if counts.get(k)]
    return f"{counts.get('total', 0)} jobs" + (": " + ", ".join(parts) if parts else "")


def cmd_status(args: argparse.Namespace) -> int:
    from stepflow_tui.backend.backend import job_view, workflow_view
    from stepflow_tui.store import StoreError, read_state

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
    if not workflows:
        print(f"no workflows in {args.db}")
        return EXIT_OK
    for workflow in workflows:
        view = workflow_view(workflow)
        paused = " (paused)" if workflow.paused else ""
        print(f"#{view.id} {view.identifier} v{view.version}  {view.status}{paused}  "
              f"{format_counts(view.counts)}  started {view.created_at}")
        for step in view.steps:
            print(f"    {step.id}. {step.label or step.name} [{step.name}] {step.status}: {format_counts(step.counts)}")
        failed = [state.jobs[i] for s in workflow.steps if s.counts.get("error")
                  for i in s.job_ids if i in state.jobs and state.jobs[i].status.value == "error"]
        for job in failed[:10]:
            print(f"    ✘ job #{job.id} ({job.job_type}): {job_view(job).error}")
        if len(failed) > 10:
            print(f"    … and {len(failed) - 10} more failed jobs")
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = load_registry()
    if args.json:
        print(json.dumps({
            "plugins": [vars(p) if not hasattr(p, "__dataclass_fields__") else _asdict(p) for p in registry.plugins],
            "job_types": {n: _asdict(t) for n, t in registry.job_types.items()},
            "workers": sorted(registry.workers),
            "failures": [_asdict(f) for f in registry.failures],
        }, indent=2, default=str))
        return EXIT_OK
    print("plugins:")
    for plugin in registry.plugins:
        print(f"  {plugin.name} {plugin.version or ''}".rstrip() + f"  hooks: {', '.join(plugin.hooks) or '-'}")
    print("job types:")
    for name in sorted(registry.job_types):
        job_type = registry.job_types[name]
        worker = "worker" if name in registry.workers else "no worker here"
        print(f"  {name:<18} {job_type.label}  [{job_type.plugin}; {worker}]")
    if registry.failures:
        print("load failures:")
        for failure in registry.failures:
            print(f"  ✘ {failure.name}: {failure.error}")
    return EXIT_OK


def _asdict(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else obj


def cmd_validate(args: argparse.Namespace) -> int:
    from stepflow_tui.core.definitions import DefinitionError, load_definitions

    if args.file:
        try:
            definitions = {d.identifier: d for d in load_definitions(args.file)}
        except DefinitionError as exc:
            raise UsageError(str(exc)) from None
        source = args.file
    else:
        definitions = load_all_definitions(args.workflows, load_registry())
        source = "definitions"
    print(f"{source}: {len(definitions)} valid workflow definition(s)")
    for identifier in sorted(definitions):
        definition = definitions[identifier]
        params = ", ".join(f"{p.id}{'*' if p.required else ''}" for p in definition.start_parameters)
        print(f"  {identifier} v{definition.version}: {definition.label} — {len(definition.steps)} steps"
              f"{f'; start parameters: {params}' if params else ''}  [{definition.source}]")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from stepflow_tui.worker.__main__ import worker_main

    return worker_main(args)


def cmd_queues(args: argparse.Namespace) -> int:
    from stepflow_tui.broker import topology
    from stepflow_tui.broker.base import BrokerError, connect, mask_url

    if args.broker.startswith("memory:"):
        raise UsageError("the embedded broker (memory://) lives inside one process: its queues are shown in the "
                         "workbench; pass --broker amqp://… to look at RabbitMQ")
    registry = load_registry()
    names = list(topology.system_queue_names())
    types = set(registry.job_types)
    for definition in load_all_definitions(args.workflows, registry).values():
        types.update(step.name for step in definition.steps)
    names += [topology.job_queue(t) for t in sorted(types)]
    try:
        conn = connect(args.broker, name="stepflow-queues")
        try:
            states = conn.queue_states(names)
        finally:
            conn.close()
    except BrokerError as exc:
        print(f"stepflow queues: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"broker {mask_url(args.broker)}")
    print(f"{'queue':<28} {'ready':>8} {'unacked':>8} {'consumers':>9}")
    for state in states:
        if not state.exists:
            print(f"{state.name:<28} {'—':>8} {'—':>8} {'—':>9}  (not declared)")
        else:
            print(f"{state.name:<28} {state.ready:>8} {state.unacked:>8} {state.consumers:>9}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UsageError("stepflow serve needs textual-serve: pip install 'stepflow-tui[serve]'") from None
    command = [sys.executable, "-m", "stepflow_tui", "--broker", args.broker, "--db", str(args.db)]
    if args.workflows:
        command += ["--workflows", str(args.workflows)]
    if args.read_only:
        command.append("--read-only")
    import shlex

    Server(" ".join(shlex.quote(c) for c in command), host=args.host, port=args.port,
           title="stepflow").serve()
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    registry = load_registry()
    definitions = load_all_definitions(args.workflows, registry)
    backend = make_backend(args, definitions, registry)
    try:
        from stepflow_tui.tui.app import run_workbench

        return run_workbench(backend, read_only=args.read_only)
    finally:
        backend.stop()


def _one_command(args: argparse.Namespace, action, *, local_workers: bool | None = False,
                 concurrency: int = 4):
    """Open the state (this process must own it), run ``action(backend)`` on the backend thread's terms,
    and return its result. Refused in read-only mode."""
    from stepflow_tui.core.engine import EngineError

    if args.read_only:
        raise UsageError(f"read-only mode: {args.command} refused")
    registry = load_registry()
    definitions = load_all_definitions(args.workflows, registry)
    backend = make_backend(args, definitions, registry, local_workers=local_workers, concurrency=concurrency,
                           locked_hint=f" (to {args.command} while it runs, use the workbench's keys: ? lists them)")
    try:
        backend.wait_until_running(10.0)
        try:
            return backend, action(backend).result(timeout=30)
        except EngineError as exc:
            raise UsageError(str(exc)) from None
    except BaseException:
        backend.stop()
        raise


def cmd_retry(args: argparse.Namespace) -> int:
    if (args.job_id is None) == (args.workflow is None):
        raise UsageError("retry: give a JOB_ID or --workflow ID (not both)")
    if args.job_id is not None:
        backend, _ = _one_command(args, lambda b: b.retry_job(args.job_id), local_workers=args.local_workers,
                                  concurrency=args.concurrency)
        workflow_id = backend.job(args.job_id)["workflow_id"]
        print(f"job #{args.job_id} queued again (workflow #{workflow_id})")
    else:
        backend, count = _one_command(args, lambda b: b.retry_failed(args.workflow, args.step),
                                      local_workers=args.local_workers, concurrency=args.concurrency)
        workflow_id = args.workflow
        print(f"{count} failed job(s) of workflow #{workflow_id} queued again")
    try:
        if args.wait or args.broker.startswith("memory:"):
            return follow(backend, workflow_id)
        _wait_sent(backend, workflow_id)
        return EXIT_OK
    finally:
        backend.stop()


def cmd_abort(args: argparse.Namespace) -> int:
    backend, _ = _one_command(args, lambda b: b.abort(args.workflow_id))
    backend.stop()
    print(f"workflow #{args.workflow_id} aborted")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    backend, _ = _one_command(args, lambda b: b.cancel_job(args.job_id))
    backend.stop()
    print(f"job #{args.job_id} cancelled")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- operations
def _ops_connection(args: argparse.Namespace, command: str):
    """A connection of its own to RabbitMQ for an operations command (never to memory://, which lives inside
    the process that runs it). Raises `BrokerError` (messages carry the masked URL only)."""
    from stepflow_tui.broker.base import connect

    if args.broker.startswith("memory:"):
        raise UsageError(f"{command}: the embedded broker (memory://) lives inside one process, so its dead "
                         "letters are only reachable from there: open the workbench (stepflow) and use the "
                         "job_dead_letter row of the queues panel, or pass --broker amqp://…")
    return connect(args.broker, name=f"stepflow-{command}")


def cmd_dead_letters(args: argparse.Namespace) -> int:
    from stepflow_tui import ops
    from stepflow_tui.broker.base import BrokerError, mask_url

    if args.limit < 0:
        raise UsageError(f"--limit {args.limit}: must be 0 or more")
    try:
        conn = _ops_connection(args, "dead-letters")
        try:
            total = ops.dead_letter_count(conn)
            letters = ops.peek_dead_letters(conn, args.limit) if total else []
        finally:
            conn.close()  # anything not requeued yet goes back too
    except BrokerError as exc:
        print(f"stepflow dead-letters: {exc}", file=sys.stderr)
        return EXIT_FAILED
    broker = mask_url(args.broker)
    if args.json:
        print(json.dumps({"broker": broker, "queue": ops.DEAD_LETTER_QUEUE, "exists": total is not None,
                          "total": total or 0, "messages": [letter.to_dict() for letter in letters]}, indent=2))
        return EXIT_OK
    if total is None:
        print(f"{broker}: no {ops.DEAD_LETTER_QUEUE} queue yet (nothing was ever dead-lettered)")
        return EXIT_OK
    shown = f", the first {len(letters)} shown" if len(letters) < total else ""
    print(f"{ops.DEAD_LETTER_QUEUE} on {broker}: {total} message(s){shown}")
    for letter in letters:
        death = (f"{letter.reason}{f' x{letter.count}' if letter.count > 1 else ''}"
                 f"{f' at {letter.time}' if letter.time else ''}" if letter.original_queue else "no x-death")
        print(f"  {letter.position + 1}. from {letter.original_queue or '?'} ({death}), routing key "
              f"{ops.excerpt(letter.routing_key.encode())!r}, {letter.size} bytes")
        print(f"     {letter.excerpt}")
    if total:
        print("send them back with: stepflow redrive [--queue Q] [--dry-run]")
    return EXIT_OK


def _print_redrive_plan(report, queue: str | None) -> int:
    from stepflow_tui import ops

    total, lines = ops.redrive_summary(report.counts())
    target = f" from {queue}" if queue else ""
    print(f"{total} dead letter(s){target} to send back, by original queue:" if total
          else f"nothing to redrive{target}")
    if lines:
        print(lines)
    skipped = sum(report.skipped.values())
    if skipped:
        print(f"{skipped} from other queues stay: " + ", ".join(f"{n} {q}" for q, n in sorted(report.skipped.items())))
    return total


def cmd_redrive(args: argparse.Namespace) -> int:
    from stepflow_tui import ops
    from stepflow_tui.broker.base import BrokerError

    if args.read_only and not args.dry_run:
        raise UsageError("read-only mode: redrive refused (--dry-run only counts)")
    try:
        conn = _ops_connection(args, "redrive")
        try:
            plan = ops.redrive(conn, args.queue, dry_run=True)
        finally:
            conn.close()  # not held open while a person reads the counts (heartbeats would stop)
        total = _print_redrive_plan(plan, args.queue)
        if args.dry_run or not total:
            return EXIT_OK
        if not args.yes and sys.stdin.isatty():
            answer = input(f"redrive {total} message(s) to their queues? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing sent")
                return EXIT_FAILED
        conn = _ops_connection(args, "redrive")
        try:
            report = ops.redrive(conn, args.queue)
        finally:
            conn.close()
    except BrokerError as exc:
        print(f"stepflow redrive: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sent = sum(report.redriven.values())
    print(f"redriven {sent} message(s): " + (", ".join(f"{n} to {q}" for q, n in sorted(report.redriven.items()))
                                             or "none"))
    for letter in report.unredrivable:
        print(f"  kept #{letter.position + 1} (no x-death: its queue is unknown): {letter.excerpt}")
    for letter, reason in report.failed:
        print(f"  ✘ kept #{letter.position + 1} from {letter.original_queue}: {reason}", file=sys.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from stepflow_tui import ops
    from stepflow_tui.store import StoreError

    try:
        age = ops.parse_age(args.older_than)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.read_only and not args.dry_run:
        raise UsageError("read-only mode: prune refused (--dry-run only counts)")
    try:
        result = ops.prune(args.db, age, dry_run=args.dry_run)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    ids = ", ".join(f"#{i}" for i in result.workflow_ids[:20]) + (" …" if len(result.workflow_ids) > 20 else "")
    what = (f"{len(result.workflow_ids)} workflow(s) ({ids or 'none'}) and {result.jobs:,} job(s) finished more "
            f"than {args.older_than.strip()} ago")
    if result.dry_run:
        print(f"would remove {what} from {args.db}; the state is {ops.human_size(result.size_before)}")
    else:
        print(f"removed {what} from {args.db}; state {ops.human_size(result.size_before)} -> "
              f"{ops.human_size(result.size_after)}")
    return EXIT_OK


COMMANDS = {
    "dead-letters": cmd_dead_letters, "redrive": cmd_redrive, "prune": cmd_prune,
    "retry": cmd_retry, "abort": cmd_abort, "cancel": cmd_cancel,
    "run": cmd_run, "wait": cmd_wait, "status": cmd_status, "plugins": cmd_plugins, "validate": cmd_validate,
    "worker": cmd_worker, "queues": cmd_queues, "serve": cmd_serve, None: cmd_tui,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = resolve_options(parser.parse_args(argv))
    setup_logging(args.verbose)
    try:
        apply_ca_file(args)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"stepflow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nstepflow: interrupted", file=sys.stderr)
        return 130
