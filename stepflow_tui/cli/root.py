"""The root command: global options, and the groups of commands (one module each). Bare ``stepflow`` opens the
workbench. Adding a command touches its group module only."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence

from stepflow_tui import __version__
from stepflow_tui.cli import broker, definitions, service, ui, workflows
from stepflow_tui.cli.options import (
    EXIT_FAILED,
    EXIT_USAGE,
    BrokerUnreachable,
    Commands,
    UsageError,
    add_global_options,
    apply_ca_file,
    resolve_options,
    setup_logging,
)

GROUPS = (workflows, definitions, broker, service, ui)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command killed by it


def _printable_streams() -> None:
    """Text that is not valid Unicode (a non-UTF-8 file name: lone surrogates) is printed escaped, never a crash."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def build_parser() -> argparse.ArgumentParser:
    """The ``stepflow`` parser: the root's options and every group's commands."""
    parser = argparse.ArgumentParser(
        prog="stepflow",
        description="A terminal workbench for workflows of jobs run by workers over RabbitMQ. "
                    "Without a command, opens the workbench.",
        epilog="Examples:\n"
               "  stepflow                                   # the workbench, embedded broker\n"
               "  stepflow run checksum_folder -p source_dir=./data -p manifest=./MANIFEST --wait\n"
               "  stepflow worker --broker amqp://guest:guest@localhost:5672/ --concurrency 4\n"
               "  stepflow status\n"
               "  stepflow backend --listen 127.0.0.1:4000      # the backend as a service; commands attach\n"
               "\n"
               "stepflow COMMAND --help shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"stepflow-tui {__version__}")
    add_global_options(parser, top=True)
    parser.set_defaults(handler=ui.cmd_tui)
    commands = Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stepflow`` and ``python -m stepflow_tui``; returns the exit status."""
    _printable_streams()
    args = build_parser().parse_args(argv)
    try:
        args = resolve_options(args)
        setup_logging(args.verbose)
        apply_ca_file(args)
        return args.handler(args)
    except BrokenPipeError:  # `stepflow status | head -3`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout at exit: not into the closed pipe
        return EXIT_BROKEN_PIPE
    except UsageError as exc:
        print(f"stepflow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerUnreachable as exc:
        print(f"stepflow: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("\nstepflow: interrupted", file=sys.stderr)
        return 130
