"""Orders a worker rejected. A job queue dead-letters to ``job_delayed`` (the SDK's arguments): a rejected order
comes back 5 s later, for ever (an SDK worker rejects an order whose parameters its schema refuses, without
any job_error). Each rejection leaves a copy in ``job_rejected``; the backend counts them per job, shows the
count on the job, and fails the job after `REJECTIONS_BEFORE_FAILING`, black-listing its order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from stepflow_tui.core.protocol import WorkerStatus

#: A job whose order was rejected this many times fails (each round takes the SDK's 5 s in job_delayed).
REJECTIONS_BEFORE_FAILING = 3
#: At most this many jobs' counts are kept (the oldest are forgotten; x-death still counts for them).
MAX_TRACKED = 10_000


def death_count(headers: Mapping[str, Any] | None, queue: str) -> int:
    """How many times the message was rejected in ``queue``, by its ``x-death`` (0 without one)."""
    for death in (headers or {}).get("x-death") or []:
        if isinstance(death, dict) and _text(death.get("queue")) == queue and _text(death.get("reason")) == "rejected":
            count = death.get("count")
            return count if isinstance(count, int) else 1
    return 0


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def unknown_parameters(workers: Iterable[WorkerStatus], job_type: str,
                       parameters: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a worker of ``job_type`` may refuse these parameters, when its announced JSON schema says so (an
    SDK worker's schema has ``additionalProperties: false``), else None."""
    given = [str(p.get("id")) for p in parameters]
    for status in workers:
        schema = status.parameters
        properties = schema.get("properties")
        if job_type not in status.served_types or schema.get("additionalProperties") is not False:
            continue
        if not isinstance(properties, dict):
            continue
        unknown = [name for name in given if name not in properties]
        if unknown:
            return (f"{status.label or status.instance_id} accepts no parameter {', '.join(map(repr, unknown))}"
                    f" (its parameters: {', '.join(sorted(properties)) or 'none'})")
    return None


class Rejections:
    """Rejection counts by job id (the broker thread only)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def record(self, job_id: int, queue: str, headers: Mapping[str, Any] | None) -> int:
        """One more rejection of ``job_id``'s order from ``queue``: the count so far (x-death's, when it
        knows more, e.g. after a restart of the backend)."""
        count = max(self._counts.pop(job_id, 0) + 1, death_count(headers, queue))
        self._counts[job_id] = count
        while len(self._counts) > MAX_TRACKED:
            del self._counts[next(iter(self._counts))]
        return count

    def forget(self, job_id: int) -> None:
        """The job ended (or is retried): count afresh."""
        self._counts.pop(job_id, None)


def rejection_note(count: int, reason: str | None) -> str:
    """What the job shows: ``order rejected by a worker (N times)``, with the reason when one is known."""
    note = f"order rejected by a worker ({count} time{'s' if count != 1 else ''})"
    return f"{note}: {reason}" if reason else note
