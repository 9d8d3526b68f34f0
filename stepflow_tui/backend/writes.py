"""The broker thread's state writes, pipelined (a group commit): while one flush's files are written and
fsynced by the store thread, the broker thread goes on applying the next deliveries; when the write is done
it acks what that write holds and starts the next one with everything applied meanwhile.

The rules of the synchronous flush hold unchanged:

- a delivery is acked only once its effect is on disk (`hold` records the highest tag applied; a write takes
  the tags held when it was planned, and acks them once written);
- an order goes out only once its job's record is on disk (`durable`: the outbox skips a job still dirty or
  in the write in flight, and sends it after);
- a failed write keeps what it could not write (the store's plan) and its acks; the next write tries again,
  and the operator is told once per error.

Owned by the broker thread; only the file writing runs on the store thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from stepflow_tui.backend.updates import Updates
from stepflow_tui.broker.base import Connection
from stepflow_tui.core.model import State
from stepflow_tui.store import Store, StoreError

__all__ = ["StateWriter"]

log = logging.getLogger("stepflow_tui.backend")

#: Seconds before a failed write is tried again (doubled after each failure, up to RETRY_MAX): a disk that
#: fails at once must not turn the broker thread into a loop of failing writes.
RETRY_FIRST = 0.5
RETRY_MAX = 5.0


@dataclass
class _Write:
    ack: int | None  # highest delivery tag whose effect this write holds (multiple ack), None after a reconnect
    jobs: set[int]  # jobs whose records it writes: their orders wait for it
    future: Future[None]


class StateWriter:
    """Writes the state with one flush in flight at a time (see the module's docstring)."""

    def __init__(self, *, store: Store, state: State, updates: Updates, stats: dict[str, int],
                 wake: Callable[[], None], monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._state = state
        self._updates = updates
        self._stats = stats
        self._wake = wake  # makes the broker thread run a round (from the store thread)
        self._monotonic = monotonic
        self._pool: ThreadPoolExecutor | None = None
        self._write: _Write | None = None
        #: Highest delivery tag applied and not yet in a write.
        self.held_ack: int | None = None
        #: The last write failed (disk full, ...): what it held is still to write, nothing is acked meanwhile.
        self.error: str | None = None
        # Jobs of failed writes: not on disk although no longer marked dirty (the store retries them).
        self._unwritten: set[int] = set()
        self._retry_at = 0.0  # monotonic time before which a failed write is not tried again (by `pump`)
        self._retry_delay = RETRY_FIRST

    # ------------------------------------------------------------------ acks and orders
    def hold(self, tag: int) -> None:
        """Delivery ``tag`` (and every one below it not rejected) was applied: ack it once written."""
        self.held_ack = tag if self.held_ack is None else max(self.held_ack, tag)

    def forget_acks(self) -> None:
        """The connection is gone: its delivery tags mean nothing on the next one (the broker redelivers)."""
        self.held_ack = None
        if self._write is not None:
            self._write.ack = None

    def durable(self, job_id: int) -> bool:
        """True when job ``job_id``'s record is on disk as it is now (its order may go out)."""
        if job_id in self._state.dirty_jobs or job_id in self._unwritten:
            return False
        return self._write is None or job_id not in self._write.jobs

    # ------------------------------------------------------------------ writing
    def pump(self, conn: Connection) -> None:
        """One step, never waiting: settle the write in flight if it is done, then start the next one if
        anything changed; with nothing to write and nothing in flight, ack what is held."""
        if self._write is not None:
            if not self._write.future.done():
                return
            self._settle(conn)
        if self.error is not None and self._monotonic() < self._retry_at:
            return
        if not self._start() and self.error is None:
            self._ack_held(conn)

    def flush(self, conn: Connection | None) -> bool:
        """Write everything now (waiting for the write in flight first); ack what is held if ``conn``.
        False when the state file cannot be written."""
        self._wait_and_settle(conn)
        if self._start():
            self._wait_and_settle(conn)
        if self.error is None and conn is not None:
            self._ack_held(conn)
        return self.error is None

    def close(self) -> None:
        """Wait for the write in flight and stop the store thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _start(self) -> bool:
        """Plan a write of what changed and hand it to the store thread; False when none was started (nothing
        changed, or the plan failed: then `error` says why)."""
        with self._store.lock:
            self._updates.collect(self._state)
            if not (self._state.dirty or self.error):
                return False
            jobs = self._unwritten | self._state.dirty_jobs
        # Not under the lock: begin_flush serialises the changed jobs before taking it (readers would wait), and
        # nothing changes the state meanwhile (only this thread does).
        try:
            plan = self._store.begin_flush(self._state)
        except StoreError as exc:
            self._failed(exc)
            return False
        if plan is None:  # changed, but nothing that is stored (e.g. only a workflow's updated_at)
            self._written()
            return False
        ack, self.held_ack = self.held_ack, None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepflow-store")
        future = self._pool.submit(self._store.finish_flush, plan)
        self._write = _Write(ack, jobs, future)
        future.add_done_callback(lambda _future: self._wake())
        return True

    def _wait_and_settle(self, conn: Connection | None) -> None:
        if self._write is not None:
            self._write.future.exception()  # waits; its outcome is read by _settle
            self._settle(conn)

    def _settle(self, conn: Connection | None) -> None:
        """Read the outcome of the finished write: ack what it held, or keep its acks for the next one."""
        write, self._write = self._write, None
        assert write is not None
        exc = write.future.exception()
        if exc is not None:
            self._unwritten |= write.jobs
            if write.ack is not None:
                self.hold(write.ack)
            if not isinstance(exc, StoreError):
                raise exc  # a bug: the broker loop's last resort reports it
            self._failed(exc)
            return
        self._written()
        if write.ack is not None and conn is not None:
            conn.ack(write.ack, multiple=True)

    def _written(self) -> None:
        """A write succeeded: it held everything earlier writes failed to write."""
        self._unwritten = set()
        self._retry_delay = RETRY_FIRST
        self._stats["flushes"] += 1
        if self.error:
            self.error = None
            self._updates.notice(f"state file {self._store.path} written again")

    def _failed(self, exc: StoreError) -> None:
        self._retry_at = self._monotonic() + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        message = f"{exc}; nothing is acknowledged until it can be written"
        if message != self.error:
            self._updates.last_error = message
            self._updates.notice(message)
        self.error = message

    def _ack_held(self, conn: Connection) -> None:
        if self.held_ack is not None:
            conn.ack(self.held_ack, multiple=True)
            self.held_ack = None
