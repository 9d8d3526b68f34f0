"""Global options (--broker, --ca-file, --db, --workflows, --api, --read-only, -v): declared once, accepted before or
after the command, each with its environment variable; exit codes and `UsageError`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from stepflow_tui.broker.cluster import CLASSIC, QUEUE_TYPES, is_cluster, split_urls

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Seconds a command waits for a broker that does not answer (refused connection, restarting) before it gives up.
CONNECT_TIMEOUT_DEFAULT = 30.0
QUEUE_TYPE_ENV = "STEPFLOW_QUEUE_TYPE"

#: The global options by their ``args`` name; a command says which of them it uses (`add_global_options`).
BROKER, CA_FILE, DB, WORKFLOWS, READ_ONLY, VERBOSE = "broker", "ca_file", "db", "workflows", "read_only", "verbose"
API, CONNECT_TIMEOUT, MOVE_TO_BROKER, QUEUE_TYPE = "api", "connect_timeout", "move_to_broker", "queue_type"
GLOBALS: tuple[str, ...] = (BROKER, CA_FILE, DB, WORKFLOWS, API, READ_ONLY, VERBOSE, CONNECT_TIMEOUT, MOVE_TO_BROKER,
                            QUEUE_TYPE)
_UNSET: dict[str, Any] = {BROKER: None, CA_FILE: None, DB: None, WORKFLOWS: None, API: None, READ_ONLY: False,
                          VERBOSE: 0, CONNECT_TIMEOUT: None, MOVE_TO_BROKER: False, QUEUE_TYPE: None}


class UsageError(Exception):
    """A problem the user can fix (bad definitions, parameters, state file in use): exit 2, one line."""


class BrokerUnreachable(Exception):
    """The broker did not answer for ``--connect-timeout`` seconds: exit 1, one line with the last reason."""


def default_db() -> Path:
    """The state file: $STEPFLOW_DB, else $XDG_STATE_HOME/stepflow/state.json (~/.local/state by default)."""
    env = os.environ.get("STEPFLOW_DB")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "stepflow" / "state.json"


def _option_specs() -> dict[str, tuple[tuple[str, ...], dict[str, Any]]]:
    return {
        BROKER: (("--broker",), {"metavar": "URL",
                                 "help": "memory:// (embedded, the default) or amqp://user:pass@host:5672/vhost; "
                                         "a RabbitMQ cluster: its nodes' URLs separated by commas "
                                         "[env STEPFLOW_BROKER_URL]"}),
        QUEUE_TYPE: (("--queue-type",), {"choices": QUEUE_TYPES,
                                         "help": "type of the response, worker and catch queues: quorum "
                                                 "(replicated on a cluster) or classic [env STEPFLOW_QUEUE_TYPE; "
                                                 "default classic]"}),
        CA_FILE: (("--ca-file",), {"metavar": "PATH",
                                   "help": "CA certificate(s) to verify an amqps:// broker with "
                                           "[env STEPFLOW_CA_FILE]"}),
        CONNECT_TIMEOUT: (("--connect-timeout",), {
            "metavar": "SECONDS", "type": float,
            "help": "give up when the broker does not answer for this long (refused connection, restarting); "
                    f"a refused login ends at once [env STEPFLOW_CONNECT_TIMEOUT; default {CONNECT_TIMEOUT_DEFAULT:.0f}]"}),
        DB: (("--db",), {"metavar": "FILE", "help": f"state file [env STEPFLOW_DB; default {default_db()}]"}),
        WORKFLOWS: (("--workflows",), {"metavar": "FILE",
                                       "help": "workflow definitions, on top of those plugins ship "
                                               "[env STEPFLOW_WORKFLOWS; default ./workflows.json if present]"}),
        API: (("--api",), {"metavar": "URL",
                           "help": "attach to the `stepflow backend` service at this URL [env STEPFLOW_API; "
                                   "default: the service running for --db, if any, else embedded]"}),
        READ_ONLY: (("--read-only",), {"action": "store_true",
                                       "help": "refuse every change (run, retry, abort, cancel, pause, delete, "
                                               "prune, redrive)"}),
        VERBOSE: (("-v", "--verbose"), {"action": "count", "help": "more logging on stderr (-vv for debug)"}),
        MOVE_TO_BROKER: (("--move-to-broker",), {
            "action": "store_true",
            "help": "move the unfinished workflows of a state started on another broker to --broker (else "
                    "such a state is refused)"}),
    }


def add_global_options(parser: argparse.ArgumentParser, *, top: bool, uses: Iterable[str] = GLOBALS,
                       omit: Iterable[str] = ()) -> None:
    """Add the global options to ``parser``. On a command (``top=False``) those it ``uses`` are described in
    its help; the others are still accepted (a script may pass --broker to every command) and only named.
    ``omit``: options the command declares itself (the worker's --broker)."""
    used, omitted = set(uses), set(omit)
    specs = _option_specs()
    unused = [specs[name][0][-1] for name in GLOBALS if not top and name not in used | omitted]
    # listed by name, so that the help still says a script may pass them
    note = f"also accepted, without effect on this command: {', '.join(unused)}" if unused else None
    group = parser.add_argument_group("global options (before or after the command)", description=note)
    for name, (flags, spec) in specs.items():
        if name in omitted:
            continue
        # On a command the default is SUPPRESS so that a value given before the command is not reset.
        default = _UNSET[name] if top else argparse.SUPPRESS
        shown = top or name in used
        group.add_argument(*flags, **{**spec, "default": default,
                                      "help": spec["help"] if shown else argparse.SUPPRESS})


def add_local_worker_options(parser: argparse.ArgumentParser) -> None:
    """--local-workers / --no-local-workers / --concurrency, for the commands that may open a backend."""
    parser.add_argument("--local-workers", dest="local_workers", action="store_true", default=None,
                        help="also run in-process workers for every installed job type (always on memory://)")
    parser.add_argument("--no-local-workers", dest="local_workers", action="store_false",
                        help="never run in-process workers")
    parser.add_argument("--concurrency", type=int, default=4, metavar="N",
                        help="in-process workers' pool size (default 4)")


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the global options from the environment and defaults (the command line wins)."""
    for name, unset in _UNSET.items():
        if not hasattr(args, name):
            setattr(args, name, unset)
    args.broker = args.broker or os.environ.get("STEPFLOW_BROKER_URL") or "memory://"
    if args.connect_timeout is None:
        env = os.environ.get("STEPFLOW_CONNECT_TIMEOUT")
        try:
            args.connect_timeout = float(env) if env else CONNECT_TIMEOUT_DEFAULT
        except ValueError:
            raise UsageError(f"STEPFLOW_CONNECT_TIMEOUT={env!r}: expected a number of seconds") from None
    args.db_given = bool(args.db or os.environ.get("STEPFLOW_DB"))
    args.queue_type = queue_type_option(args.queue_type)
    args.db = Path(args.db).expanduser() if args.db else default_db()
    args.workflows = args.workflows or os.environ.get("STEPFLOW_WORKFLOWS")
    args.ca_file = args.ca_file or os.environ.get("STEPFLOW_CA_FILE")
    args.api = args.api or os.environ.get("STEPFLOW_API")
    return args


def queue_type_option(given: str | None) -> str:
    """--queue-type, else $STEPFLOW_QUEUE_TYPE, else classic; a `UsageError` for anything else."""
    value = given or os.environ.get(QUEUE_TYPE_ENV) or CLASSIC
    if value not in QUEUE_TYPES:
        raise UsageError(f"{QUEUE_TYPE_ENV}={value!r}: expected one of {', '.join(QUEUE_TYPES)}")
    return value


def apply_ca_file(args: argparse.Namespace) -> None:
    """--ca-file / STEPFLOW_CA_FILE becomes ``?cafile=`` of an amqps:// URL (broker/amqp.py builds the TLS
    context from it). Ignored for memory:// (no network); an error for plain amqp:// (it would not be used).
    A cluster's addresses get it each."""
    if is_cluster(args.broker):
        nodes = []
        for node in split_urls(args.broker):
            one = argparse.Namespace(**{**vars(args), "broker": node})
            apply_ca_file(one)
            nodes.append(one.broker)
        args.broker = ",".join(nodes)
        return
    from dataclasses import replace

    from stepflow_tui.broker.url import InvalidBrokerURL, parse_broker_url

    if not args.ca_file:
        return
    try:
        address = parse_broker_url(args.broker)
    except InvalidBrokerURL as exc:
        raise UsageError(str(exc)) from None
    if address.scheme == "memory":
        return
    if address.scheme != "amqps":
        raise UsageError(f"--ca-file {args.ca_file}: the broker URL {address.masked()} is not amqps://")
    path = Path(args.ca_file).expanduser()
    if not path.is_file():
        raise UsageError(f"--ca-file {path}: no such file")
    options = [(k, v) for k, v in address.options if k != "cafile"] + [("cafile", str(path.resolve()))]
    args.broker = replace(address, options=options).url()


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings, -v info, -vv debug."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if verbose <= 0:
        # Commands report the broker connection themselves (a countdown, then one line): not twice.
        for handler in logging.getLogger().handlers:
            handler.addFilter(lambda record: not getattr(record, "stepflow_connection", False))
    # pika logs each failed connection attempt as several ERROR records and a traceback; we report the same
    # failure in one line (password masked), so pika speaks only with -vv.
    logging.getLogger("pika").setLevel(logging.DEBUG if verbose >= 2 else logging.CRITICAL)


Handler = Callable[[argparse.Namespace], int]


class Commands:
    """Where a group module adds its commands: each with its handler, its help and the global options it uses."""

    def __init__(self, subparsers: argparse._SubParsersAction) -> None:
        self._subparsers = subparsers

    def add(self, name: str, handler: Handler, help_text: str, *, uses: Iterable[str], omit: Iterable[str] = (),
            epilog: str | None = None) -> argparse.ArgumentParser:
        """A command ``name`` run by ``handler(args)``; add its own arguments to the parser returned."""
        # examples in an epilog keep their lines
        formatter = argparse.RawDescriptionHelpFormatter if epilog else argparse.HelpFormatter
        parser = self._subparsers.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                             formatter_class=formatter)
        add_global_options(parser, top=False, uses=uses, omit=omit)
        parser.set_defaults(handler=handler)
        return parser
