"""Poison input: text that is not valid Unicode, numbers and nesting JSON libraries refuse. Each is kept
losslessly or set aside with its reason; nothing stops the backend's loop, the store or a worker.

RabbitMQ versions are in tests/faults/ (the chaos run's poison messages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from backend_harness import ForeignWorker, definition, engine_definition, step
from helpers import REPO_WORKFLOWS, describe, run_cli, wait_for

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import OutgoingMessage, connect
from stepflow_tui.core import protocol
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.jsontext import dumps, loads
from stepflow_tui.store import Store, StoreError, read_state
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.runner import Worker

SURROGATE = "caf\udce9"  # what a Python worker holds for the Latin-1 file name b"caf\xe9"


def test_lone_surrogates_round_trip_through_json_text() -> None:
    value = {"error": SURROGATE, "paths": ["/in/" + SURROGATE], SURROGATE: 1}
    text = dumps(value)
    assert text.isascii() and "\\udce9" in text
    assert loads(text) == value
    assert loads(text.encode()) == value


def test_an_error_message_with_a_lone_surrogate_is_stored_and_the_loop_goes_on(start_backend, memory_url: str,
                                                                                tmp_path: Path) -> None:
    foreign = ForeignWorker(memory_url, "held")
    try:
        harness = start_backend([definition("t", step(1, "held", count=3))])
        workflow_id = harness.start("t")
        orders = foreign.wait_orders(3)
        first, second, third = (protocol.decode_order(order.body).job_id for order in orders)
        # Exactly what the issue saw: the standard library's JSON of a Python worker's error (an escape).
        foreign.send(topology.JOB_ERROR, json.dumps({"job_id": first, "status": "error",
                                                    "error": SURROGATE}).encode())
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(
            second, destination_paths=["/out/" + SURROGATE]).encode())
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(third).encode())
        assert harness.wait_finished(workflow_id) == "error"
        assert harness.backend.job(first)["error"] == SURROGATE
        assert harness.backend.job(second)["destination_paths"] == ["/out/" + SURROGATE]
        assert harness.backend.job(third)["status"] == "completed"
        assert harness.backend.stats["garbage"] == 0
    finally:
        foreign.close()
    harness.backend.stop()
    state = read_state(tmp_path / "state.json")  # on disk, losslessly
    assert state.jobs[first].error == SURROGATE
    assert state.jobs[second].destination_paths == ["/out/" + SURROGATE]


def test_a_state_that_cannot_be_serialised_is_a_store_error_not_a_crash(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.json")
    engine = Engine(store.open())
    try:
        engine.start_workflow(engine_definition([step(1, "noop")]), {})
        job = next(iter(engine.state.jobs.values()))
        job.outputs = [{"id": "n", "type": "number", "value": 10 ** 5000}]  # beyond what JSON text allows
        with pytest.raises(StoreError, match="cannot serialise the state"):
            store.flush(engine.state)
    finally:
        store.close()


def test_run_with_a_parameter_that_is_not_utf8_ends(tmp_path: Path) -> None:
    # $'\xff' on a command line arrives as "\udcff" (PEP 383); it used to stop every flush: a hang.
    result = run_cli("run", "checksum_folder", "-p", "source_dir=/no/such/\udcff", "-p",
                     f"manifest={tmp_path}/m.sha256", "--wait", "--workflows", REPO_WORKFLOWS,
                     db=tmp_path / "state.json", cwd=tmp_path, timeout=30)
    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert "does not exist" in result.stdout, describe(result)
    state = read_state(tmp_path / "state.json")
    assert state.workflows[1].parameters["source_dir"] == "/no/such/\udcff"


# ------------------------------------------------------------------------------------------- poison orders
POISON_ORDERS = {
    "a job id of 5,000 digits": b'{"job_id": ' + b"9" * 5000 + b', "parameters": []}',
    "a value of 5,000 digits": b'{"job_id": 1, "parameters": [{"id": "n", "type": "integer", "value": '
                               + b"7" * 5000 + b"}]}",
    "nesting 100,000 deep": b'{"job_id": 2, "parameters": [{"id": "x", "type": "array", "value": '
                            + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
    "nesting 900 deep": b'{"job_id": 3, "parameters": [{"id": "x", "type": "array", "value": '
                        + b"[" * 900 + b"]" * 900 + b"}]}",
    "not UTF-8": b'{"job_id": 4, "parameters": [{"id": "x", "type": "string", "value": "\xff"}]}',
}


@pytest.mark.parametrize("what", sorted(POISON_ORDERS))
def test_a_poison_order_is_its_own_failure_never_the_workers_death(what: str, broker_url: str) -> None:
    def echo(ctx: JobContext) -> dict:  # the job touches its parameters, as a real one does
        return {"outputs": {"seen": len(str(ctx.param("x")))}}

    client = connect(broker_url, name="test-client")
    client.declare_backend_topology()
    worker = Worker(broker_url, {"echo": echo})
    worker.start_in_thread()
    try:
        assert worker.wait_ready(30), worker.failure
        queue = topology.job_queue("echo")
        after = protocol.JobOrder(99, [{"id": "x", "type": "string", "value": "after the poison"}]).encode()
        client.publish([OutgoingMessage(topology.JOB_SUBMIT, queue, POISON_ORDERS[what]),
                        OutgoingMessage(topology.JOB_SUBMIT, queue, after)])
        results: dict[int, object] = {}

        def answered() -> bool:
            client.process_events(0.02)
            for name in (topology.JOB_COMPLETED, topology.JOB_ERROR):
                while (delivery := client.get(name)) is not None:
                    client.ack(delivery.delivery_tag)
                    message = protocol.decode_response(name, delivery.body)
                    results[message.job_id] = message
            return 99 in results

        wait_for(answered, 30, "the order after the poison")
        assert isinstance(results[99], protocol.JobCompleted)
        assert worker.failure is None and not worker.wait_stopped(0)
        # The poison is answered as a job error, or set aside in the dead-letter queue: never lost, never looping.
        dead = []
        while (delivery := client.get(topology.JOB_DEAD_LETTER)) is not None:
            client.ack(delivery.delivery_tag)
            dead.append(delivery.body)
        assert len(dead) + len(results) - 1 == 1, (dead, results)
    finally:
        worker.stop(grace=0)
        worker.wait_stopped(30)
        client.close()


def test_a_flood_about_unknown_jobs_is_one_warning_not_one_per_message(start_backend, memory_url: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    harness = start_backend([definition("t", step(1, "held"))])
    foreign = ForeignWorker(memory_url, "held")
    try:
        with caplog.at_level("WARNING", logger="stepflow_tui.backend"):
            for job_id in range(10**9, 10**9 + 500):
                foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(job_id).encode())
            wait_for(lambda: harness.backend.stats["unknown"] == 500, 20, "the 500 messages to be counted")
    finally:
        foreign.close()
    warnings = [r.getMessage() for r in caplog.records if "unknown job" in r.getMessage()]
    assert len(warnings) == 3, warnings  # the first three, one by one; the rest in a summary every 10 s
    assert warnings[0] == "ignored a message from job_completed about unknown job #1000000000"


def test_the_summary_of_a_flood_comes_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    from stepflow_tui.backend.loop import UnknownJobs

    unknown = UnknownJobs()
    with caplog.at_level("WARNING", logger="stepflow_tui.backend"):
        for index in range(500):
            unknown.note("job_completed", index, now=100.0 + index / 100)
            unknown.report(now=100.0 + index / 100)
        unknown.report(now=111.0)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4 and messages[-1].startswith("ignored 497 more message(s) about unknown jobs in 11 s")


def test_a_message_whose_effect_cannot_be_stored_is_set_aside_and_the_loop_goes_on(
        start_backend, memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from stepflow_tui.backend import loop as loop_module

    real = loop_module.jsontext.unstorable
    # JSON the decoder read but the store could not write: rare (nesting at the stack's edge), so simulated.
    monkeypatch.setattr(loop_module.jsontext, "unstorable",
                        lambda value: "RecursionError: too deep" if "/too/deep" in str(value) else real(value))
    foreign = ForeignWorker(memory_url, "held")
    try:
        harness = start_backend([definition("t", step(1, "held", count=2))])
        workflow_id = harness.start("t")
        first, second = (protocol.decode_order(o.body).job_id for o in foreign.wait_orders(2))
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(first, destination_paths=["/too/deep"]).encode())
        foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(second).encode())
        wait_for(lambda: harness.backend.job(second)["status"] == "completed", 10, "the next message applied")
        assert harness.backend.stats["garbage"] == 1
        assert harness.backend.job(first)["status"] == "queued"  # untouched: its result waits in the dead letters
        assert harness.status(workflow_id) == "processing"
        assert harness.backend.save_error is None
        (dead,) = [foreign.conn.get(topology.JOB_DEAD_LETTER)]
        assert dead is not None and b"/too/deep" in dead.body
    finally:
        foreign.close()


def test_a_batch_applied_a_chunk_at_a_time_applies_every_message_once(
        start_backend, memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop applies a batch a few messages per hold of the store's lock (readers get in between): every
    result lands, the malformed one among them is set aside, and the workflow completes."""
    from stepflow_tui.backend import loop as loop_module

    monkeypatch.setattr(loop_module, "APPLY_CHUNK", 2)
    foreign = ForeignWorker(memory_url, "held")
    try:
        harness = start_backend([definition("t", step(1, "held", count=6))])
        workflow_id = harness.start("t")
        job_ids = [protocol.decode_order(o.body).job_id for o in foreign.wait_orders(6)]
        for index, job_id in enumerate(job_ids):
            if index == 3:
                foreign.send(topology.JOB_COMPLETED, b"{not json")
            foreign.send(topology.JOB_COMPLETED, protocol.JobCompleted(job_id).encode())
        assert harness.wait_finished(workflow_id) == "completed"
        assert [harness.backend.job(i)["status"] for i in job_ids] == ["completed"] * 6
        assert harness.backend.stats["garbage"] == 1 and harness.backend.stats["applied"] >= 6
        (dead,) = [foreign.conn.get(topology.JOB_DEAD_LETTER)]
        assert dead is not None and dead.body == b"{not json"
    finally:
        foreign.close()
