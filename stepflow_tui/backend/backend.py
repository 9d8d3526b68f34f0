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
    backend.find_jobs(text, limit=20) -> list[JobView]      # by id or parameter value, with their position
    backend.step_stats(workflow_id, step_id) -> StepStats | None   # durations, throughput, slowest jobs
    backend.queue_states() -> list[QueueState]; backend.workers() -> list[WorkerView]
    backend.connection_state -> "connecting" | "connected" | "reconnecting" | "stopped"
    backend.broker_display_url -> masked URL
    backend.stop()

`Backend` is a facade over its collaborators: `loop.BrokerLoop` (the broker thread: connect, batch -> apply ->
flush -> ack), `dispatch.Dispatcher` (orders, stop orders, queue polling), `workers.WorkerRegistry`,
`drops.DropList`, `reads.StateReader` (views), `updates.Updates` (coalesced updates) and `local` (in-process
workers). Commands from other threads go through a queue that the broker thread runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from stepflow_tui.backend import local
from stepflow_tui.backend.config import BackendConfig
from stepflow_tui.backend.dispatch import Dispatcher
from stepflow_tui.backend.drops import DropList
from stepflow_tui.backend.identity import claim_broker
from stepflow_tui.backend.loop import BrokerLoop
from stepflow_tui.backend.notifications import Notifier
from stepflow_tui.backend.queue_counters import CountersPoller
from stepflow_tui.backend.reads import StateReader, job_view, workflow_view
from stepflow_tui.backend.updates import Updates
from stepflow_tui.backend.views import JobView, StepStats, Update, WorkerView, WorkflowView
from stepflow_tui.backend.workers import WorkerRegistry
from stepflow_tui.broker.base import Connection, QueueState, mask_url
from stepflow_tui.broker.management import ManagementAPI
from stepflow_tui.core import protocol
from stepflow_tui.core.definitions import WorkflowDefinition
from stepflow_tui.core.engine import Engine, EngineError
from stepflow_tui.core.model import JOB_FINAL, JobStatus, State
from stepflow_tui.core.runtime import tune_gc
from stepflow_tui.store import BrokerMismatch, Store, StoreError

__all__ = ["Backend", "BackendConfig", "job_view", "workflow_view"]

log = logging.getLogger("stepflow_tui.backend")


class Backend:
    """The in-process backend (see the module's docstring)."""

    #: Where the backend runs, for the workbench's header (a `RemoteBackend` says "attached to <url>").
    mode = "embedded"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.broker_display_url = mask_url(config.broker_url)
        self.read_only = config.read_only
        self.store = Store(config.db_path)
        self.state: State | None = None
        self.engine: Engine | None = None
        self.stats = {"applied": 0, "ignored": 0, "garbage": 0, "unknown": 0, "published": 0, "flushes": 0}
        self._updates = Updates(config.update_interval, self.broker_display_url)
        self._workers = WorkerRegistry()
        self._drops = DropList(self._updates.notice)
        self._stopping = threading.Event()
        self._started = threading.Event()  # the broker thread connected once
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self._local_workers: list[Any] = []
        self._thread: threading.Thread | None = None
        self._loop: BrokerLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._reads: StateReader | None = None
        self._notifier: Notifier | None = None

    @property
    def connection_state(self) -> str:
        """ "connecting" | "connected" | "reconnecting" | "error" | "stopped"."""
        return self._updates.connection_state

    @property
    def last_error(self) -> str | None:
        """The last connection or state-file error, for the operator."""
        return self._updates.last_error

    @property
    def connection_reason(self) -> str | None:
        """Why the broker connection is not up ("error": retrying will not fix it), None while connected."""
        return self._updates.connection_reason

    @property
    def save_error(self) -> str | None:
        """Why the state file cannot be written now (disk full, ...): changes since are not saved yet."""
        return self._loop.flush_error if self._loop is not None else None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Open the store (raises StoreLocked / StoreCorrupt), resume unfinished work, start the thread."""
        tune_gc()
        self.state = self.store.open(read_only=self.read_only)
        try:
            moved = not self.store.snapshot and claim_broker(self.state, self.config.broker_url, self.store.path,
                                                             move=self.config.move_to_broker)
        except BrokerMismatch:
            self.store.close()
            raise
        self.engine = Engine(self.state, **({"clock": self.config.clock} if self.config.clock else {}),
                             work_directory=self.config.work_directory)
        self._drops.restore(self.state)
        self._reads = StateReader(self.store.lock, self.state, self.engine)
        counters = None
        if self.config.broker_url.startswith("amqp"):
            counters = CountersPoller(ManagementAPI(self.config.broker_url), self.config.queue_interval,
                                      self._stopping)
            counters.start()
        self._dispatcher = Dispatcher(config=self.config, lock=self.store.lock, engine=self.engine,
                                      stats=self.stats, updates=self._updates, stopping=self._stopping,
                                      job_types=self._job_types, counters=counters)
        self._notifier = Notifier(self.engine, self.store.lock, self._updates.notice, self._wake_up)
        self._loop = BrokerLoop(config=self.config, store=self.store, engine=self.engine, stats=self.stats,
                                updates=self._updates, workers=self._workers, drops=self._drops,
                                dispatcher=self._dispatcher, stopping=self._stopping, started=self._started,
                                run_commands=self._run_commands, notifier=self._notifier)
        self._loop.orders_elsewhere = moved
        if self.store.snapshot:
            # A read-only file system: the state as it is, shown without a broker (nothing could be saved).
            self._updates.connection_state = "stopped"
            self._updates.connection_reason = f"read-only snapshot of {self.store.path} (no lock file possible)"
            log.warning("%s", self._updates.connection_reason)
            return
        self._updates.connection_state = "connecting"
        if local.wants_local_workers(self.config):
            # Workers first: on memory:// an order sent before its job queue is declared would go to
            # job_queue_not_found and fail the job.
            self._local_workers.append(local.start_local_worker(self.config))
        self._thread = threading.Thread(target=self._loop.run, name="stepflow-backend", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop local workers and the broker thread, flush, release the state file. Idempotent."""
        local.stop_local_workers(self._local_workers, timeout)
        self._stopping.set()
        self._wake_up()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._notifier is not None:
            self._notifier.stop()
        if self.state is not None:
            flush_error = self._loop is not None and self._loop.flush_error
            with self.store.lock:
                if (self.state.dirty or flush_error) and not self.store.snapshot:
                    try:
                        self.store.flush(self.state)
                    except StoreError as exc:  # still release the state file's lock
                        log.error("the last changes were not saved: %s", exc)
        self.store.close()
        self._updates.connection_state = "stopped"

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_until_running(self, timeout: float = 10.0) -> bool:
        """Block until the broker thread connected once (for the CLI and tests)."""
        return self._started.wait(timeout)

    def subscribe(self, callback: Callable[[Update], None]) -> None:
        """``callback(update)`` runs in the broker thread, at most every ``update_interval`` seconds."""
        self._updates.subscribe(callback)

    def _job_types(self) -> set[str]:
        types: set[str] = set()
        if self.config.registry is not None:
            types.update(self.config.registry.job_types)
        for definition in self.config.definitions.values():
            types.update(step.name for step in definition.steps)
        return types | self._workers.job_types()

    # ------------------------------------------------------------------ commands
    def _wake_up(self) -> None:
        if self._loop is not None:
            self._loop.wake_up()

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
        """Run the queued commands (on the broker thread), each under the store lock."""
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
                    self._updates.collect(self.state)
            except Exception as exc:  # reported to the caller through the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    @property
    def broker_node(self) -> str | None:
        """The node the broker thread is connected to (masked URL; one of a cluster's), or None."""
        conn = self._conn
        return conn.node if conn is not None else None

    @property
    def _conn(self) -> Connection | None:
        return self._loop.conn if self._loop is not None else None

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
        """Retry one job; resolves when its new order is queued."""

        def command() -> None:
            self._undrop([self.engine.retry_job(job_id).id])

        return self._submit(command)

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> Future:
        """Retry the failed jobs of a workflow (of one step when given); resolves to how many."""

        def command() -> int:
            jobs = self.engine.failed_jobs(workflow_id, step_id)
            count = self.engine.retry_failed(workflow_id, step_id)
            self._undrop([job.id for job in jobs])
            return count

        return self._submit(command)

    def _undrop(self, job_ids: list[int]) -> None:
        if self._drops.undrop(job_ids):
            self._drops.send_now(self._conn)

    def abort(self, workflow_id: int) -> Future:
        """Abort a workflow: its unfinished jobs stop, their queued orders are dropped, running ones stop."""

        def command() -> None:
            workflow = self.engine.workflow(workflow_id)
            unfinished = [job for job in (self.state.jobs.get(i) for step in workflow.steps for i in step.job_ids)
                          if job is not None and job.status not in JOB_FINAL]
            running = self.engine.abort(workflow_id)
            # The drop list first: a worker reads its direct queue in order, so when the stop order frees it
            # the orders behind are already known as dropped.
            self._drops.drop(unfinished)
            self._drops.send_now(self._conn)
            self._dispatcher.send_stop_orders(self._conn, running)

        return self._submit(command)

    def pause(self, workflow_id: int) -> Future:
        """Send no more orders of the workflow (those already queued still run)."""
        return self._submit(lambda: self.engine.pause(workflow_id))

    def resume(self, workflow_id: int) -> Future:
        """Send the workflow's orders again."""
        return self._submit(lambda: self.engine.resume(workflow_id))

    def delete(self, workflow_id: int) -> Future:
        """Forget a workflow and its jobs."""
        return self._submit(lambda: self.engine.delete(workflow_id))

    def cancel_job(self, job_id: int) -> Future:
        """Stop one job: it ends ``stopped`` (a late result is ignored) and its worker gets a stop order."""

        def command() -> None:
            job = self.state.jobs.get(job_id)
            if job is None:
                raise EngineError(f"no job #{job_id}")
            if job.status in JOB_FINAL:
                raise EngineError(f"job #{job_id} is {job.status.value}: nothing to cancel")
            running = job.status == JobStatus.PROCESSING
            self.engine.on_failed(protocol.JobFailed(job_id, "cancelled by operator", stopped=True))
            if running:
                self._dispatcher.send_stop_orders(self._conn, [job])
            else:
                self._drops.drop([job])  # its order may wait in the queue: no worker should run it

        return self._submit(command)

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
            self._dispatcher.poll_soon()  # show the emptied dead-letter queue at once
            return counts

        # a dry run only counts: allowed in read-only mode, like `stepflow dead-letters`
        return self._submit(command, changes=not dry_run)

    # ------------------------------------------------------------------ reads (any thread)
    def definitions(self) -> list[WorkflowDefinition]:
        """The loaded workflow definitions, by identifier."""
        return [self.config.definitions[k] for k in sorted(self.config.definitions)]

    def workflows(self) -> list[WorkflowView]:
        """Every workflow, by id."""
        return self._reads.workflows()

    def workflow(self, workflow_id: int) -> WorkflowView | None:
        """One workflow, or None."""
        return self._reads.workflow(workflow_id)

    def jobs(self, workflow_id: int, step_id: int, offset: int = 0, limit: int = 200,
             status: str | None = None, after: int | None = None, before: int | None = None) -> list[JobView]:
        """A page of a step's jobs, in the step's order: ``limit`` from ``offset`` (among those with ``status``
        when given); or the first ``limit`` after job ``after``, or the last ``limit`` before job ``before``
        (an anchor that moves with the jobs, for pages under a status filter). An anchor that is not a job of
        the step gives no jobs."""
        return self._reads.jobs(workflow_id, step_id, offset, limit, status, after, before)

    def job(self, job_id: int) -> dict | None:
        """A job's full record (``Job.to_dict()``), or None."""
        return self._reads.job(job_id)

    def find_jobs(self, text: str, limit: int = 20) -> list[JobView]:
        """At most ``limit`` jobs whose id is ``text`` (``14`` or ``#14``) or one of whose parameter values
        contains it, each with its ``position`` in its step (the page that lists it)."""
        return self._reads.find_jobs(text, limit)

    def step_stats(self, workflow_id: int, step_id: int) -> StepStats | None:
        """How long a step's finished jobs took: min / median / p95 / max, throughput, the slowest jobs."""
        return self._reads.step_stats(workflow_id, step_id)

    def running_count(self, workflow_id: int) -> int:
        """Jobs of the workflow that may still move it while it is paused: orders sent and not finished,
        or reported processing."""
        return self._reads.running_count(workflow_id)

    def count_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        """Failed jobs of the workflow (of one step when given)."""
        return self._reads.count_failed(workflow_id, step_id)

    def queue_states(self) -> list[QueueState]:
        """The queues' last polled states."""
        return list(self._dispatcher.queue_states) if self._dispatcher is not None else []

    def dropped_job_ids(self) -> list[int]:
        """Job ids whose orders workers must not run (the Media Cloud AI black list), oldest first."""
        with self.store.lock:
            return self._drops.ids()

    def workers(self) -> list[WorkerView]:
        """The known workers, live ones first."""
        return self._workers.views()
