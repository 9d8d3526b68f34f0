"""Commands on the broker: worker (a headless worker), queues, dead-letters, redrive."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from stepflow_tui.broker import topology
from stepflow_tui.cli.connection import connect_or_fail
from stepflow_tui.cli.options import (
    BROKER,
    CA_FILE,
    CONNECT_TIMEOUT,
    EXIT_FAILED,
    EXIT_OK,
    QUEUE_TYPE,
    READ_ONLY,
    VERBOSE,
    WORKFLOWS,
    Commands,
    UsageError,
)
from stepflow_tui.cli.session import load_all_definitions, load_registry

if TYPE_CHECKING:
    from stepflow_tui.ops import RedriveReport

BROKER_ONLY = (BROKER, CA_FILE, CONNECT_TIMEOUT, VERBOSE)


def register(commands: Commands) -> None:
    """Add this group's commands."""
    from stepflow_tui.worker.__main__ import add_worker_arguments

    # The worker declares its own --broker: not twice (argparse refuses a duplicate option).
    p = commands.add("worker", cmd_worker, "run a headless worker (for systemd, containers): consumes job queues",
                     uses=(CA_FILE, VERBOSE, QUEUE_TYPE), omit=(BROKER,),
                     epilog="example:\n  stepflow worker --broker amqp://guest:guest@localhost:5672/ "
                            "--concurrency 4")
    add_worker_arguments(p)
    for action in p._actions:  # keep a --broker given before the command (like the global options)
        if action.dest == "broker":
            action.default = argparse.SUPPRESS

    commands.add("queues", cmd_queues, "one line per queue: ready, unacked, consumers",
                 uses=(BROKER, CA_FILE, CONNECT_TIMEOUT, WORKFLOWS, VERBOSE))

    p = commands.add("dead-letters", cmd_dead_letters,
                     f"list what is in {topology.JOB_DEAD_LETTER} (original queue, reason, payload excerpt) "
                     "without consuming it", uses=BROKER_ONLY)
    p.add_argument("--limit", type=int, default=20, metavar="N", help="show the first N messages (default 20)")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = commands.add("redrive", cmd_redrive, "send the dead letters back to the queues they died in (after "
                                             "showing the counts)", uses=BROKER_ONLY + (READ_ONLY,))
    p.add_argument("--queue", metavar="Q", help=f"only those of this original queue "
                                                f"({topology.job_queue('checksum')} or checksum)")
    p.add_argument("--dry-run", action="store_true", help="show the counts, send nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for a confirmation on a terminal")


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a headless worker until SIGTERM."""
    from stepflow_tui.worker.__main__ import worker_main

    return worker_main(args)


def cmd_queues(args: argparse.Namespace) -> int:
    """Print the system queues and the job queues of every known job type, as RabbitMQ counts them."""
    from stepflow_tui.backend.queue_counters import with_counters
    from stepflow_tui.broker.base import BrokerError, mask_url

    if args.broker.startswith("memory:"):
        raise UsageError("the embedded broker (memory://) lives inside one process: its queues are shown in the "
                         "workbench; pass --broker amqp://… to look at RabbitMQ")
    registry = load_registry()
    names = list(topology.system_queue_names())
    types = set(registry.job_types)
    for definition in load_all_definitions(args.workflows, registry).values():
        types.update(step.name for step in definition.steps)
    names += [topology.job_queue(t) for t in sorted(types)]
    conn = connect_or_fail(args.broker, "stepflow-queues", "queues", args.connect_timeout)
    try:
        try:
            states = conn.queue_states(names)
        finally:
            conn.close()
    except BrokerError as exc:
        print(f"stepflow queues: {exc}", file=sys.stderr)
        return EXIT_FAILED
    states = with_counters(states, _management_counters(args.broker), counts_unacked=False)
    print(f"broker {mask_url(args.broker)}")
    print(f"{'queue':<28} {'ready':>8} {'unacked':>8} {'consumers':>9}")
    for state in states:
        if not state.exists:
            print(f"{state.name:<28} {'—':>8} {'—':>8} {'—':>9}  (not declared)")
        else:
            unacked = "?" if state.unacked is None else state.unacked  # unknown, not 0, without the API
            print(f"{state.name:<28} {state.ready:>8} {unacked:>8} {state.consumers:>9}")
    if any(state.exists and state.unacked is None for state in states):
        print("unacked: '?' = unknown (enable RabbitMQ's management plugin: rabbitmq-plugins enable "
              "rabbitmq_management)")
    return EXIT_OK


def _management_counters(broker_url: str) -> Any:
    """The management API's queue counters, or None when it does not answer."""
    from stepflow_tui.broker.management import ManagementAPI, ManagementUnavailable

    try:
        return ManagementAPI(broker_url).queue_counters()
    except ManagementUnavailable:
        return None


def _ops_connection(args: argparse.Namespace, command: str) -> Any:
    """A connection of its own to RabbitMQ for an operations command (never to memory://, which lives inside
    the process that runs it). Raises `BrokerError` (messages carry the masked URL only)."""
    if args.broker.startswith("memory:"):
        raise UsageError(f"{command}: the embedded broker (memory://) lives inside one process, so its dead "
                         "letters are only reachable from there: open the workbench (stepflow) and use the "
                         f"{topology.JOB_DEAD_LETTER} row of the queues panel, or pass --broker amqp://…")
    return connect_or_fail(args.broker, f"stepflow-{command}", command, args.connect_timeout)


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """List the dead letters (they stay where they are)."""
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
        print(json.dumps({"broker": broker, "queue": topology.JOB_DEAD_LETTER, "exists": total is not None,
                          "total": total or 0, "messages": [letter.to_dict() for letter in letters]}, indent=2))
        return EXIT_OK
    if total is None:
        print(f"{broker}: no {topology.JOB_DEAD_LETTER} queue yet (nothing was ever dead-lettered)")
        return EXIT_OK
    shown = f", the first {len(letters)} shown" if len(letters) < total else ""
    print(f"{topology.JOB_DEAD_LETTER} on {broker}: {total} message(s){shown}")
    for letter in letters:
        death = (f"{letter.reason}{f' x{letter.count}' if letter.count > 1 else ''}"
                 f"{f' at {letter.time}' if letter.time else ''}" if letter.original_queue else "no x-death")
        print(f"  {letter.position + 1}. from {letter.original_queue or '?'} ({death}), routing key "
              f"{ops.excerpt(letter.routing_key.encode())!r}, {letter.size} bytes")
        print(f"     {letter.excerpt}")
    if total:
        print("send them back with: stepflow redrive [--queue Q] [--dry-run]")
    return EXIT_OK


def _print_redrive_plan(report: RedriveReport, queue: str | None) -> int:
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
    """Show the dead letters' counts by original queue, then (confirmed on a terminal) send them back."""
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
