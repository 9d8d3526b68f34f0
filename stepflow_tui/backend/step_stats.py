"""Duration statistics of a step's jobs: min / median / p95 / max, throughput and the slowest jobs."""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Callable, Iterable
from datetime import datetime

from stepflow_tui.backend.views import JobView, StepStats
from stepflow_tui.core.model import Job

SLOWEST = 5  # jobs listed as the slowest


def step_stats(jobs: Iterable[Job], view_of: Callable[[Job], JobView]) -> StepStats:
    """The statistics of the jobs that reported a duration (a job still running has none yet)."""
    timed = [job for job in jobs if job.execution_duration is not None]
    if not timed:
        return StepStats()
    durations = sorted(job.execution_duration for job in timed)  # type: ignore[misc]
    # nearest-rank percentile: a duration some job really took
    p95 = durations[max(0, math.ceil(0.95 * len(durations)) - 1)]
    slowest = heapq.nlargest(SLOWEST, timed, key=lambda job: job.execution_duration or 0.0)
    return StepStats(timed=len(timed), minimum=durations[0], median=statistics.median(durations), p95=p95,
                     maximum=durations[-1], throughput=_throughput(timed),
                     slowest=tuple(view_of(job) for job in slowest))


def _throughput(jobs: list[Job]) -> float | None:
    """Jobs finished per second between the first start and the last finish (None when they ran at once)."""
    starts = [moment for job in jobs if (moment := _parse(job.started_at)) is not None]
    ends = [moment for job in jobs if (moment := _parse(job.finished_at)) is not None]
    if not starts or not ends:
        return None
    elapsed = (max(ends) - min(starts)).total_seconds()
    return len(ends) / elapsed if elapsed > 0 else None


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
