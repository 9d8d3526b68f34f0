"""The workbench's garbage-collection policy: full collections wait for a pause in the operator's input."""

from __future__ import annotations

import gc

import pytest

from stepflow_tui.tui.collector import NEVER, IdleCollector, saved_threshold


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def collector():
    clock = Clock()
    collector = IdleCollector(idle_after=1.0, at_most=60.0, clock=clock)
    before = gc.get_threshold()
    collector.start()
    yield collector, clock
    collector.stop()
    assert gc.get_threshold() == before


def young_collections(n: int) -> None:
    for _ in range(n):
        gc.collect(1)  # each adds one to the count the full collection waits for


def test_start_leaves_young_collections_automatic_and_stop_restores(collector):
    collector_, _clock = collector
    threshold = gc.get_threshold()
    assert threshold[2] == NEVER and threshold[:2] == saved_threshold()[:2]
    assert collector_.active


def test_a_full_collection_waits_for_idle_input_and_enough_young_collections(collector):
    collector_, clock = collector
    gc.collect()
    clock.now += 5
    assert not collector_.due()  # idle, but nothing survived enough young collections yet
    young_collections(saved_threshold()[2])
    collector_.input_seen()
    clock.now += 0.5
    assert not collector_.due()  # the operator is typing
    assert not collector_.tick()
    clock.now += 0.6
    assert collector_.due()
    assert collector_.tick() and collector_.collections == 1
    assert gc.get_count()[2] == 0
    assert not collector_.due()


def test_non_stop_input_still_gets_a_full_collection_after_at_most(collector):
    collector_, clock = collector
    for _ in range(70):
        clock.now += 1
        collector_.input_seen()
        if collector_.tick():
            break
    assert collector_.collections == 1 and clock.now - 1000.0 == 60


def test_nothing_runs_once_stopped():
    clock = Clock()
    collector = IdleCollector(clock=clock)
    clock.now += 3600
    assert not collector.due()  # never started: the interpreter's own policy holds


def test_collectors_stopped_in_any_order_give_the_thresholds_back():
    before = gc.get_threshold()
    first, second = IdleCollector(), IdleCollector()
    first.start()
    second.start()
    assert saved_threshold() == before
    first.stop()
    assert gc.get_threshold()[2] == NEVER  # the second still holds them, and still knows the real ones
    assert saved_threshold() == before
    second.stop()
    second.stop()  # twice: no effect
    assert gc.get_threshold() == before and saved_threshold() is None
