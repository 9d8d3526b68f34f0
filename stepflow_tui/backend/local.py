"""In-process workers for every installed job type (on memory://, or with --local-workers)."""

from __future__ import annotations

import logging
from typing import Any

from stepflow_tui.backend.config import BackendConfig

log = logging.getLogger("stepflow_tui.backend")


def wants_local_workers(config: BackendConfig) -> bool:
    """Whether to start in-process workers: as configured, or (by default) only on memory://."""
    local = config.local_workers
    if local is None:
        local = config.broker_url.startswith("memory:")
    return bool(local and config.registry is not None and config.registry.workers)


def start_local_worker(config: BackendConfig) -> Any:
    """Start one in-process worker (a `stepflow_tui.worker.runner.Worker`) and wait until it is ready."""
    from stepflow_tui.worker.runner import Worker

    worker = Worker(config.broker_url, config.registry.workers,
                    concurrency=config.local_concurrency, label="stepflow in-process worker",
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
