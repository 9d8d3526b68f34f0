"""The worker runner: consume ``job_<type>`` queues, run implementations in a pool, report, ack after publish.

    worker = Worker("amqp://guest:guest@localhost:5672/%2F", {"noop": noop}, concurrency=4)
    worker.start_in_thread()        # in-process (embedded broker), or worker.run() to block (headless)
    worker.wait_ready(5)            # job queues declared and consumed
    ...
    worker.stop(grace=30)           # returns at once; running jobs get up to 30 s to finish
    worker.wait_stopped(35)

Threads: the thread running `Worker.run` owns the broker `Connection`. Jobs run in a pool of ``concurrency``
daemon threads that never touch the connection: they append progress and results to a thread-safe deque and
wake the connection thread with ``call_threadsafe``. Each loop iteration the connection thread publishes
everything waiting in ONE confirmed ``publish`` and only then acks the orders whose results were in it.

Delivery guarantee: at least once. An order is acked only after its result was confirmed by the broker; a
worker that dies or loses its connection mid-job leaves the order unacked and the broker redelivers it. A
redelivered order whose result this worker still remembers is answered from memory, not run again.

This module never imports textual (a test checks it): a headless worker must not pay for the TUI.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import stepflow_tui
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    OutgoingMessage,
    PublishFailed,
    connect,
    mask_url,
)
from stepflow_tui.core.dispatch import timeout_reason
from stepflow_tui.core.protocol import (
    DROP_JOBS,
    DROPPED_REASON,
    STATUS_REQUEST,
    STOP_PROCESS,
    TIMEOUT_HEADER,
    UNDROP_JOBS,
    DirectMessage,
    JobCompleted,
    JobFailed,
    JobOrder,
    JobProgression,
    ProtocolError,
    WorkerStatus,
    decode_direct,
    decode_order,
)
from stepflow_tui.worker.context import JobCancelled, JobContext, WorkerImplementation, normalize_result

__all__ = ["Worker", "run_headless"]

log = logging.getLogger(__name__)

#: Longest wait in `Connection.process_events`: how quickly a signal-handler `stop()` is noticed.
POLL_INTERVAL = 0.25
#: Reconnect backoff: first delay, doubled after each failure, capped.
BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
#: How many published results are remembered to answer redelivered orders without running them again.
RECENT_RESULTS = 1024
# A finished job's result waits at most this long for the jobs still running or queued here, so that one confirmed
# (tx) publish carries many results: a commit is a broker round trip with an fsync, and committing each result as
# it comes left the job threads idle, waiting for acks to bring the next orders (round 3 of docs/performance.md).
FLUSH_DELAY = 0.005
#: Lines of traceback sent with a failed job (the end of it: where it failed).
TRACEBACK_LINES = 20
#: Unacked deliveries allowed on the per-worker direct-messaging queue.
DIRECT_PREFETCH = 10
#: How many dropped job ids (aborted workflows) a worker remembers; the oldest are forgotten first.
DROPPED_IDS = 100_000


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class _Execution:
    """One order being run (or answered) by this worker. Fields are owned by the connection thread except
    ``started`` / ``dropped``, which change only under `Worker._start_lock`."""

    job_id: int
    job_type: str
    order: JobOrder | None
    tags: list[int] = field(default_factory=list)  # delivery tags (current connection) to ack with the result
    cancelled: threading.Event = field(default_factory=threading.Event)
    result: OutgoingMessage | None = None  # set once the job finished; published with the next batch
    started: bool = False  # a pool thread began running it
    dropped: bool = False  # given back (stop / connection lost) before it started: never run it
    abandoned: bool = False  # stop's grace ran out while it was running: its result is ignored
    timeout: float | None = None  # seconds, from the order's x-stepflow-timeout header
    started_at: float = 0.0  # monotonic, set with ``started``
    timed_out: bool = False  # answered "timed out": the implementation's late result is ignored


class _JobPool:
    """A fixed pool of daemon threads. Not a ThreadPoolExecutor: its threads are joined at interpreter exit,
    so one job stuck past the stop grace would keep a SIGTERMed worker process alive forever (its order is
    requeued anyway)."""

    def __init__(self, size: int, run: Callable[[_Execution], None], name: str) -> None:
        self._queue: queue.SimpleQueue[_Execution | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, args=(run,), name=f"{name}-job-{i}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, execution: _Execution) -> None:
        self._queue.put(execution)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _loop(self, run: Callable[[_Execution], None]) -> None:
        while (execution := self._queue.get()) is not None:
            run(execution)


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
        #: Set when the worker stopped because of an error retrying cannot fix (bad URL, access refused).
        self.failure: BrokerError | None = None

        self._queues: dict[str, str] = {topology.job_queue(t): t for t in types}  # queue name -> job type
        self._direct_queue = topology.direct_queue(self.instance_id)
        self._pool = _JobPool(concurrency, self._execute, name)
        self._start_lock = threading.Lock()
        self._events: deque[tuple[str, _Execution, Any]] = deque()  # from job threads to the connection thread
        self._events_lock = threading.Lock()
        self._wake_sent = False  # a wake-up is on its way to the connection thread, which will drain everything
        self._stop_requested = threading.Event()
        self._grace = 30.0
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._run_started = False
        self._loop_thread: int | None = None
        # Owned by the connection thread:
        self._conn: Connection | None = None
        self._consumer_tags: list[str] = []
        self._executions: dict[int, _Execution] = {}  # job id -> order not yet answered (running or pending)
        self._pending: dict[int, _Execution] = {}  # job id -> finished, result waiting for the next batch
        self._progress: dict[int, int] = {}  # job id -> last progression not yet published (coalesced)
        self._recent: OrderedDict[int, OutgoingMessage] = OrderedDict()  # published results, LRU
        self._dropped: OrderedDict[int, None] = OrderedDict()  # job ids never to run (aborted), bounded
        self._deadline: float | None = None  # stop grace ends (monotonic)
        self._next_status = 0.0
        self._publish_retry_at = 0.0
        self._publish_delay = BACKOFF_START
        self._flush_due: float | None = None  # monotonic time the waiting results must be published by

    # -- public API -------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until `stop` (or an unrecoverable broker error, see ``failure``). Blocks the calling thread,
        which owns the broker connection."""
        if self._run_started:
            raise RuntimeError("Worker.run() may only be called once")
        self._run_started = True
        self._loop_thread = threading.get_ident()
        self._pool.start()
        try:
            self._run_with_reconnect()
        except Exception:
            log.exception("worker %s crashed", self.instance_id)
            raise
        finally:
            self._pool.shutdown()
            self._ready.clear()
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
        self._grace = min(self._grace, grace) if self._stop_requested.is_set() else grace
        self._stop_requested.set()
        # From the connection thread itself (a signal handler) the loop notices within POLL_INTERVAL; calling
        # into the connection there could re-enter a lock that thread already holds.
        if threading.get_ident() != self._loop_thread:
            self._wake()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until `run` has returned; False on timeout."""
        return self._stopped.wait(timeout)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the job queues are declared and consumed (True), or the worker stopped / timed out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ready.is_set():
            if self._stopped.is_set():
                return False
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._ready.wait(0.05 if remaining is None else min(0.05, remaining))
        return True

    @property
    def running_jobs(self) -> list[int]:
        """Ids of the jobs running right now (a snapshot; for status displays)."""
        return sorted(ex.job_id for ex in list(self._executions.values())
                      if ex.started and ex.result is None and not ex.abandoned)

    # -- connection loop --------------------------------------------------------------------------------------
    def _run_with_reconnect(self) -> None:
        delay = BACKOFF_START
        while not self._stop_requested.is_set():
            try:
                self._connect()
                delay = BACKOFF_START
                self._serve()
                return
            except ConnectionLost as exc:
                self._connection_lost(exc)
            except BrokerError as exc:
                # Bad URL, access refused, a queue declared elsewhere with other arguments: retrying won't help.
                self.failure = exc
                log.error("worker stops: broker %s: %s", mask_url(self.broker_url), exc)
                self._close_quietly()
                return
            log.info("reconnecting to %s in %.1f s", mask_url(self.broker_url), delay)
            if self._stop_requested.wait(delay):
                break
            delay = min(delay * 2, BACKOFF_MAX)
        if self._executions:
            log.warning("stopped while disconnected: %d unanswered order(s) will be redelivered by the broker",
                        len(self._executions))
            for execution in self._executions.values():
                execution.abandoned = True
                execution.cancelled.set()  # their orders went back with the connection: stop the work

    def _connect(self) -> None:
        conn = connect(self.broker_url, name=self.name)
        self._conn = conn
        for job_type in self.job_types:
            conn.declare_job_queue(job_type)
        conn.declare_direct_queue(self.instance_id, self.job_types)
        if not self._stop_requested.is_set():
            for queue_name in self._queues:
                self._consumer_tags.append(conn.consume(queue_name, self._on_order, self.prefetch))
            self._consumer_tags.append(conn.consume(self._direct_queue, self._on_direct, DIRECT_PREFETCH))
        self._publish_status("discovery")
        self._next_status = time.monotonic() + self.status_interval
        self._ready.set()
        log.info("worker %s consuming %s on %s (concurrency %d, prefetch %d)", self.instance_id,
                 ", ".join(self._queues), mask_url(self.broker_url), self.concurrency, self.prefetch)

    def _serve(self) -> None:
        conn = self._require_conn()
        while True:
            timeout = 0.0 if self._events else POLL_INTERVAL
            if self._flush_due is not None:
                timeout = min(timeout, max(0.0, self._flush_due - time.monotonic()))
            conn.process_events(timeout)
            self._drain_events()
            self._check_timeouts()
            if self._stop_requested.is_set():
                self._begin_or_update_stop()
            self._flush()
            now = time.monotonic()
            if now >= self._next_status:
                self._publish_status("status")
                self._next_status = now + self.status_interval
            if self._deadline is not None:
                if not self._executions:
                    break
                if now >= self._deadline:
                    self._abandon_running()
                    break
        self._publish_status("terminated", quiet=True)
        self._close_quietly()

    def _require_conn(self) -> Connection:
        if self._conn is None:
            raise ConnectionLost("not connected")
        return self._conn

    def _connection_lost(self, exc: ConnectionLost) -> None:
        log.warning("lost the broker connection (%s): %d job(s) running, %d result(s) waiting to be published",
                    exc, len(self.running_jobs), len(self._pending))
        self._ready.clear()
        self._close_quietly()
        # The lost connection's deliveries go back to their queues; the broker redelivers them.
        for job_id, execution in list(self._executions.items()):
            execution.tags.clear()
            with self._start_lock:
                if not execution.started:
                    execution.dropped = True
            if execution.dropped or execution.order is None:
                # Not started, or a replay of a remembered result: the redelivery will bring it back.
                del self._executions[job_id]
                self._pending.pop(job_id, None)

    def _close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        self._consumer_tags.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail in many ways
                log.debug("closing the broker connection: %s", exc)

    def _wake(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.call_threadsafe(lambda: None)
        except Exception as exc:  # noqa: BLE001 - only a wake-up hint: the loop polls anyway
            log.debug("could not wake the connection thread: %s", exc)

    # -- orders -----------------------------------------------------------------------------------------------
    def _on_order(self, delivery: Delivery) -> None:
        conn = self._require_conn()
        tag = delivery.delivery_tag
        if self._stop_requested.is_set():
            conn.reject(tag, requeue=True)  # arrived while the consumers are being cancelled: give it back
            return
        try:
            order = decode_order(delivery.body)
        except ProtocolError as exc:
            log.warning("order from queue %s is not valid, moved to the dead-letter queue %s: %s",
                        delivery.queue, topology.JOB_DEAD_LETTER, exc)
            conn.reject(tag, requeue=False)
            return
        job_id = order.job_id
        execution = self._executions.get(job_id)
        if execution is not None:
            # Redelivered while its first delivery still runs or its result still waits: answer both at once.
            log.info("job %d: order delivered again while it is still running; not running it twice", job_id)
            execution.tags.append(tag)
            return
        if delivery.redelivered and job_id in self._recent:
            # Its result was published but the ack was lost with a connection: answer again, do not re-run.
            log.info("job %d: redelivered order already answered; publishing its result again", job_id)
            execution = _Execution(job_id, "", None, tags=[tag], result=self._recent[job_id])
            self._executions[job_id] = execution
            self._pending[job_id] = execution
            return
        if job_id in self._dropped:
            # Its workflow was aborted: answer without running it (the backend ignores the answer anyway).
            log.info("job %d: order dropped (workflow aborted); not running it", job_id)
            execution = _Execution(job_id, topology.job_type_of(delivery.queue), order, tags=[tag])
            self._executions[job_id] = execution
            self._finish(execution, JobFailed(job_id, message=DROPPED_REASON, stopped=True,
                                              instance_id=self.instance_id))
            return
        job_type = self._queues.get(delivery.queue)
        if job_type is None:
            execution = _Execution(job_id, topology.job_type_of(delivery.queue), order, tags=[tag])
            self._executions[job_id] = execution
            self._finish(execution, JobFailed(
                job_id, message=f"worker {self.instance_id} has no implementation for job type "
                                f"{execution.job_type!r} (queue {delivery.queue}); it runs "
                                f"{', '.join(self.job_types)}",
                instance_id=self.instance_id))
            return
        execution = _Execution(job_id, job_type, order, tags=[tag], timeout=_timeout_header(delivery.headers))
        self._executions[job_id] = execution
        self._pool.submit(execution)

    def _on_direct(self, delivery: Delivery) -> None:
        """Messages for this worker only: ``{"type": "stop_process", "job_id": N}`` cancels a running job,
        ``{"type": "status"}`` asks for a status message now, ``{"type": "drop_jobs", "job_ids": [...]}`` (sent
        to every worker when a workflow is aborted) means: never run these jobs. Anything else is logged and
        dropped."""
        conn = self._require_conn()
        try:
            message = decode_direct(delivery.body)
        except ProtocolError as error:
            log.warning("ignored a direct message this worker does not understand (%s): %.200r", error,
                        delivery.body)
        else:
            self._on_direct_message(message, delivery.body)
        conn.ack(delivery.delivery_tag)

    def _on_direct_message(self, message: DirectMessage, body: bytes) -> None:
        if message.type == STOP_PROCESS:
            execution = self._executions.get(message.job_id)  # type: ignore[arg-type]
            if execution is not None:
                log.info("job %d: cancellation requested", execution.job_id)
                execution.cancelled.set()
        elif message.type == STATUS_REQUEST:
            self._next_status = 0.0
        elif message.type == DROP_JOBS:
            self._drop(message.job_ids)
        elif message.type == UNDROP_JOBS:
            for job_id in message.job_ids:
                self._dropped.pop(job_id, None)
            log.info("told to run %d retried job(s) again", len(message.job_ids))
        else:
            log.warning("ignored a direct message this worker does not understand: %.200r", body)

    def _drop(self, job_ids: list[Any]) -> None:
        """Remember ``job_ids`` as never to run; orders already held and not started are answered now, and
        running ones are asked to stop (the backend sends them a stop order too)."""
        for job_id in job_ids:
            if not isinstance(job_id, int) or isinstance(job_id, bool):
                continue
            self._dropped[job_id] = None
            self._dropped.move_to_end(job_id)
            execution = self._executions.get(job_id)
            if execution is None or execution.order is None or execution.result is not None:
                continue
            with self._start_lock:
                not_started = not execution.started
                if not_started:
                    execution.dropped = True
            if not_started:
                self._finish(execution, JobFailed(job_id, message=DROPPED_REASON, stopped=True,
                                                  instance_id=self.instance_id))
            else:
                execution.cancelled.set()
        while len(self._dropped) > DROPPED_IDS:
            self._dropped.popitem(last=False)
        log.info("told to drop %d job(s) of aborted workflows", len(job_ids))

    def _check_timeouts(self) -> None:
        """Jobs running past their order's timeout: cancel them (cooperative) and answer "timed out" now, so
        the order is acked and the job retried elsewhere even if the implementation never checks the flag."""
        now = time.monotonic()
        for execution in list(self._executions.values()):
            if (execution.timeout is None or execution.timed_out or not execution.started
                    or execution.result is not None or execution.abandoned
                    or now - execution.started_at < execution.timeout):
                continue
            execution.timed_out = True
            execution.cancelled.set()
            log.warning("job %d: timed out after %g s; cancelling it", execution.job_id, execution.timeout)
            self._finish(execution, JobFailed(execution.job_id, message=timeout_reason(execution.timeout),
                                              execution_duration=now - execution.started_at,
                                              instance_id=self.instance_id))

    # -- jobs (pool threads) ----------------------------------------------------------------------------------
    def _post(self, kind: str, execution: _Execution, value: Any = None) -> None:
        """From a job thread: hand something to the connection thread and wake it, unless a wake-up is already
        on its way (each one is a write to pika's interrupt pipe and a turn of the connection loop; the
        connection thread drains every event when it wakes)."""
        with self._events_lock:
            self._events.append((kind, execution, value))
            if self._wake_sent:
                return
            self._wake_sent = True
        self._wake()

    def _execute(self, execution: _Execution) -> None:
        with self._start_lock:
            if execution.dropped:
                return
            execution.started = True
            execution.started_at = time.monotonic()
        order = execution.order
        assert order is not None
        job_logger = _JobLogger(logging.getLogger(f"stepflow_tui.job.{execution.job_type}"),
                                {"job_id": execution.job_id})
        ctx = JobContext(
            job_id=execution.job_id,
            job_type=execution.job_type,
            raw_parameters=order.parameters,
            work_dir=(self.work_dir / f"job-{execution.job_id}") if self.work_dir is not None else None,
            progress_callback=lambda percent: self._post("progress", execution, percent),
            logger=job_logger,
            cancelled=execution.cancelled,
        )
        started = time.monotonic()
        message: JobCompleted | JobFailed
        try:
            ctx.progress(0)  # moves the job to "processing" in the backend
            result = normalize_result(self.implementations[execution.job_type](ctx))
            message = JobCompleted(
                execution.job_id,
                execution_duration=time.monotonic() - started,
                destination_paths=result.destination_paths,
                parameters=result.outputs,
                instance_id=self.instance_id,
            )
            try:
                # Encoded here, not on the connection thread: an output JSON cannot carry fails this job, never
                # the worker (whose crash would leave the order unacked and poison the next worker too).
                message.encode()
            except (TypeError, ValueError) as exc:
                raise TypeError(f"the job's result cannot be sent as JSON: {exc}") from exc
        except JobCancelled:
            message = JobFailed(execution.job_id, message="stopped", stopped=True,
                                execution_duration=time.monotonic() - started, instance_id=self.instance_id)
        except BaseException as exc:  # noqa: BLE001 - every order must get an answer, or it stays unacked forever
            lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
            message = JobFailed(
                execution.job_id,
                message=f"{type(exc).__name__}: {exc}",
                traceback="\n".join(lines[-TRACEBACK_LINES:]),
                execution_duration=time.monotonic() - started,
                instance_id=self.instance_id,
            )
            job_logger.warning("failed: %s", message.message)
        self._post("result", execution, message)

    # -- connection thread: events, outbox, status ------------------------------------------------------------
    def _drain_events(self) -> None:
        with self._events_lock:
            self._wake_sent = False  # what is posted from now on wakes the loop again
        while self._events:
            kind, execution, value = self._events.popleft()
            if self._executions.get(execution.job_id) is not execution or execution.abandoned:
                continue  # given back meanwhile (stop grace over, or a newer delivery of the same job)
            if execution.timed_out:
                continue  # already answered "timed out"
            if kind == "progress":
                if execution.result is None:
                    self._progress[execution.job_id] = int(value)
            elif kind == "result":
                self._finish(execution, value)

    def _finish(self, execution: _Execution, message: JobCompleted | JobFailed) -> None:
        if isinstance(message, JobCompleted):
            execution.result = OutgoingMessage(topology.JOB_RESPONSE, topology.JOB_COMPLETED, message.encode())
        else:
            execution.result = OutgoingMessage(topology.JOB_RESPONSE, topology.JOB_ERROR, message.encode())
        self._pending[execution.job_id] = execution
        # A progression not yet published says less than the result that follows it in the same batch (the
        # backend records the start from the result): for short jobs this halves the messages per job.
        self._progress.pop(execution.job_id, None)

    def _flush(self) -> None:
        """Publish every waiting progression and result in one confirmed batch, then ack their orders."""
        if not (self._pending or self._progress):
            self._flush_due = None  # e.g. given back with a lost connection: no deadline left to wake up for
            return
        now = time.monotonic()
        if now < self._publish_retry_at:
            return
        # Publish now when nothing else held here can still finish (every execution has its result), when
        # stopping, or when the first waiting result has waited FLUSH_DELAY; else gather more into this batch.
        if len(self._pending) < len(self._executions) and self._deadline is None \
                and not self._stop_requested.is_set():
            if self._flush_due is None:
                self._flush_due = now + FLUSH_DELAY
            if now < self._flush_due:
                return
        self._flush_due = None
        conn = self._require_conn()
        pending = list(self._pending.values())
        progress = dict(self._progress)
        batch = [
            OutgoingMessage(topology.JOB_RESPONSE, topology.JOB_PROGRESSION, JobProgression(
                job_id, progression, datetime=_utc_now(), instance_id=self.instance_id).encode())
            for job_id, progression in progress.items()
        ]
        batch += [execution.result for execution in pending if execution.result is not None]
        try:
            conn.publish(batch)
        except PublishFailed as exc:
            # Keep everything and try again later: never ack an order whose result was not confirmed.
            log.error("publishing %d message(s) failed, retrying in %.1f s: %s", len(batch), self._publish_delay,
                      exc)
            self._publish_retry_at = time.monotonic() + self._publish_delay
            self._publish_delay = min(self._publish_delay * 2, BACKOFF_MAX)
            return
        self._publish_delay = BACKOFF_START
        for job_id, progression in progress.items():
            if self._progress.get(job_id) == progression:
                del self._progress[job_id]
        to_ack: list[int] = []
        for execution in pending:
            job_id = execution.job_id
            del self._pending[job_id]
            del self._executions[job_id]
            self._progress.pop(job_id, None)
            assert execution.result is not None
            self._recent[job_id] = execution.result
            self._recent.move_to_end(job_id)
            to_ack += execution.tags
        while len(self._recent) > RECENT_RESULTS:
            self._recent.popitem(last=False)
        # Individual acks: jobs finish out of order, so ``multiple=True`` would ack orders still running.
        for tag in to_ack:
            conn.ack(tag)

    def _begin_or_update_stop(self) -> None:
        conn = self._require_conn()
        deadline = time.monotonic() + self._grace
        if self._deadline is not None:
            self._deadline = min(self._deadline, deadline)
            return
        self._deadline = deadline
        for consumer_tag in self._consumer_tags:
            conn.cancel(consumer_tag)
        self._consumer_tags.clear()
        # Orders not started yet go back to the queue now, for another worker.
        for job_id, execution in list(self._executions.items()):
            with self._start_lock:
                if execution.started or execution.result is not None:
                    continue
                execution.dropped = True
            del self._executions[job_id]
            for tag in execution.tags:
                conn.reject(tag, requeue=True)
        log.info("stopping: waiting up to %.1f s for %d running job(s)", self._grace, len(self.running_jobs))

    def _abandon_running(self) -> None:
        conn = self._require_conn()
        for execution in self._executions.values():
            execution.abandoned = True
            execution.cancelled.set()  # cooperative: a job that checks its context stops early
            for tag in execution.tags:
                conn.reject(tag, requeue=True)
            log.warning("job %d: still running after the stop grace; its order goes back to the queue",
                        execution.job_id)
        self._executions.clear()
        self._pending.clear()
        self._progress.clear()

    def _publish_status(self, kind: str, *, quiet: bool = False) -> None:
        """Announce this worker on ``worker_response``: status messages are best effort, never persistent,
        and published apart from the results so an unroutable status cannot hold results back."""
        conn = self._conn
        if conn is None:
            return
        running = self.running_jobs
        activity = "Terminated" if kind == "terminated" else ("Busy" if running else "Idle")
        schemas = {t: self.schemas[t] for t in self.job_types if t in self.schemas}
        status = WorkerStatus(
            instance_id=self.instance_id,
            queue_name=next(iter(self._queues)),
            label=self.label,
            version=stepflow_tui.__version__,
            kind=kind,
            job_types=list(self.job_types),
            activity=activity,
            current_jobs=running,
            parameters=schemas,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=self.concurrency,
            interval=self.status_interval,
            datetime=_utc_now(),
            direct_messaging_queue_name=self._direct_queue,
        )
        routing_key = topology.WORKER_DISCOVERY if kind == "discovery" else topology.WORKER_STATUS
        message = OutgoingMessage(topology.WORKER_RESPONSE, routing_key, status.encode(), persistent=False)
        try:
            conn.publish([message])
        except PublishFailed as exc:
            log.debug("worker %s message not published: %s", kind, exc)
        except BrokerError as exc:
            if not quiet:
                raise
            log.debug("worker %s message not published: %s", kind, exc)


def _timeout_header(headers: Mapping[str, Any] | None) -> float | None:
    """The order's timeout (seconds) from its ``x-stepflow-timeout`` header; None when absent or not a
    positive number (a foreign backend's header is not trusted to be well formed)."""
    value = (headers or {}).get(TIMEOUT_HEADER)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


class _JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each line with the job id, so interleaved logs of concurrent jobs stay readable."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"job {self.extra['job_id']}: {msg}", kwargs  # type: ignore[index]


def run_headless(broker_url: str, job_types: list[str] | None, concurrency: int, prefetch: int | None,
                 *, status_interval: float = 5.0) -> int:
    """Run a worker in this process until SIGTERM / SIGINT (``stepflow worker``). Returns the exit status:
    0 after a graceful stop, 2 for a usage or broker error (told on stderr)."""
    import sys

    from stepflow_tui.plugins import failures_text, load_registry, normalize_job_type_name

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
    known = ", ".join(sorted(registry.workers)) or "none installed"
    if job_types:
        selected = []
        for given in job_types:
            job_type = normalize_job_type_name(given)
            if job_type not in registry.job_types:
                return error(f"unknown job type {given!r} (job types with a worker: {known})")
            if job_type not in registry.workers:
                return error(f"job type {given!r} has no worker implementation installed "
                             f"(job types with a worker: {known})")
            if job_type not in selected:
                selected.append(job_type)
    else:
        selected = sorted(registry.workers)
        if not selected:
            return error("no worker implementation is installed: install a plugin that provides one")
    label = registry.job_types[selected[0]].label if len(selected) == 1 else "stepflow worker"
    try:
        worker = Worker(broker_url, registry.workers, job_types=selected, concurrency=concurrency,
                        prefetch=prefetch, label=label, status_interval=status_interval,
                        schemas={t: registry.job_types[t].parameters for t in selected})
    except ValueError as exc:
        return error(str(exc))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # A second signal means "now": running jobs are given back to the queue at once.
        grace = 0.0 if worker._stop_requested.is_set() else 30.0
        log.info("received %s: stopping (grace %.0f s)", signal.Signals(signum).name, grace)
        worker.stop(grace=grace)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 2 if worker.failure is not None else 0
