"""The worker's execution pool: the orders held, the threads that run their implementations, cancellation,
timeouts, and each job's answer (`JobCompleted` / `JobFailed`).

Threads: ``executions`` and every method here except `ExecutionPool.post` belong to the connection thread.
Pool threads only run `ExecutionPool.execute`, hand progress and results back through `ExecutionPool.post`
(a thread-safe deque) and wake the connection thread with ``wake``; they never touch the connection.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepflow_tui.broker.base import OutgoingMessage
from stepflow_tui.core.dispatch import timeout_reason
from stepflow_tui.core.protocol import MAX_LOG_LINES, TIMEOUT_HEADER, JobCompleted, JobFailed, JobOrder
from stepflow_tui.worker.context import JobCancelled, JobContext, WorkerImplementation, normalize_result

__all__ = ["Execution", "ExecutionPool", "timeout_header"]

log = logging.getLogger(__name__)

#: Lines of traceback sent with a failed job (the end of it: where it failed).
TRACEBACK_LINES = 20


@dataclass(eq=False)
class Execution:
    """One order being run (or answered) by this worker. Fields are owned by the connection thread except
    ``started`` / ``dropped``, which change only under the pool's start lock."""

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


def timeout_header(headers: Mapping[str, Any] | None) -> float | None:
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


class _JobThreads:
    """A fixed pool of daemon threads. Not a ThreadPoolExecutor: its threads are joined at interpreter exit,
    so one job stuck past the stop grace would keep a SIGTERMed worker process alive forever (its order is
    requeued anyway)."""

    def __init__(self, size: int, run: Callable[[Execution], None], name: str) -> None:
        self._queue: queue.SimpleQueue[Execution | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._loop, args=(run,), name=f"{name}-job-{i}", daemon=True)
            for i in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, execution: Execution) -> None:
        self._queue.put(execution)

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _loop(self, run: Callable[[Execution], None]) -> None:
        while (execution := self._queue.get()) is not None:
            run(execution)


class _JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each line with the job id, so interleaved logs of concurrent jobs stay readable; keeps the last
    `MAX_LOG_LINES` lines from info up, which travel with the job's result (``logs``) to its detail."""

    def __init__(self, logger: logging.Logger, extra: dict[str, Any]) -> None:
        super().__init__(logger, extra)
        self.lines: deque[str] = deque(maxlen=MAX_LOG_LINES)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"job {self.extra['job_id']}: {msg}", kwargs  # type: ignore[index]

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        # kept whatever the logger's level: the root's default (warning) would hide a job's info lines
        if level >= logging.INFO:
            try:
                text = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                text = f"{msg} {args}"
            stamp = time.strftime("%H:%M:%S", time.gmtime())
            self.lines.append(f"{stamp} {logging.getLevelName(level)} {text}")
        super().log(level, msg, *args, **kwargs)


class ExecutionPool:
    """The orders this worker holds (``executions``: job id -> order not yet answered, running or waiting) and
    ``size`` threads running their implementations. ``wake`` is set by the connection loop: it wakes the
    connection thread when a job posts progress or its result."""

    def __init__(self, implementations: Mapping[str, WorkerImplementation], size: int, *, name: str,
                 instance_id: str, work_dir: Path | None) -> None:
        self.implementations = implementations
        self.instance_id = instance_id
        self.work_dir = work_dir
        self.executions: dict[int, Execution] = {}
        self.wake: Callable[[], None] = lambda: None
        self._threads = _JobThreads(size, self.execute, name)
        self._start_lock = threading.Lock()
        self._events: deque[tuple[str, Execution, Any]] = deque()  # from job threads to the connection thread
        self._events_lock = threading.Lock()
        self._wake_sent = False  # a wake-up is on its way to the connection thread, which will drain everything

    # -- connection thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the job threads."""
        self._threads.start()

    def shutdown(self) -> None:
        """Let the job threads end once the jobs they run return."""
        self._threads.shutdown()

    def submit(self, execution: Execution) -> None:
        """Hold ``execution`` and queue it for the next free job thread."""
        self.executions[execution.job_id] = execution
        self._threads.submit(execution)

    @property
    def running_jobs(self) -> list[int]:
        """Ids of the jobs running right now (a snapshot; for status displays)."""
        return sorted(ex.job_id for ex in list(self.executions.values())
                      if ex.started and ex.result is None and not ex.abandoned)

    @property
    def has_events(self) -> bool:
        """Job threads posted something not drained yet."""
        return bool(self._events)

    def drain(self) -> Iterator[tuple[str, Execution, Any]]:
        """The progress (``"progress"``, percent) and results (``"result"``, message) posted since the last
        drain, without those of executions given back or answered meanwhile."""
        with self._events_lock:
            self._wake_sent = False  # what is posted from now on wakes the loop again
        events, executions = self._events, self.executions
        while events:
            event = events.popleft()
            execution = event[1]
            if executions.get(execution.job_id) is not execution or execution.abandoned:
                continue  # given back meanwhile (stop grace over, or a newer delivery of the same job)
            if execution.timed_out:
                continue  # already answered "timed out"
            yield event

    def prevent_start(self, execution: Execution) -> bool:
        """Mark ``execution`` never to run if no job thread began it yet; True if so."""
        with self._start_lock:
            if not execution.started:
                execution.dropped = True
            return execution.dropped

    def take_unstarted(self) -> list[Execution]:
        """Remove and return the orders no job thread began and that have no answer yet (given back at stop)."""
        taken = []
        for job_id, execution in list(self.executions.items()):
            with self._start_lock:
                if execution.started or execution.result is not None:
                    continue
                execution.dropped = True
            del self.executions[job_id]
            taken.append(execution)
        return taken

    def abandon_all(self) -> list[Execution]:
        """Give up on every held order: running jobs are asked to stop and their late results ignored."""
        abandoned = list(self.executions.values())
        for execution in abandoned:
            execution.abandoned = True
            execution.cancelled.set()  # cooperative: a job that checks its context stops early
        self.executions.clear()
        return abandoned

    def expire(self) -> list[tuple[Execution, JobFailed]]:
        """Jobs running past their order's timeout: cancel them (cooperative) and return their "timed out"
        answers, so the order is acked and the job retried elsewhere even if the implementation never checks
        the flag."""
        now = time.monotonic()
        expired = []
        for execution in list(self.executions.values()):
            if (execution.timeout is None or execution.timed_out or not execution.started
                    or execution.result is not None or execution.abandoned
                    or now - execution.started_at < execution.timeout):
                continue
            execution.timed_out = True
            execution.cancelled.set()
            log.warning("job %d: timed out after %g s; cancelling it", execution.job_id, execution.timeout)
            expired.append((execution, JobFailed(execution.job_id, message=timeout_reason(execution.timeout),
                                                 execution_duration=now - execution.started_at,
                                                 instance_id=self.instance_id)))
        return expired

    # -- job threads ------------------------------------------------------------------------------------------
    def post(self, kind: str, execution: Execution, value: Any = None) -> None:
        """From a job thread: hand something to the connection thread and wake it, unless a wake-up is already
        on its way (each one is a write to pika's interrupt pipe and a turn of the connection loop; the
        connection thread drains every event when it wakes)."""
        with self._events_lock:
            self._events.append((kind, execution, value))
            if self._wake_sent:
                return
            self._wake_sent = True
        self.wake()

    def execute(self, execution: Execution) -> None:
        """Run ``execution``'s implementation (in a job thread) and post its answer."""
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
            work_dir=os.path.join(self.work_dir, f"job-{execution.job_id}") if self.work_dir is not None else None,
            progress_callback=lambda percent: self.post("progress", execution, percent),
            logger=job_logger,
            cancelled=execution.cancelled,
        )
        self.post("result", execution, self._answer(execution, ctx, job_logger))

    def _answer(self, execution: Execution, ctx: JobContext, job_logger: _JobLogger) -> JobCompleted | JobFailed:
        started = time.monotonic()
        try:
            ctx.progress(0)  # moves the job to "processing" in the backend
            result = normalize_result(self.implementations[execution.job_type](ctx))
            message = JobCompleted(
                execution.job_id,
                execution_duration=time.monotonic() - started,
                destination_paths=result.destination_paths,
                parameters=result.outputs,
                instance_id=self.instance_id,
                logs=list(job_logger.lines),
            )
            try:
                # Encoded here, not on the connection thread: an output JSON cannot carry fails this job, never
                # the worker (whose crash would leave the order unacked and poison the next worker too).
                message.encode()
            except (TypeError, ValueError) as exc:
                raise TypeError(f"the job's result cannot be sent as JSON: {exc}") from exc
            return message
        except JobCancelled:
            return JobFailed(execution.job_id, message="stopped", stopped=True,
                             execution_duration=time.monotonic() - started, instance_id=self.instance_id,
                             logs=list(job_logger.lines))
        except BaseException as exc:  # noqa: BLE001 - every order must get an answer, or it stays unacked forever
            lines = "".join(traceback.format_exception(exc)).rstrip().splitlines()
            failed = JobFailed(
                execution.job_id,
                message=f"{type(exc).__name__}: {exc}",
                traceback="\n".join(lines[-TRACEBACK_LINES:]),
                execution_duration=time.monotonic() - started,
                instance_id=self.instance_id,
            )
            job_logger.warning("failed: %s", failed.message)
            failed.logs = list(job_logger.lines)
            return failed
