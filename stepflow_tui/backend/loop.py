"""The broker thread's loop: connect (reconnect with a capped, growing delay), then round after round:
process broker events (deliveries pile up in a batch) -> run queued commands -> apply the batch to the
engine under the store lock (`APPLY_CHUNK` messages per hold) -> write what changed (pipelined:
`writes.StateWriter` acks a batch once its write is done, while the next batch is applied) -> publish the
orders whose jobs are on disk -> post an update."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stepflow_tui.backend.config import BackendConfig
from stepflow_tui.backend.dispatch import Dispatcher
from stepflow_tui.backend.drops import DropList
from stepflow_tui.backend.notifications import Notifier
from stepflow_tui.backend.rejections import (
    REJECTIONS_BEFORE_FAILING,
    Rejections,
    rejection_note,
    unknown_parameters,
)
from stepflow_tui.backend.updates import Updates
from stepflow_tui.backend.workers import WorkerRegistry
from stepflow_tui.backend.writes import StateWriter
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    TopologyConflict,
    connect,
)
from stepflow_tui.broker.cluster import is_cluster
from stepflow_tui.core import jsontext, protocol
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.model import JOB_FINAL, Job, JobStatus
from stepflow_tui.store import Store

log = logging.getLogger("stepflow_tui.backend")

RESPONSE_QUEUES = (topology.JOB_COMPLETED, topology.JOB_ERROR, topology.JOB_PROGRESSION, topology.JOB_STOPPED)
WORKER_QUEUES = (topology.WORKER_DISCOVERY, topology.WORKER_STATUS)
#: The queues the backend consumes.
CONSUMED_QUEUES = (*RESPONSE_QUEUES, topology.JOB_QUEUE_NOT_FOUND, *WORKER_QUEUES, topology.JOB_REJECTED)
FIRST_DELAY = 0.5  # seconds before the first reconnection attempt
MAX_DELAY = 10.0  # the delay doubles up to this
#: Messages applied per hold of the store's lock: a reader (an API request) waits for one chunk, not a batch
#: of up to 1,000 (25-70 ms at full rate).
APPLY_CHUNK = 100


class Refused(protocol.ProtocolError):
    """A well-formed message the backend does not accept (unstorable, or a result from where none can come)."""


def _unauthenticated(job: Job, message: protocol.JobCompleted | protocol.JobFailed | protocol.JobProgression,
                     workers: WorkerRegistry) -> str | None:
    """Why a result cannot be about ``job`` (it is set aside), or None. A job still open that was never
    dispatched has no worker to answer for it. One a worker reported processing is finished by that worker, or by
    another announced worker of its type (RabbitMQ redelivers the order of a worker that died, and a replayed or
    quick result may come without progress first). Results for a finished job are the engine's to ignore."""
    if job.status in JOB_FINAL or isinstance(message, protocol.JobProgression):
        return None
    if not job.dispatched and job.attempts == 0:
        return f"a result for job #{job.id}, which was never dispatched"
    sender = message.instance_id
    if (job.status == JobStatus.PROCESSING and job.worker and sender and sender != job.worker
            and not workers.serves(sender, job.job_type)):
        return (f"a result for job #{job.id} from {sender}, which is not a known {job.job_type} worker, while "
                f"worker {job.worker} reported it processing")
    return None


class UnknownJobs:
    """Messages about jobs that are not ours (a deleted workflow, a forged or foreign id): acked, counted, and
    logged — the first few of each interval one by one, the rest of a flood as one summary per interval."""

    INTERVAL = 10.0  # seconds
    SHOWN = 3  # messages logged one by one per interval

    def __init__(self) -> None:
        self._started = -self.INTERVAL
        self._shown = 0
        self._more = 0
        self._examples: list[str] = []

    def note(self, queue_name: str, job_id: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if now - self._started >= self.INTERVAL and not self._more:
            self._started, self._shown = now, 0
        if self._shown < self.SHOWN:
            self._shown += 1
            log.warning("ignored a message from %s about unknown job #%d", queue_name, job_id)
            return
        self._more += 1
        if len(self._examples) < 3:
            self._examples.append(f"#{job_id} on {queue_name}")

    def report(self, now: float | None = None) -> None:
        """Log the summary of what was not shown, once the interval is over."""
        now = time.monotonic() if now is None else now
        if not self._more or now - self._started < self.INTERVAL:
            return
        log.warning("ignored %d more message(s) about unknown jobs in %.0f s (%s, …)", self._more,
                    now - self._started, ", ".join(self._examples))
        self._started, self._shown, self._more, self._examples = now, 0, 0, []


class BrokerLoop:
    """Owns the broker connection; `run` is the broker thread's body."""

    def __init__(self, *, config: BackendConfig, store: Store, engine: Engine, stats: dict[str, int],
                 updates: Updates, workers: WorkerRegistry, drops: DropList, dispatcher: Dispatcher,
                 stopping: threading.Event, started: threading.Event,
                 run_commands: Callable[[], None], notifier: Notifier | None = None) -> None:
        self._config = config
        self._store = store
        self._engine = engine
        self._state = engine.state
        self._stats = stats
        self._updates = updates
        self._workers = workers
        self._drops = drops
        self._dispatcher = dispatcher
        self._stopping = stopping
        self._run_commands = run_commands
        self._notifier = notifier
        self.conn: Connection | None = None
        self._started = started  # set once connected
        self._wake = threading.Event()
        self._batch: list[Delivery] = []
        self._rejections = Rejections()
        self._first = True  # resume unfinished work on the first connection only
        self.orders_elsewhere = False  # the workflows were moved from another broker: its orders are not here
        self._unknown = UnknownJobs()
        self._writer = StateWriter(store=store, state=self._state, updates=updates, stats=stats,
                                   wake=self.wake_up)

    @property
    def flush_error(self) -> str | None:
        """Why the last write of the state failed (nothing is acked meanwhile), or None."""
        return self._writer.error

    # ------------------------------------------------------------------ connection
    def run(self) -> None:
        """Connect, serve, reconnect, until stopping is set; then run the last commands and post an update."""
        delay = FIRST_DELAY
        while not self._stopping.is_set():
            try:
                conn = connect(self._config.broker_url, name="stepflow-backend",
                               queue_type=self._config.queue_type)
            except ConnectionLost as exc:
                self._updates.set_connection("reconnecting", str(exc))  # the delay is logged at debug level
                log.debug("retrying in %.1f s", delay)
                self._idle(delay)
                delay = min(delay * 2, MAX_DELAY)
                continue
            except BrokerError as exc:
                self._updates.set_connection("error", str(exc))
                self._idle(MAX_DELAY)
                continue
            delay = self._serve(conn, delay)
        self._run_commands()
        self._writer.close()
        self._updates.emit(force=True)

    def _serve(self, conn: Connection, delay: float) -> float:
        """Run the loop on ``conn`` until it fails or stopping is set; return the next reconnection delay."""
        self.conn = conn
        try:
            self._open(conn)
            delay = FIRST_DELAY
            self._loop(conn)
        except TopologyConflict as exc:
            # Reconnecting cannot fix it: say it once, serve commands, and wait for the operator.
            self._forget_batch()
            self._updates.set_connection("error", str(exc))  # logged there, once
            while not self._stopping.is_set():
                self._idle(MAX_DELAY)
        except ConnectionLost as exc:
            self._forget_batch()  # unacked: the broker redelivers them
            self._updates.set_connection("reconnecting", f"connection lost ({exc}); reconnecting")
            self._idle(delay)
            delay = min(delay * 2, MAX_DELAY)
        except BrokerError as exc:
            self._forget_batch()
            self._updates.set_connection("error", str(exc))
            self._idle(5.0)
        except Exception as exc:  # a bug must not end the thread while the app goes on showing 'connected'
            log.exception("the broker loop failed")
            self._forget_batch()  # unacked: the broker redelivers them on the next connection
            message = f"internal error ({type(exc).__name__}: {exc}); reconnecting"
            self._updates.set_connection("reconnecting", message)  # a bug, not the broker: retried
            self._idle(5.0)
        finally:
            self.conn = None
            try:
                conn.close()
            except Exception:  # closing a dead connection may raise anything
                pass
        return delay

    def _open(self, conn: Connection) -> None:
        conn.declare_backend_topology()
        prefetch = self._config.batch_size * 2
        for name in CONSUMED_QUEUES:
            conn.consume(name, self._on_delivery, prefetch=prefetch)
        with self._store.lock:
            if self._first:
                resent = self._engine.resume_unfinished(orders_survived=conn.durable and not self.orders_elsewhere)
                if resent:
                    log.info("resuming: %d job orders to send", resent)
            self._first = False
        self._dispatcher.ask_status(conn)
        if is_cluster(conn.url):
            log.info("connected to %s", conn.node)  # one node of a cluster's addresses
        self._updates.set_connection("connected", None)
        self._started.set()

    def _on_delivery(self, delivery: Delivery) -> None:
        self._batch.append(delivery)

    def _forget_batch(self) -> None:
        self._batch.clear()
        self._writer.forget_acks()

    def wake_up(self) -> None:
        """Make the loop run its next round now (from any thread)."""
        self._wake.set()
        conn = self.conn
        if conn is not None:
            try:
                conn.call_threadsafe(lambda: None)
            except Exception:  # the connection may be closing; the loop wakes up by itself soon
                pass

    def _idle(self, seconds: float) -> None:
        """Wait while disconnected, still serving commands (they change state; orders go out later)."""
        deadline = time.monotonic() + seconds
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wake.wait(min(remaining, 0.2))
            self._wake.clear()
            self._run_commands()
            self._notify()
            self.flush()
            self._updates.emit()

    def _loop(self, conn: Connection) -> None:
        engine = self._engine
        while not self._stopping.is_set():
            timeout = 0.05 if (self._batch or engine.pending_count()) else 0.2
            retry_in = engine.next_retry_in()
            if retry_in is not None:
                timeout = min(timeout, retry_in)  # a delayed retry goes out when it is due
            conn.process_events(timeout)
            self._run_commands()
            self._apply_batch(conn)
            self._unknown.report()
            self._notify()
            self._check_jobs()
            self._drops.send(conn)
            self._writer.pump(conn)
            self._dispatcher.publish_outbox(conn, self._writer.durable)
            self._dispatcher.poll_status(conn, self._workers.any_running())
            if self._dispatcher.poll_queues(conn) and self._workers.lost_changed(time.monotonic()):
                self._updates.changed_workers = True
            self._updates.emit()
        # leaving: apply what we hold, so nothing acked is lost and nothing applied is left unacked
        self._apply_batch(conn)
        self.flush()

    # ------------------------------------------------------------------ batch -> apply -> flush -> ack
    def _apply_batch(self, conn: Connection) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        garbage: list[tuple[Delivery, str, str]] = []  # (delivery, what it is, why)
        for start in range(0, len(batch), APPLY_CHUNK):
            if start:
                time.sleep(0)  # hand the GIL over: a reader woken by the last release takes the lock first
            with self._store.lock:
                self._apply_chunk(batch[start:start + APPLY_CHUNK], garbage)
        for delivery, kind, reason in garbage:
            self._stats["garbage"] += 1
            log.warning("set aside a %s message from %s (to %s): %s", kind, delivery.queue,
                        topology.JOB_DEAD_LETTER, reason)
            conn.dead_letter(delivery)  # not reject: worker_status and job_rejected have no dead-letter exchange
        # Ack up to the highest tag not rejected: acking a rejected tag is a channel error (406 unknown delivery
        # tag); a multiple ack passing over rejected ones is fine.
        rejected = {delivery.delivery_tag for delivery, _, _ in garbage}
        kept = [d.delivery_tag for d in batch if d.delivery_tag not in rejected]
        if kept:
            self._writer.hold(max(kept))  # acked once its effect is written (`StateWriter.pump`)

    def _apply_chunk(self, deliveries: list[Delivery], garbage: list[tuple[Delivery, str, str]]) -> None:
        """Apply ``deliveries`` (under the store's lock); those that cannot be applied go to ``garbage``."""
        for delivery in deliveries:
            try:
                changed = self._apply(delivery)
            except protocol.ProtocolError as exc:
                garbage.append((delivery, "refused" if isinstance(exc, Refused) else "malformed", str(exc)))
                continue
            except Exception as exc:  # a message the engine cannot apply must not stop every other one
                log.exception("cannot apply a message from %s", delivery.queue)
                garbage.append((delivery, "malformed", f"cannot apply it: {type(exc).__name__}: {exc}"))
                continue
            self._stats["applied" if changed else "ignored"] += 1

    def _apply(self, delivery: Delivery) -> bool:
        """Route one message to the engine (or the worker registry); True when it changed something."""
        queue_name = delivery.queue
        engine = self._engine
        if queue_name in RESPONSE_QUEUES:
            message = protocol.decode_response(queue_name, delivery.body)
            if isinstance(message, protocol.WorkerNotice):
                self._updates.notice(f"a worker reported an error about no job: {message.message}")
                return False
            reason = jsontext.unstorable(vars(message))
            if reason is not None:  # its effect could never be flushed, and would hold every ack after it
                raise Refused(f"cannot be stored ({reason})")
            if isinstance(message, protocol.JobProgression) and message.instance_id and message.job_id in self._drops:
                self._drops.stop_started(message.job_id, message.instance_id)
            if message.job_id not in self._state.jobs:
                # Well-formed but about no job of ours (a deleted workflow, a forged or foreign id): acked,
                # and counted and logged so that an operator can see it.
                self._stats["unknown"] += 1
                self._unknown.note(queue_name, message.job_id)
                return False
            reason = _unauthenticated(self._state.jobs[message.job_id], message, self._workers)
            if reason is not None:
                raise Refused(reason)
            if isinstance(message, protocol.JobProgression):
                return engine.on_progression(message)
            if (isinstance(message, protocol.JobFailed) and message.stopped
                    and message.message == protocol.DROPPED_REASON and message.job_id not in self._drops):
                # A worker held the order of a cancelled job unstarted and answered "dropped"; the job was
                # retried since (which lifts the black list): the answer is about the old order, not the new.
                return False
            if isinstance(message, protocol.JobFailed) and message.message == protocol.SDK_BUSY_REFUSAL:
                return engine.requeue_refused(message.job_id, f"refused by a busy worker: {message.message}")
            applied = (engine.on_completed(message) if isinstance(message, protocol.JobCompleted)
                       else engine.on_failed(message))
            if applied:
                job = self._state.jobs.get(message.job_id)
                failed = isinstance(message, protocol.JobFailed) and not message.stopped
                self._workers.count_result(message.instance_id or (job.worker if job else None), message.job_id,
                                           failed)
                self._updates.changed_workers = True
            return applied
        if queue_name == topology.JOB_QUEUE_NOT_FOUND:
            return engine.on_queue_not_found(protocol.decode_not_found(delivery.body))
        if queue_name == topology.JOB_REJECTED:
            return self._on_rejected(delivery)
        if queue_name in WORKER_QUEUES:
            status = protocol.decode_worker_status(delivery.body, delivery.routing_key)
            # Only ours read a whole list in one message; an SDK worker fetches it over HTTP when it starts.
            if status.instance_id not in self._workers and status.kind != "terminated" and status.job_types:
                self._drops.tell_new_worker(status.instance_id)
            self._workers.record(status)
            self._updates.changed_workers = True
            return True
        return False

    def _on_rejected(self, delivery: Delivery) -> bool:
        """A worker rejected a job's order (a copy from ``job_rejected``; the order itself waits in job_delayed
        and comes back): show the count on the job; fail it after REJECTIONS_BEFORE_FAILING, black-listing it."""
        job = self._state.jobs.get(protocol.decode_not_found(delivery.body))
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
            return False
        queue = topology.job_queue(job.job_type)
        count = self._rejections.record(job.id, queue, delivery.headers)
        note = rejection_note(count, unknown_parameters(self._workers.statuses(), job.job_type, job.parameters))
        if count < REJECTIONS_BEFORE_FAILING:
            if count == 1:
                self._updates.notice(f"job #{job.id}: {note}")
            job.error = note
            self._state.mark_job(job)
            return True
        self._rejections.forget(job.id)
        self._engine.fail_job(job.id, note, allow_retry=False)
        self._drops.drop([job])  # the order still bounces: every worker must drop it when it comes back
        self._updates.notice(f"job #{job.id} failed: {note}")
        return True

    def _notify(self) -> None:
        """Send the webhook calls the engine asked for; apply those that finished."""
        if self._notifier is not None:
            self._notifier.pump()

    def flush(self) -> bool:
        """Write what changed now, and ack what that holds; False when the state file cannot be written (the
        operator is told once per error; the store keeps what it could not write and the next call tries
        again)."""
        return self._writer.flush(self.conn)

    # ------------------------------------------------------------------ liveness
    def _check_jobs(self) -> None:
        """Fail jobs that ran past their timeout's guard, and jobs still held by a lost worker after a grace
        of one more status interval (time for RabbitMQ to redeliver them to another worker)."""
        now = time.monotonic()
        lost_jobs = False
        for status, seen in self._workers.newly_lost(now):
            reason = f"worker {status.label} {status.instance_id} lost (unseen for {now - seen:.0f} s)"
            with self._store.lock:
                jobs = self._engine.processing_jobs_of(status.instance_id)
                for job in jobs:
                    lost_jobs = True
                    self._engine.fail_job(job.id, reason)
            if jobs:
                self._updates.notice(f"{reason}: {len(jobs)} job(s) it held failed")
        with self._store.lock:
            overdue = self._engine.fail_overdue()
        for job in overdue:
            log.warning("job #%d: %s (its worker did not stop it)", job.id, job.error)
        if lost_jobs or overdue:
            with self._store.lock:
                self._updates.collect(self._state)
