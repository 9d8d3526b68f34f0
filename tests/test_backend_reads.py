"""Duration statistics of a step's jobs (`Backend.step_stats`) and the workers' counters (`WorkerRegistry`)."""

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


def test_worker_counters_count_results_and_a_cancel_is_not_a_failure():
    from stepflow_tui.backend.workers import WorkerRegistry
    from stepflow_tui.core.protocol import WorkerStatus

    registry = WorkerRegistry()
    registry.record(WorkerStatus("w1", "job_hash", "Hash", "1.0", concurrency=4))
    registry.count_result("w1", 10, failed=False)
    registry.count_result("w1", 11, failed=True)
    registry.count_result("w1", 12, failed=False)  # a cancelled job: counted processed, not failed
    registry.count_result(None, 13, failed=True)  # nobody to count it for
    (view,) = registry.views()
    assert (view.processed, view.failed, view.concurrency, view.last_job) == (3, 1, 4, 12)
    assert view.first_seen and view.last_job_at


def test_a_backend_counts_what_its_workers_did(start_backend) -> None:
    from helpers import wait_for

    harness = start_backend([{"identifier": "w", "label": "W", "steps": [
        {"id": 1, "name": "noop", "label": "N", "parameters": [
            {"id": "source_paths", "type": "array_of_strings", "value": ["/a", "/b", "/c"]}]}]}],
        {"noop": lambda ctx: {}})
    workflow_id = harness.start("w")
    assert harness.wait_finished(workflow_id) == "completed"
    workers = wait_for(lambda: [w for w in harness.backend.workers() if w.processed == 3], 10, "3 results counted")
    assert workers[0].failed == 0 and workers[0].last_job is not None


def test_a_job_log_travels_with_its_result_bounded(start_backend) -> None:
    from stepflow_tui.core.protocol import MAX_LOG_LINES, JobCompleted, decode_response

    def chatty(ctx):
        ctx.logger.debug("not kept")
        for n in range(MAX_LOG_LINES + 5):
            ctx.logger.info("line %d of %s", n, ctx.job_id)
        return {}

    harness = start_backend([{"identifier": "w", "label": "W", "steps": [{"id": 1, "name": "chatty", "label": "C"}]}],
                            {"chatty": chatty})
    workflow_id = harness.start("w")
    assert harness.wait_finished(workflow_id) == "completed"
    (record,) = harness.jobs(workflow_id)
    assert len(record["logs"]) == MAX_LOG_LINES and record["logs"][-1].endswith(
        f"INFO line {MAX_LOG_LINES + 4} of {record['id']}")
    # the wire: our extension, dropped (not refused) when malformed
    message = decode_response("job_completed", JobCompleted(7, logs=["a", "b"]).encode())
    assert message.logs == ["a", "b"]
    assert decode_response("job_completed", b'{"job_id": 7, "status": "completed", "logs": 3}').logs == []
