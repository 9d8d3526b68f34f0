"""Duration statistics of a step's jobs (`Backend.step_stats`)."""

from __future__ import annotations

from stepflow_tui.backend.reads import job_view
from stepflow_tui.backend.step_stats import step_stats
from stepflow_tui.core.model import Job, JobStatus


def job(job_id: int, duration: float | None, started: str | None = None, finished: str | None = None) -> Job:
    return Job(job_id, 1, 1, "hash", [{"id": "source_path", "type": "string", "value": f"/in/{job_id}.jpg"}],
               status=JobStatus.COMPLETED if duration is not None else JobStatus.PROCESSING,
               execution_duration=duration, started_at=started, finished_at=finished)


def test_statistics_of_the_finished_jobs():
    jobs = [job(n, float(n), f"2026-01-01T00:00:{n:02d}Z", f"2026-01-01T00:00:{n + 1:02d}Z") for n in range(1, 21)]
    jobs.append(job(99, None, "2026-01-01T00:00:00Z"))  # still running: no duration yet
    stats = step_stats(jobs, job_view)
    assert (stats.timed, stats.minimum, stats.median, stats.p95, stats.maximum) == (20, 1.0, 10.5, 19.0, 20.0)
    assert stats.throughput == 20 / 20  # 20 finished between 00:00:01 and 00:00:21
    assert [j.id for j in stats.slowest] == [20, 19, 18, 17, 16] and stats.slowest[0].input == "/in/20.jpg"


def test_no_finished_job_gives_empty_statistics():
    stats = step_stats([job(1, None)], job_view)
    assert stats.timed == 0 and stats.median is None and stats.slowest == ()
