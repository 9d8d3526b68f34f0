"""Dispatch: publishing the engine's outbox (confirmed, bounded by the window), stop orders, status requests,
and polling the queues' states."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from stepflow_tui.backend.config import BackendConfig
from stepflow_tui.backend.queue_counters import CountersPoller, with_counters
from stepflow_tui.backend.updates import Updates
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    OutgoingMessage,
    PublishFailed,
    QueueState,
)
from stepflow_tui.core import protocol
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.model import Job
from stepflow_tui.core.protocol import STATUS_REQUEST, STOP_PROCESS, TIMEOUT_HEADER, DirectMessage

#: The interval a worker that states none (an SDK worker) is taken to have.
SDK_STATUS_INTERVAL = 5.0


class Dispatcher:
    """What the broker thread sends, and the queue states it polls. Runs on the broker thread only."""

    def __init__(self, *, config: BackendConfig, lock: AbstractContextManager[Any], engine: Engine,
                 stats: dict[str, int], updates: Updates, stopping: threading.Event,
                 job_types: Callable[[], set[str]], counters: CountersPoller | None = None) -> None:
        self._config = config
        self._lock = lock
        self._engine = engine
        self._stats = stats
        self._updates = updates
        self._stopping = stopping
        self._job_types = job_types
        self._counters = counters
        self.queue_states: list[QueueState] = []
        self._last_queue_poll = 0.0
        self._last_status_poll = 0.0

    def publish_outbox(self, conn: Connection, durable: Callable[[int], bool] | None = None) -> None:
        """Publish the orders the engine queued, in confirmed batches, while the window has room; with
        ``durable``, only those of jobs it says are on disk."""
        engine = self._engine
        lock = self._lock
        while not self._stopping.is_set():
            budget = min(self._config.publish_batch, self._config.window - engine.in_flight)
            if budget <= 0:
                return
            with lock:
                jobs = engine.take_outbox(budget, durable)
            if not jobs:
                return
            with lock:
                timeouts = [engine.job_timeout(job) for job in jobs]
            # The timeout header is a string: AMQP header tables (pika) have no float type.
            messages = [OutgoingMessage(topology.JOB_SUBMIT, topology.job_queue(job.job_type),
                                        protocol.JobOrder(job.id, job.parameters).encode(),
                                        headers={TIMEOUT_HEADER: f"{timeout:g}"} if timeout else None)
                        for job, timeout in zip(jobs, timeouts, strict=True)]
            try:
                conn.publish(messages)
            except PublishFailed as exc:
                with lock:
                    engine.requeue_unsent(jobs)
                self._updates.notice(f"publishing {len(jobs)} orders failed: {exc}; will retry")
                return
            except ConnectionLost:
                with lock:
                    engine.requeue_unsent(jobs)
                raise
            self._stats["published"] += len(jobs)
            with lock:
                engine.mark_dispatched(jobs)
                self._updates.collect(engine.state)

    def send_stop_orders(self, conn: Connection | None, jobs: Iterable[Job]) -> None:
        """Tell the workers running these jobs to stop them (nothing when disconnected)."""
        if conn is None:
            return
        messages = []
        for job in jobs:
            if not job.worker:
                continue
            body = DirectMessage(STOP_PROCESS, job_id=job.id).encode()
            messages.append(OutgoingMessage(topology.DIRECT_MESSAGING, "", body,
                                            headers={"instance_id": job.worker}, persistent=False))
        if messages:
            try:
                conn.publish(messages)
            except BrokerError as exc:
                self._updates.notice(f"could not send stop orders: {exc}")

    def ask_status(self, conn: Connection) -> None:
        """Ask every worker for its status now (``broadcast: "true"``, the string the SDK binds). A poll nobody
        takes expires in ``direct_messaging_not_found`` within one poll interval instead of piling up."""
        self._last_status_poll = time.monotonic()
        expiration = max(1, int(self.status_poll_interval * 1000))
        try:
            conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", DirectMessage(STATUS_REQUEST).encode(),
                                          headers={"broadcast": topology.BROADCAST}, persistent=False,
                                          expiration_ms=expiration)])
        except PublishFailed:
            pass  # nothing declared the alternate exchange's queue yet: nobody to ask

    @property
    def status_poll_interval(self) -> float:
        """Seconds between status polls: SDK workers speak only when asked and count as lost after 3 times
        their (unstated, so 5 s) interval."""
        return min(self._config.worker_status_interval, SDK_STATUS_INTERVAL)

    def poll_status(self, conn: Connection, anyone: bool) -> None:
        """Ask for the workers' statuses when a poll interval went by and ``anyone`` is known to answer (a
        worker that starts later announces itself; a poll to nobody would sit in direct_messaging_not_found)."""
        if anyone and time.monotonic() - self._last_status_poll >= self.status_poll_interval:
            self.ask_status(conn)

    def poll_soon(self) -> None:
        """Poll the queues on the next round (to show a change at once)."""
        self._last_queue_poll = 0.0

    def poll_queues(self, conn: Connection) -> bool:
        """Poll the system and job queues every ``queue_interval`` seconds; True when it polled."""
        now = time.monotonic()
        if now - self._last_queue_poll < self._config.queue_interval:
            return False
        self._last_queue_poll = now
        names = list(topology.system_queue_names())
        for job_type in sorted(self._job_types()):
            names.append(topology.job_queue(job_type))
        latest = self._counters.latest if self._counters is not None else None
        states = with_counters(conn.queue_states(names), latest, conn.counts_unacked)
        if states != self.queue_states:
            self.queue_states = states
            self._updates.changed_queues = True
        return True
