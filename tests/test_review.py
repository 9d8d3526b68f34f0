"""Regression tests from a review: duplicate orders, a broker thread that must survive a bad message or a
failing state file, a worker whose job returns what JSON cannot carry."""

from __future__ import annotations

from pathlib import Path

from backend_harness import ForeignWorker, definition, make_engine, step
from backend_harness import engine_definition as engine_definition
from helpers import wait_for

from stepflow_tui.broker import topology
from stepflow_tui.core import protocol
from stepflow_tui.core.model import JobStatus
from stepflow_tui.core.protocol import JobFailed
from stepflow_tui.worker.context import JobContext


# ------------------------------------------------------------------------------------------- engine (pure)
def test_a_cancelled_unsent_job_retried_is_sent_once() -> None:
    engine = make_engine()
    wf = engine.start_workflow(engine_definition([{"id": 1, "name": "a", "label": "A"}]), {})
    (job_id,) = wf.step(1).job_ids
    # cancelled before its order went out (window full or workflow paused), then retried by the operator
    engine.on_failed(JobFailed(job_id, "cancelled by operator", stopped=True))
    engine.retry_job(job_id)
    sent = engine.take_outbox(100)
    assert [job.id for job in sent] == [job_id]  # one order, not two runs of the same job
    engine.mark_dispatched(sent)
    assert engine.in_flight == 1
    assert engine.take_outbox(100) == []


# ------------------------------------------------------------------------------------------- backend loop
def test_a_message_the_engine_cannot_apply_is_set_aside_and_the_broker_thread_lives_on(
        start_backend, memory_url: str) -> None:
    foreign = ForeignWorker(memory_url, "ext")
    try:
        harness = start_backend([definition("t", step(1, "ext"))])
        backend = harness.backend
        first = harness.start("t")
        (order,) = foreign.wait_orders(1)
        job_id = protocol.decode_order(order.body).job_id
        # A workflow whose stored definition no longer validates (a hand-edited or older state file): the
        # engine raises something other than a ProtocolError when a failure of its job arrives.
        with backend.store.lock:
            backend.state.workflows[first].definition = {"identifier": "t"}
            backend.engine._definitions.pop(first)
        foreign.send(topology.JOB_ERROR, JobFailed(job_id, "boom").encode())
        wait_for(lambda: backend.stats["garbage"] == 1, 5, "the message to be set aside")
        dead = wait_for(lambda: foreign.conn.get(topology.JOB_DEAD_LETTER), 5, "the dead letter")
        assert protocol.decode_response(topology.JOB_ERROR, dead.body).job_id == job_id
        # still serving: commands run and orders go out
        harness.start("t")
        foreign.wait_orders(2)
        assert backend.connection_state == "connected"
    finally:
        foreign.close()


def test_a_failing_state_file_acks_nothing_says_so_and_the_loop_goes_on(start_backend, memory_url: str,
                                                                        tmp_path: Path) -> None:
    foreign = ForeignWorker(memory_url, "ext")
    try:
        harness = start_backend([definition("t", step(1, "ext"))])
        backend = harness.backend
        updates: list = []
        backend.subscribe(updates.append)
        workflow_id = harness.start("t")
        (order,) = foreign.wait_orders(1)
        job_id = protocol.decode_order(order.body).job_id
        # the shard directory replaced by a file: every write of a job fails (like a full disk)
        shard_dir = backend.store.shard_dir
        wait_for(lambda: shard_dir.is_dir(), 5, "the first flush")
        shard_dir.rename(tmp_path / "shards-aside")
        shard_dir.write_text("in the way")
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(job_id).encode())
        wait_for(lambda: any("cannot write state file" in m for u in updates for m in u.messages), 5,
                 "the operator to be told")
        assert "cannot write state file" in (backend.last_error or "")
        states = wait_for(lambda: [s for s in foreign.conn.queue_states([topology.JOB_COMPLETED])
                                   if s.unacked == 1], 5, "the completion to stay unacked")
        assert states
        # the disk is fixed: the next round writes it and acks the completion
        shard_dir.unlink()
        (tmp_path / "shards-aside").rename(shard_dir)
        wait_for(lambda: [s for s in foreign.conn.queue_states([topology.JOB_COMPLETED])
                          if s.unacked == 0 and s.ready == 0], 5, "the completion to be acked")
        assert harness.wait_finished(workflow_id) == "completed"
        assert backend.stats["flushes"] >= 2
    finally:
        foreign.close()


# ------------------------------------------------------------------------------------------- worker
def test_a_job_output_json_cannot_carry_fails_the_job_and_the_worker_goes_on(start_backend) -> None:
    calls = []

    def odd(ctx: JobContext):
        calls.append(ctx.job_id)
        if len(calls) == 1:
            return {"outputs": {"tags": {"a", "b"}}}  # a set: JSON has no such thing
        return None

    harness = start_backend([definition("t", step(1, "odd"))], workers={"odd": odd})
    first = harness.start("t")
    assert harness.wait_finished(first) == "error"
    (job,) = harness.jobs(first)
    assert "JSON" in job["error"] and "set" in job["error"]
    second = harness.start("t")
    assert harness.wait_finished(second) == "completed"
    assert job["status"] == JobStatus.ERROR.value


# ------------------------------------------------------------------------------------------- cli follow
def test_following_a_paused_workflow_with_nothing_running_ends_and_says_how_to_go_on(
        start_backend, memory_url: str) -> None:
    import io
    import threading

    from stepflow_tui.cli.follow import follow
    from stepflow_tui.cli.options import EXIT_FAILED

    foreign = ForeignWorker(memory_url, "ext")
    try:
        second = dict(step(2, "ext"), parent_ids=[1])
        harness = start_backend([definition("t", step(1, "ext"), second)])
        backend = harness.backend
        workflow_id = harness.start("t")
        (order,) = foreign.wait_orders(1)
        backend.pause(workflow_id).result(timeout=5)
        # the order already sent still runs; the next step's order is held back by the pause
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(protocol.decode_order(order.body).job_id,
                                                                         destination_paths=["/out/a"]).encode())
        out = io.StringIO()
        result: list[int] = []
        follower = threading.Thread(target=lambda: result.append(follow(backend, workflow_id, out)), daemon=True)
        follower.start()
        follower.join(15)  # without an end, `stepflow wait` on it held the state file forever
        assert result == [EXIT_FAILED], out.getvalue()
        assert f"workflow #{workflow_id} is paused" in out.getvalue()
        assert "resume" in out.getvalue()
        assert harness.status(workflow_id) == "paused"
    finally:
        foreign.close()
