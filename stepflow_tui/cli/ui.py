"""The workbench: in the terminal (bare ``stepflow``) or served to a browser (``stepflow serve``)."""

from __future__ import annotations

import argparse
import os
import sys

from stepflow_tui.cli.options import EXIT_OK, GLOBALS, Commands, UsageError
from stepflow_tui.cli.session import backend_session


def register(commands: Commands) -> None:
    """Add this group's commands (the terminal workbench is the root command's: see `cmd_tui`)."""
    p = commands.add("serve", cmd_serve, "serve the workbench in a browser (textual-serve)", uses=GLOBALS)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")


def cmd_tui(args: argparse.Namespace) -> int:
    """Open the workbench in the terminal: attached to the service running for --db, else embedded."""
    with backend_session(args) as backend:
        from stepflow_tui.cli.session import load_registry
        from stepflow_tui.tui.app import run_workbench  # textual only once the state file is ours
        from stepflow_tui.tui.extensions import WorkbenchExtensions

        return run_workbench(backend, read_only=args.read_only,
                             extensions=WorkbenchExtensions.from_registry(load_registry()))


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the workbench: each browser session runs ``python -m stepflow_tui`` with these options."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UsageError("stepflow serve needs textual-serve: pip install 'stepflow-tui[serve]'") from None
    # The broker URL (its password) goes to each session by environment: a command line is visible to every
    # user in `ps`, and textual-serve prints the command.
    os.environ["STEPFLOW_BROKER_URL"] = args.broker
    os.environ.pop("STEPFLOW_CA_FILE", None)  # already in the URL (?cafile=)
    command = [sys.executable, "-m", "stepflow_tui", "--db", str(args.db)]
    if args.workflows:
        command += ["--workflows", str(args.workflows)]
    if args.api:
        command += ["--api", args.api]
    if args.read_only:
        command.append("--read-only")
    command += ["--queue-type", args.queue_type]
    import shlex

    Server(" ".join(shlex.quote(c) for c in command), host=args.host, port=args.port,
           title="stepflow").serve()
    return EXIT_OK
