"""The worker's connection loop: connect and reconnect, consume the job queues and the direct-messaging queue,
publish results (see `stepflow_tui.worker.outbox`) and ack their orders, publish status, stop gracefully.

The thread running `ConnectionLoop.run` owns the broker `Connection`; other threads reach it only through
`ConnectionLoop.wake` (``call_threadsafe``) and `ConnectionLoop.request_stop`.
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

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
from stepflow_tui.core.clock import utc_now
from stepflow_tui.core.protocol import (
    DROP_JOBS,
    DROPPED_REASON,
    RESUME_CONSUMING_JOBS,
    STATUS_REQUEST,
    STOP_CONSUMING_JOBS,
    STOP_PROCESS,
    STOP_WORKER,
    UNDROP_JOBS,
    DirectMessage,
    JobFailed,
    ProtocolError,
    WorkerStatus,
    decode_direct,
    decode_order,
)
from stepflow_tui.worker.outbox import BACKOFF_MAX, BACKOFF_START, Outbox
from stepflow_tui.worker.pool import Execution, ExecutionPool, timeout_header

if TYPE_CHECKING:
    from stepflow_tui.worker.runner import Worker

__all__ = ["ConnectionLoop"]

log = logging.getLogger(__name__)

#: Longest wait in `Connection.process_events`: how quickly a signal-handler `stop()` is noticed.
POLL_INTERVAL = 0.25
#: Unacked deliveries allowed on the per-worker direct-messaging queue.
DIRECT_PREFETCH = 10
#: How many dropped job ids (aborted workflows) a worker remembers; the oldest are forgotten first.
DROPPED_IDS = 100_000
#: Where each kind of worker message goes: the SDK's exchanges and routing keys.
STATUS_ROUTES = {
    "discovery": (topology.JOB_RESPONSE, topology.WORKER_DISCOVERY),
    "status": (topology.WORKER_RESPONSE, topology.WORKER_STATUS),
    "terminated": (topology.WORKER_RESPONSE, topology.WORKER_TERMINATED),
}


class ConnectionLoop:
    """Serves ``worker``'s job queues with ``pool`` until asked to stop (or an error retrying cannot fix)."""

    def __init__(self, worker: Worker, pool: ExecutionPool) -> None:
        self.worker = worker
        self.pool = pool
        pool.wake = self.wake
        self.outbox = Outbox(worker.instance_id)
        #: Set when the loop stopped because of an error retrying cannot fix (bad URL, access refused).
        self.failure: BrokerError | None = None
        self.stop_requested = threading.Event()
        self.ready = threading.Event()
        self.grace = 30.0
        self.thread: int | None = None  # the connection thread's ident, once `run` started
        self.queues: dict[str, str] = {topology.job_queue(t): t for t in worker.job_types}  # queue -> job type
        self.direct_queue = topology.direct_queue(worker.instance_id)
        # Owned by the connection thread:
        self.conn: Connection | None = None
        self.dropped: OrderedDict[int, None] = OrderedDict()  # job ids never to run (aborted), bounded
        self._consumer_tags: list[str] = []
        self._order_tags: list[str] = []  # the job queues' consumers (stop_consuming_jobs cancels them)
        self.paused = False  # told stop_consuming_jobs
        self._deadline: float | None = None  # stop grace ends (monotonic)
        self._next_status = 0.0

    # -- any thread -------------------------------------------------------------------------------------------
    def request_stop(self, grace: float) -> None:
        """Stop taking orders and give running jobs ``grace`` seconds (a smaller one shortens an earlier one)."""
        self.grace = min(self.grace, grace) if self.stop_requested.is_set() else grace
        self.stop_requested.set()
        # From the connection thread itself (a signal handler) the loop notices within POLL_INTERVAL; calling
        # into the connection there could re-enter a lock that thread already holds.
        if threading.get_ident() != self.thread:
            self.wake()

    def wake(self) -> None:
        """Wake the connection thread (a hint: it polls anyway)."""
        conn = self.conn
        if conn is None:
            return
        try:
            conn.call_threadsafe(lambda: None)
        except Exception as exc:  # noqa: BLE001 - only a wake-up hint: the loop polls anyway
            log.debug("could not wake the connection thread: %s", exc)

    # -- connection thread ------------------------------------------------------------------------------------
    def run(self) -> None:
        """Connect, serve, reconnect with a capped, growing delay; return once stopped."""
        self.thread = threading.get_ident()
        broker = mask_url(self.worker.broker_url)
        delay = BACKOFF_START
        while not self.stop_requested.is_set():
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
                log.error("worker stops: broker %s: %s", broker, exc)
                self._close_quietly()
                return
            log.info("reconnecting to %s in %.1f s", broker, delay)
            if self.stop_requested.wait(delay):
                break
            delay = min(delay * 2, BACKOFF_MAX)
        if self.pool.executions:
            log.warning("stopped while disconnected: %d unanswered order(s) will be redelivered by the broker",
                        len(self.pool.executions))
            self.pool.abandon_all()  # their orders went back with the connection: stop the work

    def _connect(self) -> None:
        worker = self.worker
        conn = connect(worker.broker_url, name=worker.name, queue_type=worker.queue_type)
        self.conn = conn
        if self.pool.executions:
            # Still alive with jobs running: say so at each attempt, so that a job queue whose node is down
            # (a cluster) keeps this worker from being taken for lost while it waits for that node.
            self._publish_status("status", quiet=True)
        for job_type in worker.job_types:
            conn.declare_job_queue(job_type)
        conn.declare_direct_queue(worker.instance_id, worker.job_types)
        if not self.stop_requested.is_set():
            self._order_tags.clear()
            if not self.paused:
                self._consume_orders(True)
            self._consumer_tags.append(conn.consume(self.direct_queue, self._on_direct, DIRECT_PREFETCH))
        self._publish_status("discovery")
        self._next_status = time.monotonic() + worker.status_interval
        self.ready.set()
        log.info("worker %s consuming %s on %s (concurrency %d, prefetch %d)", worker.instance_id,
                 ", ".join(self.queues), mask_url(worker.broker_url), worker.concurrency, worker.prefetch)

    def _serve(self) -> None:
        conn = self._require_conn()
        pool, outbox = self.pool, self.outbox
        while True:
            timeout = 0.0 if pool.has_events else POLL_INTERVAL
            if outbox.flush_due is not None:
                timeout = min(timeout, max(0.0, outbox.flush_due - time.monotonic()))
            conn.process_events(timeout)
            for kind, execution, value in pool.drain():
                if kind == "result":
                    outbox.finish(execution, value)
                else:
                    outbox.note_progress(execution, value)
            for execution, message in pool.expire():
                outbox.finish(execution, message)
            if self.stop_requested.is_set():
                self._begin_or_update_stop()
            self._flush(conn)
            now = time.monotonic()
            if now >= self._next_status:
                self._publish_status("status")
                self._next_status = now + self.worker.status_interval
            if self._deadline is not None:
                if not pool.executions:
                    break
                if now >= self._deadline:
                    self._abandon_running()
                    break
        self._publish_status("terminated", quiet=True)
        self._close_quietly()

    def _flush(self, conn: Connection) -> None:
        executions = self.pool.executions
        hurry = self._deadline is not None or self.stop_requested.is_set()
        to_ack: list[int] = []
        for execution in self.outbox.flush(conn, len(executions), hurry):
            del executions[execution.job_id]
            to_ack += execution.tags
        if to_ack:
            ack_answered(conn, to_ack, executions.values())

    def _require_conn(self) -> Connection:
        if self.conn is None:
            raise ConnectionLost("not connected")
        return self.conn

    def _connection_lost(self, exc: ConnectionLost) -> None:
        log.warning("lost the broker connection (%s): %d job(s) running, %d result(s) waiting to be published",
                    exc, len(self.pool.running_jobs), len(self.outbox.pending))
        self.ready.clear()
        self._close_quietly()
        # The lost connection's deliveries go back to their queues; the broker redelivers them.
        executions = self.pool.executions
        for job_id, execution in list(executions.items()):
            execution.tags.clear()
            if self.pool.prevent_start(execution) or execution.order is None:
                # Not started, or a replay of a remembered result: the redelivery will bring it back.
                del executions[job_id]
                self.outbox.pending.pop(job_id, None)

    def _close_quietly(self) -> None:
        conn, self.conn = self.conn, None
        self._consumer_tags.clear()
        self._order_tags.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken connection may fail in many ways
                log.debug("closing the broker connection: %s", exc)

    # -- orders -----------------------------------------------------------------------------------------------
    def _on_order(self, delivery: Delivery) -> None:
        conn = self._require_conn()
        tag = delivery.delivery_tag
        if self.stop_requested.is_set():
            conn.reject(tag, requeue=True)  # arrived while the consumers are being cancelled: give it back
            return
        try:
            order = decode_order(delivery.body)
        except Exception as exc:  # noqa: BLE001 - whatever a body does to the decoder, it is this order's failure
            log.warning("order from queue %s is not valid, moved to the dead-letter queue %s: %s",
                        delivery.queue, topology.JOB_DEAD_LETTER, exc)
            # Not reject: the job queue's dead-letter exchange (job_delayed) would bring it back every 5 s.
            conn.dead_letter(delivery)
            return
        job_id = order.job_id
        executions = self.pool.executions
        execution = executions.get(job_id)
        if execution is not None:
            # Redelivered while its first delivery still runs or its result still waits: answer both at once.
            log.info("job %d: order delivered again while it is still running; not running it twice", job_id)
            execution.tags.append(tag)
            return
        if delivery.redelivered and job_id in self.outbox.recent:
            # Its result was published but the ack was lost with a connection: answer again, do not re-run.
            log.info("job %d: redelivered order already answered; publishing its result again", job_id)
            execution = executions[job_id] = Execution(job_id, "", None, tags=[tag])
            self.outbox.replay(execution)
            return
        job_type = self.queues.get(delivery.queue)
        if job_id in self.dropped or job_type is None:
            self._refuse(Execution(job_id, topology.job_type_of(delivery.queue), order, tags=[tag]),
                         delivery.queue)
            return
        self.pool.submit(Execution(job_id, job_type, order, tags=[tag], timeout=timeout_header(delivery.headers)))

    def _refuse(self, execution: Execution, queue_name: str) -> None:
        """Answer an order without running it: its workflow was aborted, or this worker cannot run its type."""
        job_id, worker = execution.job_id, self.worker
        self.pool.executions[job_id] = execution
        if job_id in self.dropped:
            # The backend ignores the answer anyway.
            log.info("job %d: order dropped (workflow aborted); not running it", job_id)
            message = JobFailed(job_id, message=DROPPED_REASON, stopped=True, instance_id=worker.instance_id)
        else:
            message = JobFailed(
                job_id, message=f"worker {worker.instance_id} has no implementation for job type "
                                f"{execution.job_type!r} (queue {queue_name}); it runs "
                                f"{', '.join(worker.job_types)}",
                instance_id=worker.instance_id)
        self.outbox.finish(execution, message)

    def _on_direct(self, delivery: Delivery) -> None:
        """Messages for this worker, in the SDK's variants: ``stop_process`` (``job_id``) cancels a running job,
        ``status`` asks for a status message now, ``add_to_black_list`` (sent to every worker when a workflow
        is aborted) means never run that job (``job_ids`` for several), ``delete_from_black_list`` run it again,
        ``stop_consuming_jobs`` / ``resume_consuming_jobs`` pause / resume taking orders, ``stop_worker`` stops
        gracefully. Anything else is logged and dropped."""
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
            execution = self.pool.executions.get(message.job_id)  # type: ignore[arg-type]
            if execution is not None:
                log.info("job %d: cancellation requested", execution.job_id)
                execution.cancelled.set()
        elif message.type == STATUS_REQUEST:
            self._next_status = 0.0
        elif message.type == DROP_JOBS:
            self._drop(message.job_ids)
        elif message.type == UNDROP_JOBS:
            for job_id in message.job_ids:
                self.dropped.pop(job_id, None)
            log.info("told to run %d retried job(s) again", len(message.job_ids))
        elif message.type in (STOP_CONSUMING_JOBS, RESUME_CONSUMING_JOBS):
            self._consume_orders(message.type == RESUME_CONSUMING_JOBS)
        elif message.type == STOP_WORKER:
            log.info("told to stop")
            self.request_stop(self.grace)
        else:
            log.warning("ignored a direct message this worker does not understand: %.200r", body)

    def _consume_orders(self, on: bool) -> None:
        """Take orders from the job queues, or stop taking them (``stop_consuming_jobs``: running jobs go on,
        the orders not taken stay in the queues for other workers)."""
        conn = self._require_conn()
        self.paused = not on
        if on and not self._order_tags and not self.stop_requested.is_set():
            for queue_name in self.queues:
                tag = conn.consume(queue_name, self._on_order, self.worker.prefetch)
                self._order_tags.append(tag)
                self._consumer_tags.append(tag)
        elif not on:
            for tag in self._order_tags:
                conn.cancel(tag)
                self._consumer_tags.remove(tag)
            self._order_tags.clear()
        log.info("%s orders", "taking" if on else "not taking")

    def _drop(self, job_ids: list[Any]) -> None:
        """Remember ``job_ids`` as never to run; orders already held and not started are answered now, and
        running ones are asked to stop (the backend sends them a stop order too)."""
        for job_id in job_ids:
            if not isinstance(job_id, int) or isinstance(job_id, bool):
                continue
            self.dropped[job_id] = None
            self.dropped.move_to_end(job_id)
            execution = self.pool.executions.get(job_id)
            if execution is None or execution.order is None or execution.result is not None:
                continue
            if self.pool.prevent_start(execution):
                self.outbox.finish(execution, JobFailed(job_id, message=DROPPED_REASON, stopped=True,
                                                        instance_id=self.worker.instance_id))
            else:
                execution.cancelled.set()
        while len(self.dropped) > DROPPED_IDS:
            self.dropped.popitem(last=False)
        log.info("told to drop %d job(s) of aborted workflows", len(job_ids))

    # -- stop and status --------------------------------------------------------------------------------------
    def _begin_or_update_stop(self) -> None:
        conn = self._require_conn()
        deadline = time.monotonic() + self.grace
        if self._deadline is not None:
            self._deadline = min(self._deadline, deadline)
            return
        self._deadline = deadline
        for consumer_tag in self._consumer_tags:
            conn.cancel(consumer_tag)
        self._consumer_tags.clear()
        self._order_tags.clear()
        # Orders not started yet go back to the queue now, for another worker.
        for execution in self.pool.take_unstarted():
            for tag in execution.tags:
                conn.reject(tag, requeue=True)
        log.info("stopping: waiting up to %.1f s for %d running job(s)", self.grace, len(self.pool.running_jobs))

    def _abandon_running(self) -> None:
        conn = self._require_conn()
        for execution in self.pool.abandon_all():
            for tag in execution.tags:
                conn.reject(tag, requeue=True)
            log.warning("job %d: still running after the stop grace; its order goes back to the queue",
                        execution.job_id)
        self.outbox.clear()

    def _publish_status(self, kind: str, *, quiet: bool = False) -> None:
        """Announce this worker on ``worker_response``: status messages are best effort, never persistent,
        and published apart from the results so an unroutable status cannot hold results back."""
        conn = self.conn
        if conn is None:
            return
        # The SDK's routes. A message no backend takes expires instead of piling up in a not-found queue (a
        # backend that connects later asks every worker for its status).
        exchange, routing_key = STATUS_ROUTES[kind]
        message = OutgoingMessage(exchange, routing_key, self._status(kind).encode(), persistent=False,
                                  expiration_ms=int(3 * self.worker.status_interval * 1000))
        try:
            conn.publish([message])
        except PublishFailed as exc:
            log.debug("worker %s message not published: %s", kind, exc)
        except BrokerError as exc:
            if not quiet:
                raise
            log.debug("worker %s message not published: %s", kind, exc)

    def _status(self, kind: str) -> WorkerStatus:
        worker = self.worker
        running = self.pool.running_jobs
        activity = "Terminated" if kind == "terminated" else ("Busy" if running else "Idle")
        return WorkerStatus(
            instance_id=worker.instance_id,
            queue_name=next(iter(self.queues)),
            label=worker.label,
            version=stepflow_tui.__version__,
            kind=kind,
            job_types=list(worker.job_types),
            activity=activity,
            current_jobs=running,
            parameters={t: worker.schemas[t] for t in worker.job_types if t in worker.schemas},
            hostname=socket.gethostname(),
            pid=os.getpid(),
            concurrency=worker.concurrency,
            interval=worker.status_interval,
            datetime=utc_now(),
            direct_messaging_queue_name=self.direct_queue,
        )


def ack_answered(conn: Connection, tags: list[int], held: Iterable[Execution]) -> None:
    """Ack the orders whose answers were confirmed: one ``multiple`` ack for the tags below every tag still
    held, individual acks for the others (jobs finish out of order).

    A multiple ack settles every unsettled delivery of the channel up to its tag. That is right here because
    every delivery on the consuming channel is settled when it arrives (direct messages, refused or malformed
    orders) or held by an execution until its answer is confirmed; and deliveries are dispatched in tag order,
    so none below a dispatched tag is still on its way. An ack frame costs the broker and pika about as much as
    a message's routing: with concurrency 1 every batch is one frame instead of one per job."""
    tags.sort()
    lowest_held = min((tag for execution in held for tag in execution.tags), default=None)
    below = len(tags) if lowest_held is None else bisect.bisect_left(tags, lowest_held)
    if below > 1:
        conn.ack(tags[below - 1], multiple=True)
    elif below == 1:
        conn.ack(tags[0])
    for tag in tags[below:]:
        conn.ack(tag)
