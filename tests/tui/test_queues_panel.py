"""The queues panel: busiest first, rates from successive readings, the recent depth, unacked unknown as "?"."""

from __future__ import annotations

from stepflow_tui.backend import QueueState
from stepflow_tui.tui.queue_rates import BUCKET, QueueRates, rate_text, sparkline
from stepflow_tui.tui.widgets.queues import QueuesPanel, queue_order

from .fakes import NOW, FakeBackend
from .helpers import make_app, settle

T = NOW.timestamp()


def job_queue(ready: int, published: int | None = None, delivered: int | None = None) -> QueueState:
    return QueueState("job_x", True, ready, 0, 1, published=published, delivered=delivered)


def test_rates_are_the_totals_difference_over_the_last_minute():
    rates = QueueRates()
    rates.record([job_queue(0, 0, 0)], 0.0)
    assert rates.rates("job_x") == (None, None)  # one reading: nothing to compare yet
    rates.record([job_queue(10, 600, 480)], 60.0)
    assert rates.rates("job_x") == (10.0, 8.0)
    rates.record([job_queue(10, 600, 480)], 120.0)  # nothing moved for a minute
    assert rates.rates("job_x") == (0.0, 0.0)


def test_rates_are_unknown_without_totals_or_after_a_redeclare():
    rates = QueueRates()
    rates.record([job_queue(5)], 0.0)
    rates.record([job_queue(9)], 30.0)
    assert rates.rates("job_x") == (None, None)
    rates.record([job_queue(0, 100, 100)], 40.0)
    rates.record([job_queue(0, 3, 3)], 50.0)  # counters went back: the queue was declared again
    assert rates.rates("job_x") == (None, None)


def test_depth_history_has_one_bar_per_bucket_carrying_the_last_depth():
    rates = QueueRates()
    for n, ready in enumerate([4, 8, 2]):
        rates.record([job_queue(ready)], n * 2 * BUCKET)
    assert rates.depth_history("job_x") == [4, 4, 8, 2]  # from the first reading on, no invented zeros
    assert str(sparkline([0, 4, 8])) == "▁▅█"
    assert str(sparkline([0, 0])) == "▁▁"


def test_rate_text():
    assert [rate_text(r) for r in (None, 0, 0.01, 0.25, 12.4, 1500)] == ["?", "0", "<0.1/s", "0.2/s", "12/s",
                                                                         "1,500/s"]


def test_order_puts_lost_and_dead_messages_first_then_the_busiest():
    states = [QueueState("job_a", True, 5, 1, 1), QueueState("job_b", True, 900, None, 1),
              QueueState("job_dead_letter", True, 0, 0, 0), QueueState("job_queue_not_found", True, 3, 0, 0),
              QueueState("job_completed", True, 0, 0, 1), QueueState("job_c", True, 0, 0, 1)]
    names = [s.name for s in sorted(states, key=queue_order)]
    assert names == ["job_queue_not_found", "job_b", "job_a", "job_c", "job_dead_letter", "job_completed"]
    dead = QueueState("job_dead_letter", True, 1, 0, 0)
    assert sorted([states[1], dead], key=queue_order)[0] is dead


class CountingBackend(FakeBackend):
    """Queues with totals and an unknown unacked count, as RabbitMQ without its management API."""

    def queue_states(self) -> list[QueueState]:
        return [QueueState(s.name, s.exists, s.ready, None if s.name == "job_checksum" else s.unacked,
                           s.consumers, published=1000 + s.ready, delivered=900) for s in super().queue_states()]


async def test_unknown_unacked_shows_a_question_mark_never_zero():
    app = make_app(CountingBackend())
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        panel = app.main_screen.query_one(QueuesPanel)
        row = panel.get_row("job_checksum")
        assert str(row[2]) == "?"
        assert panel.cursor_queue == "job_dead_letter"  # it holds messages: first
        assert [str(key.value) for key in list(panel.rows)][1] == "job_sleep"  # the busiest job queue next
