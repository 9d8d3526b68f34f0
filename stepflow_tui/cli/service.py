"""The backend as a service: ``stepflow backend`` (the HTTP API, until SIGTERM) and ``stepflow credentials``
(the values Media Cloud AI workers fetch from it). See docs/service.md."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from stepflow_tui.cli.options import (
    BROKER,
    CA_FILE,
    DB,
    EXIT_OK,
    QUEUE_TYPE,
    READ_ONLY,
    VERBOSE,
    WORKFLOWS,
    Commands,
    UsageError,
    add_global_options,
    add_local_worker_options,
)
from stepflow_tui.cli.session import backend_config, load

if TYPE_CHECKING:
    from stepflow_tui.service.credentials import CredentialStore

DEFAULT_LISTEN = "127.0.0.1:4000"  # the same as stepflow_tui.service.DEFAULT_LISTEN (aiohttp loads lazily)


def register(commands: Commands) -> None:
    """Add this group's commands."""
    p = commands.add("backend", cmd_backend, "run the backend headless behind its HTTP API until SIGTERM/SIGINT "
                                             "(workbench and commands for the same --db attach to it)",
                     uses=(BROKER, CA_FILE, DB, WORKFLOWS, READ_ONLY, VERBOSE, QUEUE_TYPE),
                     epilog="examples:\n"
                            "  stepflow backend --broker amqp://guest:guest@localhost:5672/ --db ./state.json\n"
                            "  STEPFLOW_API_TOKEN=... stepflow backend --listen 0.0.0.0:4000")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address of the HTTP API (default {DEFAULT_LISTEN}). The API token: STEPFLOW_API_TOKEN, "
                        "else <state>.token (generated when missing); required on a non-loopback address")
    add_local_worker_options(p)

    p = commands.add("credentials", cmd_credentials_help, "the credentials Media Cloud AI workers fetch from the "
                                                          "service (kept in <state>.credentials, mode 0600)",
                     uses=(DB, VERBOSE))
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser("set", help="set KEY to the value read from standard input (never from the "
                                       "command line)", description="set KEY to the value on standard input")
    q.add_argument("key", metavar="KEY")
    q.set_defaults(handler=cmd_credentials_set)
    q = actions.add_parser("list", help="the keys (never the values)", description="the keys (never the values)")
    q.set_defaults(handler=cmd_credentials_list)
    q = actions.add_parser("delete", help="forget KEY", description="forget KEY")
    q.add_argument("key", metavar="KEY")
    q.set_defaults(handler=cmd_credentials_delete)
    for action in actions.choices.values():
        add_global_options(action, top=False, uses=(DB, VERBOSE))


def _needs_serve_extra() -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise UsageError("the service needs aiohttp: pip install 'stepflow-tui[serve]'") from None


def cmd_backend(args: argparse.Namespace) -> int:
    """``stepflow backend``: serve the API until SIGTERM/SIGINT (exit 0); what the operator must fix: exit 2."""
    _needs_serve_extra()
    from stepflow_tui.service import ServiceError, run_service

    if args.verbose <= 0:
        logging.getLogger("stepflow_tui").setLevel(logging.INFO)  # a service says where it serves, and when
    config = backend_config(args, load(args), local_workers=args.local_workers, concurrency=args.concurrency)
    try:
        return run_service(config, listen=args.listen)
    except ServiceError as exc:
        raise UsageError(str(exc)) from None


def _store(args: argparse.Namespace) -> CredentialStore:
    _needs_serve_extra()  # the credentials module lives in the service package
    from stepflow_tui.service.credentials import CredentialStore

    return CredentialStore.beside(args.db)


def cmd_credentials_help(args: argparse.Namespace) -> int:
    """``stepflow credentials`` without an action."""
    raise UsageError("credentials: give an action: set KEY (value on standard input), list, or delete KEY")


def cmd_credentials_set(args: argparse.Namespace) -> int:
    """Set a credential from standard input (a prompt that does not echo on a terminal)."""
    _needs_serve_extra()
    from stepflow_tui.service.credentials import CredentialError, read_value

    try:
        if sys.stdin.isatty():
            import getpass

            value = getpass.getpass(f"value of {args.key}: ")
        else:
            value = read_value(sys.stdin)
        args.db.parent.mkdir(parents=True, exist_ok=True)
        _store(args).set(args.key, value)
    except CredentialError as exc:
        raise UsageError(str(exc)) from None
    print(f"credential {args.key} set in {_store(args).path}")
    return EXIT_OK


def cmd_credentials_list(args: argparse.Namespace) -> int:
    """The credentials' keys, one a line."""
    from stepflow_tui.service.credentials import CredentialError

    try:
        keys = _store(args).keys()
    except CredentialError as exc:
        raise UsageError(str(exc)) from None
    for key in keys:
        print(key)
    return EXIT_OK


def cmd_credentials_delete(args: argparse.Namespace) -> int:
    """Forget a credential (exit 2 when there is none by that key)."""
    from stepflow_tui.service.credentials import CredentialError

    try:
        found = _store(args).delete(args.key)
    except CredentialError as exc:
        raise UsageError(str(exc)) from None
    if not found:
        raise UsageError(f"no credential {args.key!r} in {_store(args).path}")
    print(f"credential {args.key} deleted")
    return EXIT_OK
