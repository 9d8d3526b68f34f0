"""The root command: global options, and the groups of commands (one module each). Bare ``stepflow`` opens the
workbench. Adding a command touches its group module only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from stepflow_tui import __version__
from stepflow_tui.cli import broker, definitions, service, ui, workflows
from stepflow_tui.cli.options import (
    EXIT_USAGE,
    Commands,
    UsageError,
    add_global_options,
    apply_ca_file,
    resolve_options,
    setup_logging,
)

GROUPS = (workflows, definitions, broker, service, ui)


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
    args = resolve_options(build_parser().parse_args(argv))
    setup_logging(args.verbose)
    try:
        apply_ca_file(args)
        return args.handler(args)
    except UsageError as exc:
        print(f"stepflow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nstepflow: interrupted", file=sys.stderr)
        return 130
