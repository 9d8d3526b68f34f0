"""The worker: consume ``job_<type>`` queues, run implementations in a pool, report, ack after publish.

    worker = Worker("amqp://guest:guest@localhost:5672/%2F", {"noop": noop}, concurrency=4)
    worker.start_in_thread()        # in-process (embedded broker), or worker.run() to block (headless)
    worker.wait_ready(5)            # job queues declared and consumed
    ...
    worker.stop(grace=30)           # returns at once; running jobs get up to 30 s to finish
    worker.wait_stopped(35)

`Worker` is a small facade over its collaborators: the connection loop (`stepflow_tui.worker.loop`), which owns
the broker connection, the execution pool (`stepflow_tui.worker.pool`), whose daemon threads run the jobs, and
the outbox (`stepflow_tui.worker.outbox`), which publishes every waiting result in ONE confirmed publish and
only then lets the loop ack the orders whose results were in it. ``stepflow worker`` runs one through
`stepflow_tui.worker.headless`.

Delivery guarantee: at least once. An order is acked only after its result was confirmed by the broker; a
worker that dies or loses its connection mid-job leaves the order unacked and the broker redelivers it. A
redelivered order whose result this worker still remembers is answered from memory, not run again.

This package never imports textual (a test checks it): a headless worker must not pay for the TUI.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stepflow_tui.broker.base import BrokerError, Connection
from stepflow_tui.worker.context import WorkerImplementation
from stepflow_tui.worker.loop import ConnectionLoop
from stepflow_tui.worker.pool import ExecutionPool

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Consumes the job queues of ``job_types`` and runs each order with its implementation.

    ``implementations`` maps a job type name (``noop``, not ``job_noop``) to a callable taking a `JobContext`.
    ``prefetch`` (default: ``concurrency``) bounds the unacked orders per job queue. ``schemas`` (optional) maps
    a job type to the JSON schema of its parameters, announced in the discovery message.
    """

    def __init__(
        self,
        broker_url: str,
        implementations: Mapping[str, WorkerImplementation],
        *,
        job_types: Sequence[str] | None = None,
        concurrency: int = 1,
        prefetch: int | None = None,
        label: str = "stepflow worker",
        status_interval: float = 5.0,
        work_dir: Path | None = None,
        name: str = "stepflow-worker",
        schemas: Mapping[str, dict[str, Any]] | None = None,
        queue_type: str = "classic",
    ) -> None:
        types = list(job_types) if job_types is not None else list(implementations)
        if not types:
            raise ValueError("a worker needs at least one job type")
        missing = [job_type for job_type in types if job_type not in implementations]
        if missing:
            known = ", ".join(sorted(implementations)) or "none"
            raise ValueError(f"no implementation for job type(s) {', '.join(missing)} (implemented: {known})")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if prefetch is not None and prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        if status_interval <= 0:
            raise ValueError(f"status interval must be positive, got {status_interval}")
        self.broker_url = broker_url
        self.queue_type = queue_type  # of the catch queues it declares: as the backend declares them
        self.implementations: dict[str, WorkerImplementation] = dict(implementations)
        self.job_types: list[str] = types
        self.concurrency = concurrency
        self.prefetch = prefetch if prefetch is not None else concurrency
        self.label = label
        self.status_interval = status_interval
        self.name = name
        self.schemas: dict[str, dict[str, Any]] = dict(schemas or {})
        self.instance_id: str = uuid.uuid4().hex
        self.work_dir = work_dir

        self._pool = ExecutionPool(self.implementations, concurrency, name=name, instance_id=self.instance_id,
                                   work_dir=work_dir)
        self._loop = ConnectionLoop(self, self._pool)
        self._stopped = threading.Event()
        self._run_started = False

    def run(self) -> None:
        """Serve until `stop` (or an unrecoverable broker error, see ``failure``). Blocks the calling thread,
        which owns the broker connection."""
        if self._run_started:
            raise RuntimeError("Worker.run() may only be called once")
        self._run_started = True
        self._pool.start()
        try:
            self._loop.run()
        except Exception:
            log.exception("worker %s crashed", self.instance_id)
            raise
        finally:
            self._pool.shutdown()
            self._loop.ready.clear()
            self._stopped.set()
            log.info("worker %s stopped", self.instance_id)

    def start_in_thread(self) -> threading.Thread:
        """Run `run` in a daemon thread (in-process workers); returns the thread."""
        thread = threading.Thread(target=self.run, name=f"{self.name}-connection", daemon=True)
        thread.start()
        return thread

    def stop(self, *, grace: float = 30.0) -> None:
        """Ask the worker to stop; returns at once (see `wait_stopped`). Thread-safe and signal-handler safe.

        The worker stops taking orders, lets running jobs finish for up to ``grace`` seconds (publishing and
        acking their results), gives the other orders back to the broker (requeued), announces "terminated"
        and closes. Calling it again with a smaller ``grace`` shortens the wait."""
        self._loop.request_stop(grace)

    @property
    def stopping(self) -> bool:
        """`stop` was called."""
        return self._loop.stop_requested.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until `run` has returned; False on timeout."""
        return self._stopped.wait(timeout)

    @property
    def broker_node(self) -> str | None:
        """The node the worker is connected to (masked URL; one of a cluster's), or None."""
        conn = self._loop.conn
        return conn.node if conn is not None else None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the job queues are declared and consumed (True), or the worker stopped / timed out."""
        ready = self._loop.ready
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready.is_set():
            if self._stopped.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            ready.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    @property
    def running_jobs(self) -> list[int]:
        """Ids of the jobs running right now (a snapshot; for status displays)."""
        return self._pool.running_jobs

    @property
    def failure(self) -> BrokerError | None:
        """Set when the worker stopped because of an error retrying cannot fix (bad URL, access refused)."""
        return self._loop.failure

    # Read by tests that watch the connection and the drop list.
    @property
    def _conn(self) -> Connection | None:
        return self._loop.conn

    @property
    def _dropped(self) -> OrderedDict[int, None]:
        return self._loop.dropped
