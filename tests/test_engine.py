"""The engine's semantics, pure (no broker, no store): fan-out, gather, gating, roll-up, retries, abort."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from backend_harness import engine_definition as definition
from backend_harness import make_engine
from hypothesis import given
from hypothesis import strategies as st

from stepflow_tui.core.definitions import StartParameterError
from stepflow_tui.core.engine import Engine, EngineError
from stepflow_tui.core.model import JobStatus, State, StepStatus, WorkflowStatus
from stepflow_tui.core.protocol import JobCompleted, JobFailed, JobProgression

CHAIN = [
    {"id": 1, "name": "list", "label": "List", "parameters": [
        {"id": "folder", "type": "template", "value": "{source_dir}"}]},
    {"id": 2, "name": "hash", "label": "Hash", "parent_ids": [1], "mode": "one_for_one",
     "parameters": [{"id": "out", "type": "template", "value": "{source_dir}/{name}.sha"}]},
    {"id": 3, "name": "gather", "label": "Gather", "parent_ids": [2], "mode": "one_for_many"},
]
SOURCE = [{"id": "source_dir", "type": "string", "required": True}]


def complete(engine, job, paths=()):
    return engine.on_completed(JobCompleted(job.id, 0.1, list(paths)))


def test_chain_fans_out_and_gathers():
    engine = make_engine()
    wf = engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/data"})
    (first,) = engine.take_outbox(100)
    assert first.parameter("folder") == "/data"
    engine.mark_dispatched([first])
    assert engine.take_outbox(100) == []
    complete(engine, first, ["/data/a.txt", "/data/b.bin"])
    hashes = engine.take_outbox(100)
    assert [j.parameter("source_path") for j in hashes] == ["/data/a.txt", "/data/b.bin"]
    assert hashes[0].parameter("out") == "/data/a.sha"
    assert wf.step(2).status == StepStatus.QUEUED
    engine.on_progression(JobProgression(hashes[0].id, 0))
    assert hashes[0].status == JobStatus.PROCESSING and wf.step(2).status == StepStatus.PROCESSING
    for job in hashes:
        complete(engine, job, [job.parameter("source_path") + ".sha"])
    (gather,) = engine.take_outbox(100)
    assert gather.parameter("source_paths") == ["/data/a.txt.sha", "/data/b.bin.sha"]
    assert wf.status == WorkflowStatus.PROCESSING
    complete(engine, gather)
    assert wf.status == WorkflowStatus.COMPLETED
    assert wf.counts()["completed"] == 4 and wf.counts()["total"] == 4


def test_step_without_inputs_is_skipped_and_workflow_completes():
    engine = make_engine()
    wf = engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/empty"})
    (first,) = engine.take_outbox(10)
    complete(engine, first, [])
    assert wf.step(2).status == StepStatus.SKIPPED
    assert wf.step(3).status == StepStatus.SKIPPED
    assert wf.status == WorkflowStatus.COMPLETED


def test_missing_start_parameter_is_refused():
    engine = make_engine()
    with pytest.raises(StartParameterError, match="source_dir"):
        engine.start_workflow(definition(CHAIN, SOURCE), {})
    assert engine.state.workflows == {}


def test_error_blocks_downstream_then_retry_recovers():
    engine = make_engine()
    wf = engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    (first,) = engine.take_outbox(10)
    assert engine.on_failed(JobFailed(first.id, "disk on fire", traceback="Traceback ..."))
    assert first.status == JobStatus.ERROR and first.error == "disk on fire"
    assert wf.status == WorkflowStatus.ERROR and wf.step(2).status == StepStatus.PENDING
    # a late duplicate changes nothing
    assert not engine.on_failed(JobFailed(first.id, "again"))
    assert engine.retry_failed(wf.id) == 1
    assert wf.status == WorkflowStatus.PROCESSING
    (again,) = engine.take_outbox(10)
    assert again.id == first.id and again.status == JobStatus.QUEUED
    complete(engine, again, [])
    assert wf.status == WorkflowStatus.COMPLETED
    statuses = [entry[0] for entry in first.history]
    # no progression came: each result implies the processing entry before it
    # a result from a worker implies the processing entry before it (this error names none: no start implied)
    assert statuses == ["queued", "error", "queued", "processing", "completed"]


def test_automatic_retries_up_to_max_retries():
    engine = make_engine()
    steps = [{"id": 1, "name": "flaky", "label": "Flaky", "max_retries": 2}]
    wf = engine.start_workflow(definition(steps), {})
    for _ in range(2):
        (job,) = engine.take_outbox(10)
        engine.mark_dispatched([job])
        engine.on_failed(JobFailed(job.id, "boom"))
        assert job.status == JobStatus.QUEUED
    (job,) = engine.take_outbox(10)
    engine.on_failed(JobFailed(job.id, "boom"))
    assert job.status == JobStatus.ERROR and job.retries == 2
    assert wf.status == WorkflowStatus.ERROR


def test_completed_job_is_never_counted_twice():
    engine = make_engine()
    wf = engine.start_workflow(definition([{"id": 1, "name": "a", "label": "A",
                                            "parameters": [{"id": "source_paths", "type": "array_of_strings",
                                                            "value": ["x", "y", "z"]}]}]), {})
    jobs = engine.take_outbox(10)
    assert len(jobs) == 3
    assert complete(engine, jobs[0])
    assert not complete(engine, jobs[0])
    assert not engine.on_failed(JobFailed(jobs[0].id, "late error"))
    assert not engine.on_completed(JobCompleted(999_999))
    assert wf.step(1).counts["completed"] == 1 and wf.step(1).counts["queued"] == 2


def test_window_and_pause_hold_orders_back():
    engine = make_engine()
    paths = [f"p{i}" for i in range(10)]
    wf = engine.start_workflow(definition([{"id": 1, "name": "a", "label": "A", "parameters": [
        {"id": "source_paths", "type": "array_of_strings", "value": paths}]}]), {})
    first = engine.take_outbox(4)
    assert len(first) == 4
    engine.mark_dispatched(first)
    assert engine.in_flight == 4
    engine.pause(wf.id)
    assert wf.status == WorkflowStatus.PAUSED
    assert engine.take_outbox(100) == []
    complete(engine, first[0])
    assert engine.in_flight == 3
    engine.resume(wf.id)
    assert len(engine.take_outbox(100)) == 6


def test_abort_stops_unfinished_jobs_and_ignores_late_results():
    engine = make_engine()
    wf = engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    (first,) = engine.take_outbox(10)
    engine.mark_dispatched([first])
    engine.on_progression(JobProgression(first.id, 10, instance_id="w1"))
    running = engine.abort(wf.id)
    assert [j.id for j in running] == [first.id]
    assert wf.status == WorkflowStatus.ABORTED and first.status == JobStatus.STOPPED
    assert wf.step(3).status == StepStatus.SKIPPED
    assert not complete(engine, first, ["/d/x"])
    assert wf.status == WorkflowStatus.ABORTED
    with pytest.raises(EngineError):
        engine.abort(wf.id)


def test_delete_only_finished():
    engine = make_engine()
    wf = engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    with pytest.raises(EngineError, match="abort it"):
        engine.delete(wf.id)
    engine.abort(wf.id)
    job_ids = list(wf.step(1).job_ids)
    engine.delete(wf.id)
    assert wf.id not in engine.state.workflows and wf.id in engine.state.deleted_workflows
    assert all(j not in engine.state.jobs for j in job_ids)


def test_queue_not_found_fails_without_retry():
    engine = make_engine()
    wf = engine.start_workflow(definition([{"id": 1, "name": "nobody", "label": "N", "max_retries": 3}]), {})
    (job,) = engine.take_outbox(10)
    assert engine.on_queue_not_found(job.id)
    assert job.status == JobStatus.ERROR and "no queue for job type 'nobody'" in job.error
    assert wf.status == WorkflowStatus.ERROR


def test_unknown_template_variable_fails_the_job_with_a_reason():
    engine = make_engine()
    wf = engine.start_workflow(definition([{"id": 1, "name": "a", "label": "A", "parameters": [
        {"id": "x", "type": "template", "value": "{nope}"}]}]), {})
    (job,) = wf.step(1).job_ids
    assert engine.state.jobs[job].status == JobStatus.ERROR
    assert "nope" in engine.state.jobs[job].error
    assert engine.take_outbox(10) == []


def test_resume_after_restart_on_memory_resends_unfinished_only():
    engine = make_engine()
    paths = [f"p{i}" for i in range(5)]
    wf = engine.start_workflow(definition([{"id": 1, "name": "a", "label": "A", "parameters": [
        {"id": "source_paths", "type": "array_of_strings", "value": paths}]}]), {})
    jobs = engine.take_outbox(10)
    engine.mark_dispatched(jobs)
    complete(engine, jobs[0])
    engine.on_progression(JobProgression(jobs[1].id, 50))
    # a new engine on the same state, as after a restart
    restarted = Engine(engine.state, clock=engine.clock, monotonic=lambda: 0.0)
    assert restarted.resume_unfinished(orders_survived=False) == 4
    again = restarted.take_outbox(10)
    assert sorted(j.id for j in again) == sorted(j.id for j in jobs[1:])
    durable = Engine(engine.state, clock=engine.clock, monotonic=lambda: 0.0)
    restarted.mark_dispatched(again)
    assert durable.resume_unfinished(orders_survived=True) == 0
    assert durable.in_flight == 4
    assert wf.step(1).counts["completed"] == 1


def first_job_at(queued_at: str):
    """An engine whose clock reads ``now["t"]``, the clock, and the first job of a chain queued at ``queued_at``."""
    now = {"t": queued_at}
    engine = Engine(State(), clock=lambda: now["t"])
    engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    (job,) = engine.take_outbox(10)
    return engine, now, job


def test_a_result_without_a_progression_records_the_start_it_implies():
    """Workers send no progression 0 for a job whose result is ready when they publish (docs/worker.md)."""
    engine, now, job = first_job_at("2026-11-27T10:00:00.000000Z")
    now["t"] = "2026-11-27T10:00:05.000000Z"
    assert engine.on_completed(JobCompleted(job.id, execution_duration=2.5, instance_id="w1"))
    assert job.started_at == "2026-11-27T10:00:02.500000Z" and job.finished_at == "2026-11-27T10:00:05.000000Z"
    assert [entry[:2] for entry in job.history] == [["queued", "2026-11-27T10:00:00.000000Z"],
                                                    ["processing", "2026-11-27T10:00:02.500000Z"],
                                                    ["completed", "2026-11-27T10:00:05.000000Z"]]
    assert job.worker == "w1"


def test_a_progression_then_a_result_keeps_the_reported_start():
    ticks = itertools.count()
    engine = Engine(State(), clock=lambda: f"2026-11-27T10:00:{next(ticks):02d}.000000Z")
    engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    (job,) = engine.take_outbox(10)
    assert engine.on_progression(JobProgression(job.id, 0, instance_id="w1"))
    reported = job.started_at
    assert engine.on_completed(JobCompleted(job.id, execution_duration=0.1))
    assert job.started_at == reported and job.finished_at > reported
    assert [entry[0] for entry in job.history] == ["queued", "processing", "completed"]


def test_engine_times_match_strftime():
    from datetime import UTC, datetime, timedelta

    from stepflow_tui.core.clock import TIME_FORMAT, format_time, seconds_before, utc_now

    before = datetime.now(UTC).replace(tzinfo=None)
    text = utc_now()
    after = datetime.now(UTC).replace(tzinfo=None)
    assert before - timedelta(microseconds=1) <= datetime.strptime(text, TIME_FORMAT) <= after
    for moment in (datetime(2026, 1, 2, 3, 4, 5, 6), datetime(1999, 12, 31, 23, 59, 59, 999_999)):
        assert format_time(moment) == moment.strftime(TIME_FORMAT)
    assert seconds_before("2026-01-01T00:00:00.250000Z", 0.5) == "2025-12-31T23:59:59.750000Z"
    assert seconds_before("not a time", 3) == "not a time"


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
       st.floats(min_value=0, max_value=10, allow_nan=False))
def test_seconds_before_agrees_with_datetime_arithmetic(moment: datetime, seconds: float) -> None:
    """The same-second shortcut gives what subtracting a timedelta gives (to the microsecond)."""
    from stepflow_tui.core.clock import TIME_FORMAT, format_time, seconds_before

    expected = format_time((moment - timedelta(seconds=seconds)).replace(tzinfo=UTC))
    assert seconds_before(moment.strftime(TIME_FORMAT), seconds) == expected


def test_an_implied_start_is_never_before_the_job_was_queued_and_survives_absurd_durations():
    engine, now, job = first_job_at("2026-11-27T10:00:04.000000Z")
    now["t"] = "2026-11-27T10:00:05.000000Z"
    # e.g. a late result of an earlier attempt: it ran longer than this attempt has been queued
    assert engine.on_completed(JobCompleted(job.id, execution_duration=3.0, instance_id="w1"))
    assert job.started_at == "2026-11-27T10:00:04.000000Z"
    engine2, now, other = first_job_at(now["t"])
    assert engine2.on_completed(JobCompleted(other.id, execution_duration=1e12, instance_id="w1"))  # no overflow
    assert other.started_at == other.finished_at == now["t"]


def test_cancelling_a_queued_job_records_no_start():
    engine = make_engine()
    engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    (job,) = engine.take_outbox(10)
    assert engine.on_failed(JobFailed(job.id, "stopped", stopped=True))  # what Backend.cancel_job sends
    assert job.status == JobStatus.STOPPED and job.started_at is None
    assert [entry[0] for entry in job.history] == ["queued", "stopped"]


def test_a_cancelled_job_ends_the_workflow_stopped_not_in_error():
    engine = make_engine()
    wf = engine.start_workflow(definition([{"id": 1, "name": "a", "label": "A"}]), {})
    (job,) = engine.take_outbox(10)
    assert engine.on_failed(JobFailed(job.id, "stopped", stopped=True))
    assert wf.status == WorkflowStatus.STOPPED and wf.finished
    assert wf.counts()["error"] == 0 and wf.counts()["stopped"] == 1
    engine.retry_job(job.id)  # a stopped job can be run again, and the workflow with it
    assert wf.status == WorkflowStatus.PROCESSING and wf.finished_at is None


def test_a_failed_job_beside_a_stopped_one_ends_the_workflow_in_error():
    engine = make_engine()
    wf = engine.start_workflow(definition([{"id": 1, "name": "a", "label": "A"},
                                           {"id": 2, "name": "b", "label": "B"}]), {})
    first, second = engine.take_outbox(10)
    engine.on_failed(JobFailed(first.id, "stopped", stopped=True))
    engine.on_failed(JobFailed(second.id, "boom"))
    assert wf.status == WorkflowStatus.ERROR


def test_a_step_skipped_by_an_abort_was_never_launched():
    engine = make_engine()
    wf = engine.start_workflow(definition(CHAIN, SOURCE), {"source_dir": "/d"})
    engine.abort(wf.id)
    # what the views tell "aborted before it started" from "no inputs" by
    assert wf.step(3).status == StepStatus.SKIPPED and wf.step(3).launched_at is None


def scanned_running(engine: Engine, workflow_id: int) -> int:
    """What `Engine.running_count` keeps, counted the slow way (every job of the workflow)."""
    jobs = engine.state.jobs
    return sum(1 for step in engine.state.workflows[workflow_id].steps for i in step.job_ids
               if jobs[i].status not in (JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.SKIPPED, JobStatus.STOPPED)
               and (jobs[i].dispatched or jobs[i].status == JobStatus.PROCESSING))


def test_running_count_follows_every_change_of_status_and_dispatch():
    now = {"t": 0.0}
    engine = Engine(State(), monotonic=lambda: now["t"])
    steps = [{"id": 1, "name": "a", "label": "A", "max_retries": 1, "retry_delay": 5, "parameters": [
        {"id": "source_paths", "type": "array_of_strings", "value": [f"p{i}" for i in range(6)]}]}]
    wf = engine.start_workflow(definition(steps), {})
    other = engine.start_workflow(definition(steps), {})
    jobs = engine.take_outbox(12)
    a = [j for j in jobs if j.workflow_id == wf.id]
    seen = []

    def check() -> None:
        for workflow_id in list(engine.state.workflows):
            assert engine.running_count(workflow_id) == scanned_running(engine, workflow_id)
        seen.append(engine.running_count(wf.id))

    check()  # taken, not sent yet: none
    engine.mark_dispatched(jobs)
    check()
    engine.on_progression(JobProgression(a[0].id, 10))
    complete(engine, a[1])
    check()
    engine.on_failed(JobFailed(a[2].id, "boom"))  # retrying, its order sent once: still counted
    assert a[2].status == JobStatus.RETRYING
    check()
    engine.requeue_refused(a[0].id, "busy")  # queued again, not sent: no longer counted
    check()
    engine.pause(wf.id)
    now["t"] = 10.0
    engine.take_outbox(10)  # the retry is due: queued again (nothing sent, paused)
    check()
    assert seen == [0, 6, 5, 5, 4, 3]
    restarted = Engine(engine.state, monotonic=lambda: now["t"])  # counted again from the jobs
    assert restarted.running_count(other.id) == scanned_running(engine, other.id) == 6
    restarted.resume_unfinished(orders_survived=False)
    assert restarted.running_count(other.id) == scanned_running(engine, other.id) == 0
    engine = restarted
    engine.mark_dispatched(engine.take_outbox(10))
    engine.on_progression(JobProgression(engine.state.workflows[other.id].step(1).job_ids[0], 5))
    check()
    engine.abort(other.id)
    check()
    engine.delete(other.id)
    assert engine.running_count(other.id) == 0
    assert other.id not in engine.dispatcher._running  # nothing kept of a deleted workflow


def test_tune_gc_makes_young_collections_rarer_and_never_more_frequent() -> None:
    import gc

    from stepflow_tui.core.runtime import YOUNG_THRESHOLD, tune_gc

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_gc()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        gc.set_threshold(YOUNG_THRESHOLD * 5, 3, 4)  # an operator's own choice stays
        tune_gc()
        assert gc.get_threshold() == (YOUNG_THRESHOLD * 5, 3, 4)
        gc.set_threshold(0)  # collection disabled stays disabled
        tune_gc()
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*saved)


def test_tune_for_service_hands_the_gil_over_every_millisecond_and_never_less_often() -> None:
    import sys

    from stepflow_tui.core.runtime import SERVICE_SWITCH_INTERVAL, tune_for_service

    saved = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        tune_for_service()
        assert sys.getswitchinterval() == pytest.approx(SERVICE_SWITCH_INTERVAL)
        sys.setswitchinterval(0.0002)  # already more often: kept
        tune_for_service()
        assert sys.getswitchinterval() == pytest.approx(0.0002)
    finally:
        sys.setswitchinterval(saved)
