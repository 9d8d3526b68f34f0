"""Dispatch: which orders go out when. The outbox (jobs queued and not sent yet, per workflow, taken fairly
across workflows), the count of orders in flight that the backend keeps under its window, each workflow's jobs
that may still move it (sent or processing), the timers of delayed automatic retries and the backend's timeout
guards. Pure bookkeeping: what a due timer means (a retry, a
failure) is the engine's business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from stepflow_tui.core.model import JOB_FINAL, Job, JobStatus, State

#: The longest wait before an automatic retry, however many attempts failed.
MAX_RETRY_DELAY = 3600.0


def retry_delay(base: float, attempt: int) -> float:
    """Seconds before automatic retry number ``attempt`` + 1: ``base × 2^attempt``, capped (0: at once)."""
    return min(base * (2 ** attempt) if base else 0.0, MAX_RETRY_DELAY)


def guard_seconds(timeout: float) -> float:
    """How long the backend lets a job with step ``timeout`` process before failing it itself: the worker's own
    timeout plus a margin (network, a slow report), at least 10 s."""
    return timeout + max(10.0, timeout / 2)


def timeout_reason(timeout: float) -> str:
    """The error of a job that ran out of time (the worker and the backend say the same)."""
    return f"timed out after {timeout:g} s"


def may_still_move(job: Job) -> bool:
    """Whether ``job`` may still move its workflow while it is paused: its order was sent and it is not
    finished, or a worker reported it processing."""
    return job.status not in JOB_FINAL and (job.dispatched or job.status == JobStatus.PROCESSING)


class Dispatcher:
    """The outbox, the in-flight count, the jobs that may still move each workflow and the retry / timeout
    timers of one `State`."""

    def __init__(self, state: State, monotonic: Callable[[], float]) -> None:
        self.state = state
        self.monotonic = monotonic
        # Jobs queued and not yet sent, per workflow, in order. Sending is bounded by the backend's window.
        self._ready: dict[int, deque[int]] = {}
        # Automatic retries waiting for their delay: job id -> monotonic due time.
        self._retry_due: dict[int, float] = {}
        #: Jobs sent (dispatched) and not final yet: the backend keeps this under its window.
        self.in_flight = 0
        self._in_flight_ids: set[int] = set()
        # Backend-side timeout guard: processing job id -> monotonic time after which it is failed. Only jobs
        # whose step sets a timeout; a worker that ignores the order's timeout header is caught here.
        self._guard_due: dict[int, float] = {}
        # Per workflow, its jobs for which `may_still_move` holds: kept as they change (`track`), so that
        # `running_count` does not walk a workflow's jobs (100,000 of them) under the store's lock.
        self._running: dict[int, set[int]] = {}
        for job in dict.values(state.jobs):  # those in memory: an archived shard holds final jobs only
            self.track(job)

    # ------------------------------------------------------------------ outbox
    def enqueue(self, job: Job) -> None:
        """Queue ``job``'s order to be sent (after those of its workflow already waiting)."""
        self._ready.setdefault(job.workflow_id, deque()).append(job.id)

    def take(self, limit: int, durable: Callable[[int], bool] | None = None) -> list[Job]:
        """Up to ``limit`` jobs whose orders should be sent now, fairly across workflows that are not paused;
        a job ``durable`` says is not on disk yet stops its workflow's queue until a later call."""
        out: list[Job] = []
        if limit <= 0:
            return out
        jobs = self.state.jobs
        # A job id may sit in a ready queue twice (cancelled before it was sent, then retried): one order only.
        taken: set[int] = set()
        progressed = True
        while len(out) < limit and progressed:
            progressed = False
            for workflow_id in list(self._ready):
                queue = self._ready[workflow_id]
                workflow = self.state.workflows.get(workflow_id)
                if workflow is None or workflow.finished:
                    del self._ready[workflow_id]
                    continue
                if workflow.paused:
                    continue
                share = max(1, (limit - len(out)) // max(1, len(self._ready)))
                while queue and share and len(out) < limit:
                    if durable is not None and not durable(queue[0]):
                        break  # written by the write in flight or the next one: sent after it
                    job = jobs.get(queue.popleft())
                    if job is None or job.status != JobStatus.QUEUED or job.dispatched or job.id in taken:
                        continue
                    taken.add(job.id)
                    out.append(job)
                    share -= 1
                    progressed = True
                if not queue:
                    del self._ready[workflow_id]
        return out

    def requeue_unsent(self, jobs: Iterable[Job]) -> None:
        """Orders that could not be published go back to the front of their queues."""
        for job in reversed(list(jobs)):
            self._ready.setdefault(job.workflow_id, deque()).appendleft(job.id)

    def drop_workflow(self, workflow_id: int) -> None:
        """Send no more orders of this workflow (aborted or deleted): none of its jobs is running any more."""
        self._ready.pop(workflow_id, None)
        self._running.pop(workflow_id, None)

    def pending_count(self) -> int:
        """Jobs waiting to be sent (not counting paused workflows' jobs)."""
        return sum(len(q) for wf, q in self._ready.items()
                   if not getattr(self.state.workflows.get(wf), "paused", True))

    # ------------------------------------------------------------------ in flight
    def mark_dispatched(self, jobs: Iterable[Job]) -> None:
        """The broker confirmed these jobs' orders: they count in flight until they land."""
        for job in jobs:
            if job.status in JOB_FINAL or job.dispatched:
                continue
            job.dispatched = True
            job.attempts += 1
            self.state.mark_job(job)
            self.count_in_flight(job)
            self.track(job)

    def count_in_flight(self, job: Job) -> None:
        """Count ``job``'s order in flight (once)."""
        if job.id not in self._in_flight_ids:
            self._in_flight_ids.add(job.id)
            self.in_flight += 1

    def landed(self, job: Job) -> None:
        """``job``'s order no longer counts in flight (final, retrying or queued again)."""
        if job.id in self._in_flight_ids:
            self._in_flight_ids.discard(job.id)
            self.in_flight -= 1

    # ------------------------------------------------------------------ running
    def track(self, job: Job) -> None:
        """``job``'s status or ``dispatched`` changed: count it in its workflow's `running_count` or not."""
        if may_still_move(job):
            self._running.setdefault(job.workflow_id, set()).add(job.id)
            return
        running = self._running.get(job.workflow_id)
        if running is not None:
            running.discard(job.id)
            if not running:
                del self._running[job.workflow_id]

    def running_count(self, workflow_id: int) -> int:
        """Jobs of the workflow for which `may_still_move` holds."""
        return len(self._running.get(workflow_id, ()))

    # ------------------------------------------------------------------ timers
    def schedule_retry(self, job_id: int, delay: float) -> None:
        """Release ``job_id`` for its automatic retry in ``delay`` seconds (see `due_retries`)."""
        self._retry_due[job_id] = self.monotonic() + delay

    def next_retry_in(self) -> float | None:
        """Seconds until the next delayed automatic retry is due (None when none waits)."""
        if not self._retry_due:
            return None
        return max(0.0, min(self._retry_due.values()) - self.monotonic())

    def due_retries(self) -> list[Job]:
        """The retrying jobs whose delay is over (their timers are cleared)."""
        return self._pop_due(self._retry_due, JobStatus.RETRYING)

    def arm_guard(self, job_id: int, timeout: float) -> None:
        """Start the timeout guard of a job that began processing, for a step ``timeout``."""
        self._guard_due[job_id] = self.monotonic() + guard_seconds(timeout)

    def disarm_guard(self, job_id: int) -> None:
        """The job stopped processing: no guard."""
        self._guard_due.pop(job_id, None)

    def overdue(self) -> list[Job]:
        """The processing jobs whose timeout guard ran out (their guards are cleared)."""
        return self._pop_due(self._guard_due, JobStatus.PROCESSING)

    def _pop_due(self, timers: dict[int, float], status: JobStatus) -> list[Job]:
        """Clear the ``timers`` that are due; return their jobs still in ``status``."""
        if not timers:
            return []
        now = self.monotonic()
        jobs = []
        for job_id, due in list(timers.items()):
            if due <= now:
                del timers[job_id]
                job = self.state.jobs.get(job_id)
                if job is not None and job.status == status:
                    jobs.append(job)
        return jobs

    def forget(self, job_id: int) -> None:
        """Clear ``job_id``'s timers (stopped by an abort, or deleted)."""
        self._retry_due.pop(job_id, None)
        self._guard_due.pop(job_id, None)
