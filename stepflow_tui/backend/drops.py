"""The drop list: job ids of aborted workflows whose orders workers must not run, and the messages that
say so."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import BrokerError, Connection, OutgoingMessage, PublishFailed
from stepflow_tui.core.model import Job, JobStatus, State, WorkflowStatus
from stepflow_tui.core.protocol import DROP_JOBS, UNDROP_JOBS, DirectMessage

log = logging.getLogger("stepflow_tui.backend")

#: Job ids of aborted workflows the backend keeps telling new workers not to run (the most recent ones).
RECENT_DROPS = 100_000


class DropList:
    """The most recent dropped job ids (oldest first) and the drop / undrop messages still to send."""

    def __init__(self, notice: Callable[[str], None]) -> None:
        self._notice = notice
        # Orders not to run (aborted workflows): job id -> None, oldest first; re-sent to each new worker.
        self._drops: dict[int, None] = {}
        # (job ids, instance id or None: all, message type)
        self._to_send: list[tuple[list[int], str | None, str]] = []

    def __bool__(self) -> bool:
        return bool(self._drops)

    def ids(self) -> list[int]:
        """The dropped job ids, oldest first (call under the store lock: commands change the list)."""
        return list(self._drops)

    def restore(self, state: State) -> None:
        """After a restart: orders of aborted workflows may still sit in the job queues."""
        for workflow in sorted(state.workflows.values(), key=lambda w: w.id):
            if workflow.status != WorkflowStatus.ABORTED:
                continue
            for step in workflow.steps:
                for job_id in step.job_ids:
                    job = state.jobs.get(job_id)
                    if job is not None and job.dispatched and job.status == JobStatus.STOPPED:
                        self._drops[job_id] = None
        self._trim()

    def _trim(self) -> None:
        while len(self._drops) > RECENT_DROPS:
            del self._drops[next(iter(self._drops))]

    def drop(self, jobs: Iterable[Job]) -> None:
        """Broadcast: workers must not run these jobs' orders still waiting in the queues."""
        ids = [job.id for job in jobs if job.dispatched]
        if not ids:
            return
        for job_id in ids:
            self._drops[job_id] = None
        self._trim()
        self._to_send.append((ids, None, DROP_JOBS))

    def undrop(self, job_ids: Iterable[int]) -> bool:
        """A cancelled job whose order was black-listed is retried: workers must run its new order (the same
        job id). True when there is something to send (before the new order goes out; an old order that runs
        too is harmless: at-least-once)."""
        ids = [job_id for job_id in job_ids if job_id in self._drops]
        if not ids:
            return False
        for job_id in ids:
            del self._drops[job_id]
        self._to_send.append((ids, None, UNDROP_JOBS))
        return True

    def tell_new_worker(self, instance_id: str) -> None:
        """A worker we did not know may hold orders of aborted workflows: tell it which to drop."""
        if self._drops:
            self._to_send.append((list(self._drops), instance_id, DROP_JOBS))

    def send(self, conn: Connection) -> None:
        """Publish the drop / undrop messages in order (raises BrokerError other than PublishFailed)."""
        while self._to_send:
            job_ids, instance_id, kind = self._to_send[0]
            body = DirectMessage(kind, job_ids=job_ids).encode()
            headers = {"instance_id": instance_id} if instance_id else {"broadcast": True}
            try:
                conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", body, headers=headers,
                                              persistent=False)])
            except PublishFailed as exc:
                # Unroutable: no worker is listening now; each new one gets the list when it shows up.
                log.info("drop list not delivered (%s); new workers will get it", exc)
            self._to_send.pop(0)

    def send_now(self, conn: Connection | None) -> None:
        """Send at once from a command, when connected; what fails is left for the loop's next round."""
        if conn is not None:
            try:
                self.send(conn)
            except BrokerError as exc:  # the loop's next round sends what is left
                self._notice(f"could not send the drop list: {exc}")
