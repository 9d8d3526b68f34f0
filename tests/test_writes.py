"""The broker thread's pipelined state writes (backend/writes.py), on a real store in a temporary folder: a
delivery is acked only once the write holding its effect is done, an order goes out only once its job is
written, a failed write keeps its acks until a write succeeds, and a reconnect forgets the old tags.

The store thread's write is held at a gate (an Event) so that each test decides when "the disk" is done."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from backend_harness import engine_definition, step

from stepflow_tui.backend.updates import Updates
from stepflow_tui.backend.writes import RETRY_FIRST, StateWriter
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.model import State
from stepflow_tui.store import Store, read_state

TIMEOUT = 10.0


class Acks:
    """A connection that records acks (the only call the writer makes on it)."""

    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.acks.append((delivery_tag, multiple))


class Rig:
    def __init__(self, folder: Path) -> None:
        self.store = Store(folder / "state.json")
        self.state = self.store.open()
        self.engine = Engine(self.state, clock=lambda: "2026-01-01T00:00:00.000000Z", monotonic=lambda: 0.0)
        self.updates = Updates(0.1, "memory://")
        self.stats: Counter[str] = Counter()
        self.woken = threading.Event()
        self.now = 100.0  # the writer's monotonic clock, moved by the tests
        self.writer = StateWriter(store=self.store, state=self.state, updates=self.updates, stats=self.stats,
                                  wake=self.woken.set, monotonic=lambda: self.now)
        self.conn = Acks()
        self.gate = threading.Event()
        self.written = 0
        finish = self.store.finish_flush

        def gated(plan):  # the store thread waits for the test, then writes for real
            assert self.gate.wait(TIMEOUT), "the test never opened the gate"
            finish(plan)
            self.written += 1

        self.store.finish_flush = gated  # type: ignore[method-assign]
        self.planned = 0
        begin = self.store.begin_flush

        def counted(state, *more):
            self.planned += 1
            return begin(state, *more)

        self.store.begin_flush = counted  # type: ignore[method-assign]

    def write_done(self) -> None:
        """Open the gate for the write in flight and wait until the writer was told it is done."""
        self.gate.set()
        assert self.woken.wait(TIMEOUT), "the writer never woke the loop"
        self.woken.clear()
        self.gate.clear()

    def start(self, jobs: int = 3) -> list[int]:
        workflow = self.engine.start_workflow(engine_definition([step(1, "noop", jobs)]), {})
        return list(workflow.step(1).job_ids)

    def close(self) -> None:
        self.gate.set()
        self.writer.close()
        self.store.close()

    def on_disk(self) -> State:
        """The state as another process reads it from the files now (`stepflow status`'s way)."""
        return read_state(self.store.path)


@pytest.fixture
def rig(tmp_path: Path):
    rig = Rig(tmp_path)
    yield rig
    rig.close()


def test_an_ack_and_the_orders_wait_for_the_write_that_holds_them(rig: Rig) -> None:
    jobs = rig.start()
    rig.writer.hold(5)
    rig.writer.pump(rig.conn)
    assert rig.conn.acks == [] and rig.written == 0
    assert not any(rig.writer.durable(job_id) for job_id in jobs)
    assert rig.engine.take_outbox(10, rig.writer.durable) == []  # nothing lost: they wait at the head
    assert not rig.store.path.exists()  # the first write is still at the gate
    rig.write_done()
    rig.writer.pump(rig.conn)
    assert rig.conn.acks == [(5, True)] and rig.written == 1 and rig.stats["flushes"] == 1
    assert [job.id for job in rig.engine.take_outbox(10, rig.writer.durable)] == jobs
    assert set(jobs) <= rig.on_disk().jobs.keys()


def test_what_is_applied_during_a_write_is_acked_after_the_next_one(rig: Rig) -> None:
    jobs = rig.start()
    rig.writer.hold(5)
    rig.writer.pump(rig.conn)  # write 1 in flight
    job = rig.state.jobs[jobs[0]]
    job.progress = 50
    rig.state.mark_job(job)
    rig.writer.hold(9)
    rig.writer.pump(rig.conn)  # still in flight: nothing happens
    assert rig.conn.acks == []
    rig.write_done()
    rig.writer.pump(rig.conn)  # acks write 1's tag, starts write 2 with the job changed meanwhile
    assert rig.conn.acks == [(5, True)] and not rig.writer.durable(jobs[0]) and rig.writer.durable(jobs[1])
    rig.write_done()
    rig.writer.pump(rig.conn)
    assert rig.conn.acks == [(5, True), (9, True)] and rig.writer.durable(jobs[0])


def test_with_nothing_to_write_held_acks_go_at_once(rig: Rig) -> None:
    rig.start()
    rig.writer.pump(rig.conn)
    rig.write_done()
    rig.writer.pump(rig.conn)
    rig.writer.hold(12)  # a delivery that changed nothing (a message about an unknown job)
    rig.writer.pump(rig.conn)
    assert rig.conn.acks == [(12, True)]


def test_a_failed_write_keeps_its_acks_until_a_write_succeeds(rig: Rig) -> None:
    jobs = rig.start()
    shard_dir = rig.store.shard_dir
    shard_dir.parent.mkdir(parents=True, exist_ok=True)
    shard_dir.write_text("a file where the store's folder should be")  # every write fails, even as root
    rig.writer.hold(7)
    rig.writer.pump(rig.conn)
    rig.write_done()
    rig.writer.pump(rig.conn)  # settles the failure
    assert rig.conn.acks == [] and rig.writer.error and "nothing is acknowledged" in rig.writer.error
    assert rig.updates.last_error == rig.writer.error and not rig.writer.durable(jobs[0])
    planned = rig.planned
    rig.writer.pump(rig.conn)  # not again at once: a failing disk must not make a loop of failing writes
    assert rig.planned == planned
    rig.now += RETRY_FIRST
    rig.writer.pump(rig.conn)  # the retry: in flight, held at the gate
    assert rig.planned == planned + 1
    rig.write_done()
    rig.writer.pump(rig.conn)  # fails again (the file is still there): the next retry waits twice as long
    rig.now += RETRY_FIRST
    rig.writer.pump(rig.conn)
    assert rig.planned == planned + 1 and rig.written == 0 and rig.conn.acks == []  # waits 2 x RETRY_FIRST now
    shard_dir.unlink()  # the disk is back
    rig.now += RETRY_FIRST
    rig.writer.pump(rig.conn)
    rig.write_done()
    rig.writer.pump(rig.conn)
    assert rig.writer.error is None and rig.conn.acks == [(7, True)]
    assert any("written again" in notice for notice in rig.updates._messages)
    assert set(jobs) <= rig.on_disk().jobs.keys()


def test_a_reconnect_forgets_the_old_connections_tags(rig: Rig) -> None:
    rig.start()
    rig.writer.hold(3)
    rig.writer.pump(rig.conn)
    rig.writer.forget_acks()  # the connection was lost while the write was in flight
    rig.write_done()
    rig.writer.pump(rig.conn)
    assert rig.conn.acks == []


def test_flush_waits_for_the_write_in_flight_and_writes_the_rest(rig: Rig) -> None:
    jobs = rig.start()
    rig.writer.hold(4)
    rig.writer.pump(rig.conn)
    job = rig.state.jobs[jobs[1]]
    job.progress = 10
    rig.state.mark_job(job)
    rig.writer.hold(6)
    rig.gate.set()  # flush waits for both writes itself
    assert rig.writer.flush(rig.conn) is True
    assert rig.conn.acks == [(4, True), (6, True)] and rig.written == 2 and not rig.state.dirty
