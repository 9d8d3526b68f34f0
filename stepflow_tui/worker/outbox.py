"""The worker's outbox: results and progressions waiting to be published, in ONE confirmed (tx) publish per
batch, and the results already published (to answer a redelivered order without running it again).

Owned by the connection thread. The connection loop acks the orders `Outbox.flush` returns, and only those:
an order is acked only after its result was confirmed by the broker.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import Connection, OutgoingMessage, PublishFailed
from stepflow_tui.core.clock import utc_now
from stepflow_tui.core.protocol import JobCompleted, JobFailed, JobProgression
from stepflow_tui.worker.pool import Execution

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "Outbox"]

log = logging.getLogger(__name__)

#: Reconnect and republish backoff: first delay, doubled after each failure, capped.
BACKOFF_START = 0.5
BACKOFF_MAX = 10.0
#: How many published results are remembered to answer redelivered orders without running them again.
RECENT_RESULTS = 1024
# A finished result waits this long for its neighbours, so one confirmed (tx) publish carries many results
# (a commit is a round trip with an fsync: docs/performance.md, round 3).
FLUSH_DELAY = 0.005


class Outbox:
    """Answers and progressions of this worker's jobs until the broker confirmed them."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.pending: dict[int, Execution] = {}  # job id -> finished, result waiting for the next batch
        self.progress: dict[int, int] = {}  # job id -> last progression not yet published (coalesced)
        self.recent: OrderedDict[int, OutgoingMessage] = OrderedDict()  # published results, LRU
        #: Monotonic time the waiting results must be published by (None: nothing waits for a deadline).
        self.flush_due: float | None = None
        self._publish_retry_at = 0.0
        self._publish_delay = BACKOFF_START

    def note_progress(self, execution: Execution, percent: int) -> None:
        """Record a job's progression (only the last one before a publish is sent)."""
        if execution.result is None:
            self.progress[execution.job_id] = int(percent)

    def finish(self, execution: Execution, message: JobCompleted | JobFailed) -> None:
        """Set ``execution``'s answer; it goes out with the next batch."""
        routing_key = topology.JOB_COMPLETED if isinstance(message, JobCompleted) else topology.JOB_ERROR
        execution.result = OutgoingMessage(topology.JOB_RESPONSE, routing_key, message.encode())
        self.pending[execution.job_id] = execution
        # A progression not yet published says less than the result that follows it in the same batch (the
        # backend records the start from the result): for short jobs this halves the messages per job.
        self.progress.pop(execution.job_id, None)

    def replay(self, execution: Execution) -> None:
        """Answer ``execution`` (a redelivered order) again with its remembered result."""
        execution.result = self.recent[execution.job_id]
        self.pending[execution.job_id] = execution

    def clear(self) -> None:
        """Forget everything waiting (its orders were given back)."""
        self.pending.clear()
        self.progress.clear()

    def flush(self, conn: Connection, held: int, hurry: bool) -> list[Execution]:
        """Publish every waiting progression and result in one confirmed batch; returns the executions whose
        result was confirmed (their orders may be acked now). ``held`` is the number of orders held by this
        worker; unless ``hurry`` (stopping), a batch waits up to FLUSH_DELAY for those still running."""
        if not (self.pending or self.progress):
            self.flush_due = None  # e.g. given back with a lost connection: no deadline left to wake up for
            return []
        now = time.monotonic()
        if now < self._publish_retry_at:
            return []
        # Publish now when nothing else held here can still finish (every execution has its result), when
        # stopping, or when the first waiting result has waited FLUSH_DELAY; else gather more into this batch.
        if len(self.pending) < held and not hurry:
            if self.flush_due is None:
                self.flush_due = now + FLUSH_DELAY
            if now < self.flush_due:
                return []
        self.flush_due = None
        pending = list(self.pending.values())
        progress = dict(self.progress)
        batch = [
            OutgoingMessage(topology.JOB_RESPONSE, topology.JOB_PROGRESSION, JobProgression(
                job_id, progression, datetime=utc_now(), instance_id=self.instance_id).encode())
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
            return []
        self._publish_delay = BACKOFF_START
        for job_id, progression in progress.items():
            if self.progress.get(job_id) == progression:
                del self.progress[job_id]
        for execution in pending:
            job_id = execution.job_id
            del self.pending[job_id]
            self.progress.pop(job_id, None)
            assert execution.result is not None
            self.recent[job_id] = execution.result
            self.recent.move_to_end(job_id)
        while len(self.recent) > RECENT_RESULTS:
            self.recent.popitem(last=False)
        return pending
