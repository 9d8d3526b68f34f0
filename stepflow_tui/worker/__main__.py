"""``python -m stepflow_tui.worker``: a headless worker (the same as ``stepflow worker``).

    python -m stepflow_tui.worker --broker amqp://user:pass@host:5672/vhost --job-type noop --concurrency 4

The main CLI reuses `add_worker_arguments` and `worker_main` for its ``worker`` subcommand.
"""

from __future__ import annotations

import argparse
import os

from stepflow_tui.worker.context import ALLOW_PATHS_ENV

BROKER_ENV = "STEPFLOW_BROKER_URL"
QUEUE_TYPE_ENV = "STEPFLOW_QUEUE_TYPE"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the worker options (``--broker``, ``--job-type``, ``--concurrency``, ``--prefetch``,
    ``--status-interval``) to ``parser``; `worker_main` reads them."""
    parser.add_argument("--broker", metavar="URL", default=None,
                        help="RabbitMQ URL, amqp://user:pass@host:5672/vhost; a cluster: its nodes' URLs separated "
                             f"by commas (default: ${BROKER_ENV})")
    parser.add_argument("--job-type", metavar="TYPE", action="append", dest="job_type", default=None,
                        help="job type to serve; repeat for several (default: every installed one)")
    parser.add_argument("--concurrency", metavar="N", type=_positive_int, default=1,
                        help="jobs run at the same time (default: 1)")
    parser.add_argument("--prefetch", metavar="N", type=_positive_int, default=None,
                        help="orders held per job queue, running or waiting (default: the concurrency)")
    parser.add_argument("--status-interval", metavar="SECONDS", type=_positive_float, default=5.0,
                        help="seconds between two worker status messages (default: 5)")
    parser.add_argument("--allow-path", metavar="DIR", action="append", dest="allow_path", default=None,
                        help=f"file job types read and write under these folders only; repeat for several "
                             f"(added to ${ALLOW_PATHS_ENV}, {os.pathsep}-separated)")


def worker_main(args: argparse.Namespace) -> int:
    """Run a headless worker from parsed `add_worker_arguments` options; returns the exit status."""
    from stepflow_tui.worker.headless import run_headless

    broker_url = args.broker or os.environ.get(BROKER_ENV) or "memory://"
    if getattr(args, "allow_path", None):
        # The plugins' jobs read it (stepflow-files): an environment variable reaches in-process and plugin code.
        given = [os.path.abspath(os.path.expanduser(path)) for path in args.allow_path]
        previous = [path for path in os.environ.get(ALLOW_PATHS_ENV, "").split(os.pathsep) if path]
        os.environ[ALLOW_PATHS_ENV] = os.pathsep.join(previous + given)
    queue_type = getattr(args, "queue_type", None) or os.environ.get(QUEUE_TYPE_ENV) or "classic"
    return run_headless(broker_url, args.job_type, args.concurrency, args.prefetch,
                        status_interval=args.status_interval, queue_type=queue_type)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m stepflow_tui.worker``."""
    parser = argparse.ArgumentParser(
        prog="python -m stepflow_tui.worker",
        description="Run a headless stepflow worker: consume job queues on RabbitMQ and run the jobs. "
                    "Stops gracefully on SIGTERM (running jobs finish, up to 30 s; a second signal stops at once).",
    )
    add_worker_arguments(parser)
    parser.add_argument("--queue-type", choices=("classic", "quorum"), default=None,
                        help=f"type of the catch queues it declares, as the backend's (default: ${QUEUE_TYPE_ENV} "
                             "or classic)")
    return worker_main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
