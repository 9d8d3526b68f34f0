"""The headless worker (``stepflow worker``, ``python -m stepflow_tui.worker``): the job types chosen among the
installed plugins, one `Worker`, SIGTERM / SIGINT for a graceful stop."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from stepflow_tui.broker.base import mask_url
from stepflow_tui.core.runtime import tune_gc
from stepflow_tui.worker.runner import Worker

__all__ = ["run_headless"]

log = logging.getLogger(__name__)


def _select(registry: Any, job_types: list[str] | None) -> list[str] | str:
    """The job types to serve (every one with a worker when none is given), or the error to tell."""
    from stepflow_tui.plugins import normalize_job_type_name

    known = ", ".join(sorted(registry.workers)) or "none installed"
    if not job_types:
        return sorted(registry.workers) or "no worker implementation is installed: install a plugin that provides one"
    selected: list[str] = []
    for given in job_types:
        job_type = normalize_job_type_name(given)
        if job_type not in registry.job_types:
            return f"unknown job type {given!r} (job types with a worker: {known})"
        if job_type not in registry.workers:
            return f"job type {given!r} has no worker implementation installed (job types with a worker: {known})"
        if job_type not in selected:
            selected.append(job_type)
    return selected


def run_headless(broker_url: str, job_types: list[str] | None, concurrency: int, prefetch: int | None,
                 *, status_interval: float = 5.0, queue_type: str = "classic") -> int:
    """Run a worker in this process until SIGTERM / SIGINT (``stepflow worker``). Returns the exit status:
    0 after a graceful stop, 2 for a usage or broker error (told on stderr)."""
    from stepflow_tui.plugins import failures_text, load_registry

    tune_gc()

    def error(message: str) -> int:
        print(f"stepflow worker: {message}", file=sys.stderr)
        return 2

    if urlsplit(broker_url).scheme == "memory":
        return error(f"{broker_url} is the embedded broker of one process: a separate worker cannot reach it; "
                     "pass --broker amqp://user:pass@host:5672/vhost (or set STEPFLOW_BROKER_URL)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    registry = load_registry()
    for line in failures_text(registry.failures):
        log.warning("plugin not loaded: %s", line)
    selected = _select(registry, job_types)
    if isinstance(selected, str):
        return error(selected)
    label = registry.job_types[selected[0]].label if len(selected) == 1 else "stepflow worker"
    try:
        worker = Worker(broker_url, registry.workers, job_types=selected, concurrency=concurrency,
                        prefetch=prefetch, label=label, status_interval=status_interval,
                        schemas={t: registry.job_types[t].parameters for t in selected}, queue_type=queue_type)
    except ValueError as exc:
        return error(str(exc))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # A second signal means "now": running jobs are given back to the queue at once.
        grace = 0.0 if worker.stopping else 30.0
        log.info("received %s: stopping (grace %.0f s)", signal.Signals(signum).name, grace)
        worker.stop(grace=grace)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    # said by default (-v is not needed): an operator starting a worker by hand saw nothing, and could not tell
    # a worker waiting for jobs from one that had not started
    log.setLevel(min(log.getEffectiveLevel(), logging.INFO))
    log.info("worker %s started on %s: job types %s; concurrency %d, prefetch %d", worker.instance_id[:8],
             mask_url(broker_url), ", ".join(selected), worker.concurrency, worker.prefetch)
    try:
        worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("worker %s stopped%s", worker.instance_id[:8],
                 f": {worker.failure}" if worker.failure is not None else "")
    return 2 if worker.failure is not None else 0
