"""The `stepflow` command (argparse), one module per group of commands, each command beside its options:

- root.py: the root command (bare ``stepflow`` = the workbench), global options, dispatch
- workflows.py: run, wait, status, retry, abort, cancel, prune
- definitions.py: validate, plugins
- broker.py: worker, queues, dead-letters, redrive
- service.py: backend (the HTTP API service), credentials
- ui.py: the workbench in the terminal, serve
- options.py: the global options (before or after the command, each with an environment variable), exit codes
- session.py: loading definitions and opening / closing a backend, attached or embedded (`backend_session`)
- follow.py: following a workflow's progress on the terminal
"""

from stepflow_tui.cli.root import build_parser, main

__all__ = ["build_parser", "main"]
