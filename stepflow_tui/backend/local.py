"""In-process workers for every installed job type (on memory://, or with --local-workers)."""

from __future__ import annotations

import logging
from typing import Any

from stepflow_tui.backend.config import BackendConfig

log = logging.getLogger("stepflow_tui.backend")

#: Orders an in-process worker holds per job queue on memory://. With only as many as it runs at once, each
#: job thread waited for the next order to come through the backend's broker round trip: 6,700 noop jobs/s
#: with 4 job threads, 10,900 holding 100 (bench/throughput.py --broker memory://, docs/performance.md).
LOCAL_PREFETCH = 100


def wants_local_workers(config: BackendConfig) -> bool:
    """Whether to start in-process workers: as configured, or (by default) only on memory://."""
    local = config.local_workers
    if local is None:
        local = config.broker_url.startswith("memory:")
    return bool(local and config.registry is not None and config.registry.workers)


def start_local_worker(config: BackendConfig) -> Any:
    """Start one in-process worker (a `stepflow_tui.worker.runner.Worker`) and wait until it is ready."""
    from stepflow_tui.worker.runner import Worker

    prefetch = config.local_prefetch
    if prefetch is None:
        prefetch = LOCAL_PREFETCH if config.broker_url.startswith("memory:") else config.local_concurrency
    worker = Worker(config.broker_url, config.registry.workers,
                    concurrency=config.local_concurrency, prefetch=max(prefetch, config.local_concurrency),
                    label="stepflow in-process worker",
                    status_interval=config.worker_status_interval, name="stepflow-local-worker",
                    queue_type=config.queue_type)
    worker.start_in_thread()
    if not worker.wait_ready(10.0):
        log.warning("in-process workers did not get ready within 10 s: %s", worker.failure or "no reason given")
    return worker


def stop_local_workers(workers: list[Any], timeout: float) -> None:
    """Stop the in-process workers (a stuck one is logged, not waited for longer than ``timeout``)."""
    for worker in workers:
        try:
            worker.stop(grace=2.0)
            worker.wait_stopped(timeout)
        except Exception:  # a stuck local worker must not keep the state file locked
            log.exception("stopping a local worker")
    workers.clear()
