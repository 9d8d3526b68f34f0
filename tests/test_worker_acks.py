"""The worker's acks of answered orders: one multiple ack where it settles only answered orders, never an order
still held (pure logic: a recording connection, random finishing orders)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepflow_tui.worker.loop import ack_answered
from stepflow_tui.worker.pool import Execution


class RecordingConnection:
    """Settles tags the way a channel does: a multiple ack settles every unsettled tag up to it."""

    def __init__(self, delivered: int) -> None:
        self.unsettled = set(range(1, delivered + 1))
        self.frames: list[tuple[int, bool]] = []

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        assert delivery_tag in self.unsettled, f"ack of tag {delivery_tag}, not unsettled (a channel error)"
        self.frames.append((delivery_tag, multiple))
        if multiple:
            self.unsettled -= {tag for tag in self.unsettled if tag <= delivery_tag}
        else:
            self.unsettled.discard(delivery_tag)


def held(*tags: int) -> list[Execution]:
    return [Execution(1000 + tag, "noop", None, tags=[tag]) for tag in tags]


def test_in_order_answers_are_one_multiple_ack() -> None:
    conn = RecordingConnection(5)
    ack_answered(conn, [3, 1, 2], held(4, 5))
    assert conn.frames == [(3, True)]
    assert conn.unsettled == {4, 5}


def test_answers_above_a_held_order_are_acked_one_by_one() -> None:
    conn = RecordingConnection(6)
    ack_answered(conn, [1, 2, 4, 6], held(3, 5))
    assert conn.frames == [(2, True), (4, False), (6, False)]
    assert conn.unsettled == {3, 5}


def test_a_single_answer_is_a_plain_ack() -> None:
    conn = RecordingConnection(2)
    ack_answered(conn, [1], held(2))
    assert conn.frames == [(1, False)]


@given(st.permutations(list(range(1, 31))), st.lists(st.integers(1, 30), min_size=1, max_size=12))
def test_random_finishing_orders_settle_exactly_the_answered(finish_order: list[int], cuts: list[int]) -> None:
    """Thirty orders finish in a random order, answered in random batches: after every batch the unsettled
    tags are exactly those still held."""
    conn = RecordingConnection(30)
    remaining = list(finish_order)
    for cut in [*cuts, 30]:
        batch, remaining = remaining[:cut], remaining[cut:]
        if batch:
            ack_answered(conn, batch, held(*remaining))
        assert conn.unsettled == set(remaining)
