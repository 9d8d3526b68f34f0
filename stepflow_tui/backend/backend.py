"""The backend: one thread owns the broker connection and drives the engine and the store.

Public API (thread-safe; this is what the CLI and the TUI use):

    backend = Backend(BackendConfig(broker_url=..., db_path=..., definitions=..., registry=...))
    backend.start()                        # opens the store (StoreLocked / StoreCorrupt), starts the thread
    backend.subscribe(callback)            # callback(Update) from the broker thread, coalesced
    fut = backend.start_workflow("checksum_folder", {"source_dir": "/data"})   # Future[int] workflow id
    backend.retry_job(job_id) / retry_failed(workflow_id, step_id=None) -> Future[int] (jobs retried)
    backend.abort(wf) / pause(wf) / resume(wf) / delete(wf) / cancel_job(job) -> Future
    backend.redrive_dead_letters(queue=None, dry_run=False) -> Future[dict[str, int]]   # per original queue
    backend.workflows() -> list[WorkflowView]; workflow(id) -> WorkflowView | None
    backend.jobs(workflow_id, step_id, offset=0, limit=200, status=None, after=None, before=None) -> list[JobView]
    backend.job(job_id) -> dict | None     # full record (Job.to_dict())
    backend.count_failed(workflow_id, step_id=None) -> int
    backend.queue_states() -> list[QueueState]; backend.workers() -> list[WorkerView]
    backend.connection_state -> "connecting" | "connected" | "reconnecting" | "stopped"
    backend.broker_display_url -> masked URL
    backend.stop()

The loop of the broker thread: process broker events (deliveries pile up in a batch) -> run queued commands ->
apply the batch to the engine under the store lock -> flush the store once -> ack the batch (multiple=True) ->
publish the orders the engine queued (confirmed, bounded by a window of in-flight orders) -> post an update.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stepflow_tui.backend.views import JobView, StepView, Update, WorkerView, WorkflowView
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    OutgoingMessage,
    PublishFailed,
    QueueState,
    connect,
    mask_url,
)
from stepflow_tui.core import protocol
from stepflow_tui.core.definitions import WorkflowDefinition
from stepflow_tui.core.engine import Engine, EngineError
from stepflow_tui.core.model import JOB_FINAL, Job, JobStatus, State, Workflow, WorkflowStatus
from stepflow_tui.core.protocol import DROP_JOBS, STOP_PROCESS, TIMEOUT_HEADER, UNDROP_JOBS, DirectMessage
from stepflow_tui.store import Store, StoreError

log = logging.getLogger("stepflow_tui.backend")

RESPONSE_QUEUES = (topology.JOB_COMPLETED, topology.JOB_ERROR, topology.JOB_PROGRESSION)
#: Job ids of aborted workflows the backend keeps telling new workers not to run (the most recent ones).
RECENT_DROPS = 100_000


@dataclass
class BackendConfig:
    broker_url: str = "memory://"
    db_path: Path = Path("stepflow-state.json")
    definitions: dict[str, WorkflowDefinition] = field(default_factory=dict)
    registry: Any = None  # stepflow_tui.plugins.Registry: job types, worker implementations
    #: Start in-process workers for every installed job type; None = only on memory://.
    local_workers: bool | None = None
    local_concurrency: int = 4
    read_only: bool = False
    batch_size: int = 1000  # responses applied per flush
    publish_batch: int = 500  # orders per confirmed publish
    window: int = 5000  # orders sent and not finished, at most
    update_interval: float = 0.1  # seconds between coalesced updates
    queue_interval: float = 1.0  # seconds between queue state polls
    worker_status_interval: float = 5.0
    clock: Callable[[], str] | None = None


class Backend:
    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.broker_display_url = mask_url(config.broker_url)
        self.read_only = config.read_only
        self.store = Store(config.db_path)
        self.state: State | None = None
        self.engine: Engine | None = None
        self.connection_state = "stopped"
        self.last_error: str | None = None
        self.stats = {"applied": 0, "ignored": 0, "garbage": 0, "unknown": 0, "published": 0, "flushes": 0}
        self._conn: Connection | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._batch: list[Delivery] = []
        self._subscribers: list[Callable[[Update], None]] = []
        self._changed_workflows: set[int] = set()
        self._changed_jobs: set[int] = set()
        self._changed_queues = False
        self._changed_workers = False
        self._messages: list[str] = []
        self._last_update = 0.0
        self._queue_states: list[QueueState] = []
        self._last_queue_poll = 0.0
        self._workers: dict[str, tuple[protocol.WorkerStatus, float, str]] = {}
        self._local_workers: list[Any] = []
        self._started = threading.Event()
        # Lost workers: instance id -> monotonic time it was found lost; their jobs are failed one status
        # interval later (a grace for RabbitMQ to redeliver them elsewhere). Handled ones are kept apart.
        self._lost_since: dict[str, float] = {}
        self._lost_handled: set[str] = set()
        # Orders not to run (aborted workflows): job id -> None, oldest first; re-sent to each new worker.
        self._drops: dict[int, None] = {}
        # (job ids, instance id or None: all, message type)
        self._drops_to_send: list[tuple[list[int], str | None, str]] = []
        # The last flush failed (disk full, ...): what it held is still to write, and nothing is acked meanwhile.
        self._flush_error: str | None = None
        self._held_ack: int | None = None  # highest delivery tag applied but not acked because of it

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Open the store (raises StoreLocked / StoreCorrupt), resume unfinished work, start the thread."""
        self.state = self.store.open()
        self.engine = Engine(self.state, **({"clock": self.config.clock} if self.config.clock else {}))
        self._restore_drops()
        self.connection_state = "connecting"
        local = self.config.local_workers
        if local is None:
            local = self.config.broker_url.startswith("memory:")
        if local and self.config.registry is not None and self.config.registry.workers:
            # Workers first: on memory:// an order sent before its job queue is declared would go to
            # job_queue_not_found and fail the job.
            self._start_local_workers()
        self._thread = threading.Thread(target=self._run, name="stepflow-backend", daemon=True)
        self._thread.start()

    def _start_local_workers(self) -> None:
        from stepflow_tui.worker.runner import Worker

        worker = Worker(self.config.broker_url, self.config.registry.workers,
                        concurrency=self.config.local_concurrency, label="stepflow in-process worker",
                        status_interval=self.config.worker_status_interval, name="stepflow-local-worker")
        worker.start_in_thread()
        self._local_workers.append(worker)
        if not worker.wait_ready(10.0):
            log.warning("in-process workers did not get ready within 10 s: %s", worker.failure or "no reason given")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop local workers and the broker thread, flush, release the state file. Idempotent."""
        for worker in self._local_workers:
            try:
                worker.stop(grace=2.0)
                worker.wait_stopped(timeout)
            except Exception:  # a stuck local worker must not keep the state file locked
                log.exception("stopping a local worker")
        self._local_workers.clear()
        self._stopping.set()
        self._wake_up()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.state is not None:
            with self.store.lock:
                if self.state.dirty or self._flush_error:
                    try:
                        self.store.flush(self.state)
                    except StoreError as exc:  # still release the state file's lock
                        log.error("the last changes were not saved: %s", exc)
        self.store.close()
        self.connection_state = "stopped"

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the broker thread
    def _run(self) -> None:
        delay = 0.5
        first = True
        while not self._stopping.is_set():
            try:
                conn = connect(self.config.broker_url, name="stepflow-backend")
            except ConnectionLost as exc:
                self._set_connection("reconnecting", f"broker unreachable ({exc}); retrying in {delay:.1f} s")
                self._idle(delay)
                delay = min(delay * 2, 10.0)
                continue
            except BrokerError as exc:
                self._set_connection("error", str(exc))
                self._idle(10.0)
                continue
            self._conn = conn
            try:
                conn.declare_backend_topology()
                prefetch = self.config.batch_size * 2
                for name in RESPONSE_QUEUES:
                    conn.consume(name, self._on_delivery, prefetch=prefetch)
                conn.consume(topology.JOB_QUEUE_NOT_FOUND, self._on_delivery, prefetch=prefetch)
                conn.consume(topology.WORKER_DISCOVERY, self._on_delivery, prefetch=prefetch)
                conn.consume(topology.WORKER_STATUS, self._on_delivery, prefetch=prefetch)
                with self.store.lock:
                    if first:
                        resent = self.engine.resume_unfinished(orders_survived=conn.durable)
                        if resent:
                            log.info("resuming: %d job orders to send", resent)
                    first = False
                # Workers that started before us announced themselves to queues that did not exist yet:
                # ask every worker for its status now.
                try:
                    conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", b'{"type": "status"}',
                                                  headers={"broadcast": True}, persistent=False)])
                except PublishFailed:
                    pass  # no worker's direct queue exists yet: nobody to ask
                self._set_connection("connected", None)
                self._started.set()
                delay = 0.5
                self._loop(conn)
            except ConnectionLost as exc:
                self._batch.clear()  # unacked: the broker redelivers them
                self._held_ack = None
                self._set_connection("reconnecting", f"connection lost ({exc}); reconnecting")
                self._idle(delay)
                delay = min(delay * 2, 10.0)
            except BrokerError as exc:
                self._batch.clear()
                self._held_ack = None
                self._set_connection("error", str(exc))
                self._idle(5.0)
            except Exception as exc:  # a bug must not end the thread while the app goes on showing 'connected'
                log.exception("the broker loop failed")
                self._batch.clear()  # unacked: the broker redelivers them on the next connection
                self._held_ack = None
                self._set_connection("error", f"internal error ({type(exc).__name__}: {exc}); reconnecting")
                self._idle(5.0)
            finally:
                self._conn = None
                try:
                    conn.close()
                except Exception:  # closing a dead connection may raise anything
                    pass
        self._run_commands()
        self._emit(force=True)

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
            self._flush()
            self._emit()

    def _loop(self, conn: Connection) -> None:
        while not self._stopping.is_set():
            timeout = 0.05 if (self._batch or self.engine.pending_count()) else 0.2
            retry_in = self.engine.next_retry_in()
            if retry_in is not None:
                timeout = min(timeout, retry_in)  # a delayed retry goes out when it is due
            conn.process_events(timeout)
            self._run_commands()
            self._apply_batch(conn)
            self._check_jobs()
            self._send_drops(conn)
            if self._flush():
                self._ack_held(conn)  # after a failed flush: what it held is on disk now
            self._dispatch(conn)
            self._poll_queues(conn)
            self._emit()
        # leaving: apply what we hold, so nothing acked is lost and nothing applied is left unacked
        self._apply_batch(conn)
        self._flush()

    def _on_delivery(self, delivery: Delivery) -> None:
        self._batch.append(delivery)

    def _apply_batch(self, conn: Connection) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        garbage: list[tuple[Delivery, str]] = []
        with self.store.lock:
            for delivery in batch:
                try:
                    changed = self._apply(delivery)
                except protocol.ProtocolError as exc:
                    garbage.append((delivery, str(exc)))
                    continue
                except Exception as exc:  # a message the engine cannot apply must not stop every other one
                    log.exception("cannot apply a message from %s", delivery.queue)
                    garbage.append((delivery, f"cannot apply it: {type(exc).__name__}: {exc}"))
                    continue
                self.stats["applied" if changed else "ignored"] += 1
        flushed = self._flush()  # before the acks: an acked message's effect is on disk
        for delivery, reason in garbage:
            self.stats["garbage"] += 1
            log.warning("set aside a malformed message from %s (to %s): %s", delivery.queue,
                        topology.JOB_DEAD_LETTER, reason)
            conn.reject(delivery.delivery_tag, requeue=False)
        # Ack up to the highest tag not rejected: acking a rejected tag is a channel error (406 unknown delivery
        # tag); a multiple ack passing over rejected ones is fine.
        rejected = {delivery.delivery_tag for delivery, _ in garbage}
        kept = [d.delivery_tag for d in batch if d.delivery_tag not in rejected]
        if kept:
            self._held_ack = max(kept + ([self._held_ack] if self._held_ack is not None else []))
        if flushed:
            self._ack_held(conn)

    def _ack_held(self, conn: Connection) -> None:
        """Ack every delivery applied so far (its effect is on disk): one multiple ack."""
        if self._held_ack is not None:
            conn.ack(self._held_ack, multiple=True)
            self._held_ack = None

    def _apply(self, delivery: Delivery) -> bool:
        queue_name = delivery.queue
        engine = self.engine
        if queue_name in RESPONSE_QUEUES:
            message = protocol.decode_response(queue_name, delivery.body)
            if message.job_id not in self.state.jobs:
                # Well-formed but about no job of ours (a deleted workflow, a forged or foreign id): acked,
                # and counted and logged so that an operator can see it.
                self.stats["unknown"] += 1
                log.warning("ignored a message from %s about unknown job #%d", queue_name, message.job_id)
                return False
            if isinstance(message, protocol.JobCompleted):
                return engine.on_completed(message)
            if isinstance(message, protocol.JobFailed):
                return engine.on_failed(message)
            return engine.on_progression(message)
        if queue_name == topology.JOB_QUEUE_NOT_FOUND:
            return engine.on_queue_not_found(protocol.decode_not_found(delivery.body))
        if queue_name in (topology.WORKER_DISCOVERY, topology.WORKER_STATUS):
            status = protocol.decode_worker_status(delivery.body)
            if status.instance_id not in self._workers and self._drops and status.kind != "terminated":
                # A worker we did not know may hold orders of aborted workflows: tell it which to drop.
                self._drops_to_send.append((list(self._drops), status.instance_id, DROP_JOBS))
            self._workers[status.instance_id] = (status, time.monotonic(), _now())
            self._lost_since.pop(status.instance_id, None)
            self._lost_handled.discard(status.instance_id)
            if status.kind == "terminated":
                self._workers.pop(status.instance_id, None)
            self._changed_workers = True
            return True
        return False

    def _collect_changes(self) -> None:
        state = self.state
        self._changed_workflows |= state.dirty_workflows | state.deleted_workflows
        self._changed_jobs |= state.dirty_jobs

    def _flush(self) -> bool:
        """Write what changed; False when the state file cannot be written (the operator is told once per
        error; the store keeps what it could not write and the next call tries again)."""
        # Only the broker thread mutates the state, so nothing can dirty it between these two steps; the
        # store takes its lock to serialise and writes the files outside it (readers are not held up by fsync).
        with self.store.lock:
            self._collect_changes()
            dirty = self.state.dirty
        if not (dirty or self._flush_error):
            return True
        try:
            self.store.flush(self.state)
        except StoreError as exc:
            message = f"{exc}; nothing is acknowledged until it can be written"
            if message != self._flush_error:
                self.last_error = message
                self._notice(message)
            self._flush_error = message
            return False
        if self._flush_error:
            self._flush_error = None
            self._notice(f"state file {self.store.path} written again")
        self.stats["flushes"] += 1
        return True

    def _dispatch(self, conn: Connection) -> None:
        engine = self.engine
        while not self._stopping.is_set():
            budget = min(self.config.publish_batch, self.config.window - engine.in_flight)
            if budget <= 0:
                return
            with self.store.lock:
                jobs = engine.take_outbox(budget)
            if not jobs:
                return
            with self.store.lock:
                timeouts = [engine.job_timeout(job) for job in jobs]
            # The timeout header is a string: AMQP header tables (pika) have no float type.
            messages = [OutgoingMessage(topology.JOB_SUBMIT, topology.job_queue(job.job_type),
                                        protocol.JobOrder(job.id, job.parameters).encode(),
                                        headers={TIMEOUT_HEADER: f"{timeout:g}"} if timeout else None)
                        for job, timeout in zip(jobs, timeouts, strict=True)]
            try:
                conn.publish(messages)
            except PublishFailed as exc:
                with self.store.lock:
                    engine.requeue_unsent(jobs)
                self._notice(f"publishing {len(jobs)} orders failed: {exc}; will retry")
                return
            except ConnectionLost:
                with self.store.lock:
                    engine.requeue_unsent(jobs)
                raise
            self.stats["published"] += len(jobs)
            with self.store.lock:
                engine.mark_dispatched(jobs)
                self._collect_changes()

    def _poll_queues(self, conn: Connection) -> None:
        now = time.monotonic()
        if now - self._last_queue_poll < self.config.queue_interval:
            return
        self._last_queue_poll = now
        names = list(topology.system_queue_names())
        for job_type in sorted(self._job_types()):
            names.append(topology.job_queue(job_type))
        states = conn.queue_states(names)
        if states != self._queue_states:
            self._queue_states = states
            self._changed_queues = True
        if self._lost_workers_changed():
            self._changed_workers = True

    def _job_types(self) -> set[str]:
        types: set[str] = set()
        if self.config.registry is not None:
            types.update(self.config.registry.job_types)
        for definition in self.config.definitions.values():
            types.update(step.name for step in definition.steps)
        for status, _, _ in self._workers.values():
            types.update(status.job_types)
        return types

    def _check_jobs(self) -> None:
        """Fail jobs that ran past their timeout's guard, and jobs still held by a lost worker after a grace
        of one more status interval (time for RabbitMQ to redeliver them to another worker)."""
        now = time.monotonic()
        lost_jobs: list[tuple[Job, str]] = []
        for instance_id, (status, seen, _) in list(self._workers.items()):
            if instance_id in self._lost_handled or now - seen <= 3 * status.interval:
                continue
            since = self._lost_since.setdefault(instance_id, now)
            if now - since < status.interval:
                continue
            self._lost_handled.add(instance_id)
            reason = f"worker {status.label} {instance_id} lost (unseen for {now - seen:.0f} s)"
            with self.store.lock:
                jobs = self.engine.processing_jobs_of(instance_id)
                for job in jobs:
                    lost_jobs.append((job, reason))
                    self.engine.fail_job(job.id, reason)
            if jobs:
                self._notice(f"{reason}: {len(jobs)} job(s) it held failed")
        with self.store.lock:
            overdue = self.engine.fail_overdue()
        for job in overdue:
            log.warning("job #%d: %s (its worker did not stop it)", job.id, job.error)
        if lost_jobs or overdue:
            with self.store.lock:
                self._collect_changes()

    def _restore_drops(self) -> None:
        """After a restart: orders of aborted workflows may still sit in the job queues."""
        for workflow in sorted(self.state.workflows.values(), key=lambda w: w.id):
            if workflow.status != WorkflowStatus.ABORTED:
                continue
            for step in workflow.steps:
                for job_id in step.job_ids:
                    job = self.state.jobs.get(job_id)
                    if job is not None and job.dispatched and job.status == JobStatus.STOPPED:
                        self._drops[job_id] = None
        self._trim_drops()

    def _trim_drops(self) -> None:
        while len(self._drops) > RECENT_DROPS:
            del self._drops[next(iter(self._drops))]

    def _drop_orders(self, jobs: Iterable[Job]) -> None:
        """Broadcast: workers must not run these jobs' orders still waiting in the queues."""
        ids = [job.id for job in jobs if job.dispatched]
        if not ids:
            return
        for job_id in ids:
            self._drops[job_id] = None
        self._trim_drops()
        self._drops_to_send.append((ids, None, DROP_JOBS))

    def _send_drops(self, conn: Connection) -> None:
        while self._drops_to_send:
            job_ids, instance_id, kind = self._drops_to_send[0]
            body = DirectMessage(kind, job_ids=job_ids).encode()
            headers = {"instance_id": instance_id} if instance_id else {"broadcast": True}
            try:
                conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", body, headers=headers,
                                              persistent=False)])
            except PublishFailed as exc:
                # Unroutable: no worker is listening now; each new one gets the list when it shows up.
                log.info("drop list not delivered (%s); new workers will get it", exc)
            self._drops_to_send.pop(0)

    def _lost_workers_changed(self) -> bool:
        now = time.monotonic()
        lost = frozenset(i for i, (s, seen, _) in self._workers.items() if now - seen > 3 * s.interval)
        changed = lost != getattr(self, "_lost", frozenset())
        self._lost = lost
        return changed

    # ------------------------------------------------------------------ updates
    def subscribe(self, callback: Callable[[Update], None]) -> None:
        """``callback(update)`` runs in the broker thread, at most every ``update_interval`` seconds."""
        self._subscribers.append(callback)

    def _set_connection(self, state: str, message: str | None) -> None:
        if message:
            log.warning("%s: %s", self.broker_display_url, message)
            self.last_error = message
        if state != self.connection_state:
            self.connection_state = state
            self._emit(force=True, connection=state)

    def _notice(self, message: str) -> None:
        log.warning(message)
        self._messages.append(message)

    def _emit(self, force: bool = False, connection: str | None = None) -> None:
        now = time.monotonic()
        if not force and now - self._last_update < self.config.update_interval:
            return
        if not (force or self._changed_workflows or self._changed_jobs or self._changed_queues
                or self._changed_workers or self._messages):
            return
        update = Update(workflow_ids=frozenset(self._changed_workflows), job_ids=frozenset(self._changed_jobs),
                        queues=self._changed_queues, workers=self._changed_workers, connection=connection,
                        messages=tuple(self._messages))
        self._changed_workflows = set()
        self._changed_jobs = set()
        self._changed_queues = self._changed_workers = False
        self._messages = []
        self._last_update = now
        for callback in list(self._subscribers):
            try:
                callback(update)
            except Exception:  # a subscriber's bug must not stop the engine
                log.exception("update subscriber failed")

    # ------------------------------------------------------------------ commands
    def _wake_up(self) -> None:
        self._wake.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.call_threadsafe(lambda: None)
            except Exception:  # the connection may be closing; the loop wakes up by itself soon
                pass

    def _submit(self, fn: Callable[[], Any], *, changes: bool = True) -> Future:
        future: Future = Future()
        if changes and self.read_only:
            future.set_exception(EngineError("read-only mode: changes are refused"))
            return future
        if self._thread is None:
            future.set_exception(EngineError("the backend is not running"))
            return future
        self._commands.put((fn, future))
        self._wake_up()
        return future

    def _run_commands(self) -> None:
        while True:
            try:
                fn, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with self.store.lock:
                    result = fn()
                    self._collect_changes()
            except Exception as exc:  # reported to the caller through the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def start_workflow(self, identifier: str, parameters: dict[str, Any]) -> Future:
        """Start a workflow by definition identifier; resolves to the new workflow's id."""

        def command() -> int:
            definition = self.config.definitions.get(identifier)
            if definition is None:
                known = ", ".join(sorted(self.config.definitions)) or "none"
                raise EngineError(f"unknown workflow {identifier!r} (known: {known})")
            return self.engine.start_workflow(definition, parameters).id

        return self._submit(command)

    def retry_job(self, job_id: int) -> Future:
        def command() -> None:
            self._undrop([self.engine.retry_job(job_id).id])

        return self._submit(command)

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> Future:
        def command() -> int:
            jobs = self.engine.failed_jobs(workflow_id, step_id)
            count = self.engine.retry_failed(workflow_id, step_id)
            self._undrop([job.id for job in jobs])
            return count

        return self._submit(command)

    def _undrop(self, job_ids: list[int]) -> None:
        """A cancelled job whose order was black-listed is retried: workers must run its new order (the same
        job id). Sent before the new order goes out; an old order that runs too is harmless (at-least-once)."""
        ids = [job_id for job_id in job_ids if job_id in self._drops]
        if not ids:
            return
        for job_id in ids:
            del self._drops[job_id]
        self._drops_to_send.append((ids, None, UNDROP_JOBS))
        self._send_drops_now()

    def abort(self, workflow_id: int) -> Future:
        def command() -> None:
            workflow = self.engine.workflow(workflow_id)
            unfinished = [job for job in (self.state.jobs.get(i) for step in workflow.steps for i in step.job_ids)
                          if job is not None and job.status not in JOB_FINAL]
            running = self.engine.abort(workflow_id)
            # The drop list first: a worker reads its direct queue in order, so when the stop order frees it
            # the orders behind are already known as dropped.
            self._drop_orders(unfinished)
            self._send_drops_now()
            self._send_stop_orders(running)

        return self._submit(command)

    def pause(self, workflow_id: int) -> Future:
        return self._submit(lambda: self.engine.pause(workflow_id))

    def resume(self, workflow_id: int) -> Future:
        return self._submit(lambda: self.engine.resume(workflow_id))

    def delete(self, workflow_id: int) -> Future:
        return self._submit(lambda: self.engine.delete(workflow_id))

    def cancel_job(self, job_id: int) -> Future:
        """Stop one job: it ends ``stopped`` (a late result is ignored) and its worker gets a stop order."""

        def command() -> None:
            job = self.state.jobs.get(job_id)
            if job is None:
                raise EngineError(f"no job #{job_id}")
            if job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.RETRYING):
                raise EngineError(f"job #{job_id} is {job.status.value}: nothing to cancel")
            running = job.status == JobStatus.PROCESSING
            self.engine.on_failed(protocol.JobFailed(job_id, "cancelled by operator", stopped=True))
            if running:
                self._send_stop_orders([job])
            else:
                self._drop_orders([job])  # its order may wait in the queue: no worker should run it

        return self._submit(command)

    def _send_drops_now(self) -> None:
        conn = self._conn
        if conn is not None:
            try:
                self._send_drops(conn)
            except BrokerError as exc:  # the loop's next round sends what is left
                self._notice(f"could not send the drop list: {exc}")

    def redrive_dead_letters(self, queue: str | None = None, dry_run: bool = False) -> Future:
        """Send the messages of ``job_dead_letter`` (those that died in ``queue`` only, when given) back where
        they died; resolves to the count per original queue (`stepflow_tui.ops.RedriveReport.counts`: with
        ``dry_run``, what would be sent; messages without x-death under `ops.NO_ORIGIN`, they stay). Runs on
        the broker thread, on its connection: every message taken is settled before the batch acks resume."""
        from stepflow_tui import ops

        def command() -> dict[str, int]:
            conn = self._conn
            if conn is None:
                raise EngineError(f"not connected to {self.broker_display_url}: redrive when it is back")
            counts = ops.redrive(conn, queue, dry_run=dry_run).counts()
            self._last_queue_poll = 0.0  # show the emptied dead-letter queue at once
            return counts

        # a dry run only counts: allowed in read-only mode, like `stepflow dead-letters`
        return self._submit(command, changes=not dry_run)

    def _send_stop_orders(self, jobs: Iterable[Job]) -> None:
        conn = self._conn
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
                self._notice(f"could not send stop orders: {exc}")

    def wait_until_running(self, timeout: float = 10.0) -> bool:
        """Block until the broker thread connected once (for the CLI and tests)."""
        return self._started.wait(timeout)

    # ------------------------------------------------------------------ reads (any thread)
    def definitions(self) -> list[WorkflowDefinition]:
        return [self.config.definitions[k] for k in sorted(self.config.definitions)]

    def workflows(self) -> list[WorkflowView]:
        with self.store.lock:
            return [workflow_view(w) for w in sorted(self.state.workflows.values(), key=lambda w: w.id)]

    def workflow(self, workflow_id: int) -> WorkflowView | None:
        with self.store.lock:
            workflow = self.state.workflows.get(workflow_id)
            return workflow_view(workflow) if workflow is not None else None

    def jobs(self, workflow_id: int, step_id: int, offset: int = 0, limit: int = 200,
             status: str | None = None, after: int | None = None, before: int | None = None) -> list[JobView]:
        """A page of a step's jobs, in the step's order: ``limit`` from ``offset`` (among those with ``status``
        when given); or the first ``limit`` after job ``after``, or the last ``limit`` before job ``before``
        (an anchor that moves with the jobs, for pages under a status filter). An anchor that is not a job of
        the step gives no jobs."""
        with self.store.lock:
            workflow = self.state.workflows.get(workflow_id)
            if workflow is None:
                return []
            try:
                job_ids = workflow.step(step_id).job_ids
            except KeyError:
                return []
            return [job_view(job) for job in _page(job_ids, self.state.jobs, offset, limit, status, after, before)]

    def job(self, job_id: int) -> dict | None:
        with self.store.lock:
            job = self.state.jobs.get(job_id)
            return None if job is None else _deep_copy(job.to_dict())

    def running_count(self, workflow_id: int) -> int:
        """Jobs of the workflow that may still move it while it is paused: orders sent and not finished,
        or reported processing."""
        with self.store.lock:
            workflow = self.state.workflows.get(workflow_id)
            if workflow is None:
                return 0
            jobs = self.state.jobs
            return sum(1 for step in workflow.steps for i in step.job_ids
                       if (job := jobs.get(i)) is not None and job.status not in JOB_FINAL
                       and (job.dispatched or job.status == JobStatus.PROCESSING))

    def count_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        with self.store.lock:
            try:
                return len(self.engine.failed_jobs(workflow_id, step_id))
            except EngineError:
                return 0

    def queue_states(self) -> list[QueueState]:
        return list(self._queue_states)

    def workers(self) -> list[WorkerView]:
        now = time.monotonic()
        views = []
        for status, seen, seen_at in list(self._workers.values()):
            views.append(WorkerView(
                instance_id=status.instance_id, label=status.label, job_types=tuple(status.job_types),
                activity=status.activity, current_jobs=tuple(status.current_jobs), hostname=status.hostname,
                pid=status.pid, version=status.version, last_seen=seen_at,
                lost=now - seen > 3 * status.interval))
        return sorted(views, key=lambda w: (w.lost, w.label, w.instance_id))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page(job_ids: list[int], jobs: dict[int, Any], offset: int, limit: int, status: str | None,
          after: int | None, before: int | None) -> list[Any]:
    """See `Backend.jobs`."""
    def matching(ids: Iterable[int]) -> Iterator[Any]:
        return (jobs[i] for i in ids if i in jobs and (status is None or jobs[i].status.value == status))

    if after is not None or before is not None:
        anchor = after if after is not None else before
        try:
            position = job_ids.index(anchor)
        except ValueError:
            return []
        if after is not None:
            return list(itertools.islice(matching(job_ids[position + 1:]), limit))
        found = list(itertools.islice(matching(reversed(job_ids[:position])), limit))
        return found[::-1]
    if status is None:
        return list(matching(job_ids[offset:offset + limit]))
    return list(itertools.islice(matching(job_ids), offset, offset + limit))


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def workflow_view(workflow: Workflow) -> WorkflowView:
    steps = tuple(StepView(id=s.id, name=s.name, label=s.label, status=s.status.value, counts=dict(s.counts),
                           job_count=len(s.job_ids)) for s in workflow.steps)
    return WorkflowView(id=workflow.id, identifier=workflow.identifier, label=workflow.label,
                        version=workflow.version, status=workflow.status.value, paused=workflow.paused,
                        parameters=dict(workflow.parameters), counts=workflow.counts(), steps=steps,
                        created_at=workflow.created_at, updated_at=workflow.updated_at,
                        finished_at=workflow.finished_at)


def job_view(job: Job) -> JobView:
    return JobView(id=job.id, workflow_id=job.workflow_id, step_id=job.step_id, job_type=job.job_type,
                   status=job.status.value, progress=job.progress, error=job.error)
