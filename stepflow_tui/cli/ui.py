"""The workbench: in the terminal (bare ``stepflow``) or served to a browser (``stepflow serve``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    """Serve the workbench: each browser session runs ``python -m stepflow_tui`` attached to one backend
    service (the one running for --db, or one this command starts and stops), so any number of tabs share the
    state instead of the second one finding it locked."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise UsageError("stepflow serve needs textual-serve: pip install 'stepflow-tui[serve]'") from None
    # The broker URL (its password) goes to each session by environment: a command line is visible to every
    # user in `ps`, and textual-serve prints the command.
    os.environ["STEPFLOW_BROKER_URL"] = args.broker
    os.environ.pop("STEPFLOW_CA_FILE", None)  # already in the URL (?cafile=)
    service = None if args.read_only else _own_service(args)
    api = args.api or (service.url if service else None)
    command = [sys.executable, "-m", "stepflow_tui", "--db", str(args.db)]
    if args.workflows:
        command += ["--workflows", str(args.workflows)]
    if api:
        command += ["--api", api]
    if args.read_only:
        command.append("--read-only")
    command += ["--queue-type", args.queue_type]
    import shlex

    try:
        Server(" ".join(shlex.quote(c) for c in command), host=args.host, port=args.port,
               title="stepflow").serve()
    finally:
        if service is not None:
            service.stop()
    return EXIT_OK


class _ServiceProcess:
    """A `stepflow backend` child on a free loopback port, stopped (SIGTERM: it flushes) with `stop`."""

    def __init__(self, args: argparse.Namespace) -> None:
        import subprocess

        command = [sys.executable, "-m", "stepflow_tui", "backend", "--listen", "127.0.0.1:0", "--db",
                   str(args.db), "--queue-type", args.queue_type]
        if args.workflows:
            command += ["--workflows", str(args.workflows)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # the URL travels by environment
        self.db = Path(args.db)
        self.url = ""

    def wait_url(self, timeout: float = 30.0) -> str:
        """The API URL the child recorded in the state's lock file; UsageError if it exited or never did."""
        import time

        from stepflow_tui.store.lockfile import read_lock_info

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, url = read_lock_info(self.db)
            if url and pid == self.process.pid:
                self.url = url
                return url
            if self.process.poll() is not None:
                raise UsageError(f"the backend service for the browser sessions exited ({self.process.returncode})")
            time.sleep(0.05)  # polling a file another process writes: no event to wait on
        self.stop()
        raise UsageError(f"the backend service for the browser sessions did not start within {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except Exception:  # noqa: BLE001 - it must not outlive serve
                self.process.kill()


def _own_service(args: argparse.Namespace) -> _ServiceProcess | None:
    """Start a service for --db unless one runs already (then sessions find it through the lock file)."""
    from stepflow_tui.backend.remote import find_service

    if args.api or find_service(Path(args.db)) is not None:
        return None
    service = _ServiceProcess(args)
    service.wait_url()
    print(f"stepflow serve: browser sessions attach to {service.url}", file=sys.stderr)
    return service
