"""Rates and recent history of each queue, from successive readings of its state (pure: no widgets).

A reading's ``published`` / ``delivered`` totals (memory broker, RabbitMQ's management API) give the rates
in and out: the difference from the reading about a `RATE_WINDOW` earlier, per second. The ready counts give
the sparkline: the deepest the queue was in each `BUCKET` of the last `BUCKETS` buckets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from rich.text import Text

from stepflow_tui.backend import QueueState

RATE_WINDOW = 60.0  # seconds: a rate over the last minute, steadier than between two polls
BUCKET = 15.0  # seconds per sparkline bar
BUCKETS = 20  # bars: the last five minutes


@dataclass(frozen=True, slots=True)
class Reading:
    at: float  # seconds (any origin; only differences count)
    ready: int
    published: int | None
    delivered: int | None


class QueueRates:
    """The readings of every queue over the last `BUCKETS` × `BUCKET` seconds."""

    def __init__(self) -> None:
        self._readings: dict[str, deque[Reading]] = {}

    def record(self, states: Iterable[QueueState], at: float) -> None:
        """Add one reading of each existing queue taken at ``at`` (seconds)."""
        horizon = at - BUCKETS * BUCKET - RATE_WINDOW
        for state in states:
            if not state.exists:
                self._readings.pop(state.name, None)
                continue
            readings = self._readings.setdefault(state.name, deque())
            if readings and readings[-1].at > at:
                continue  # a clock that went back: keep the order the maths relies on
            readings.append(Reading(at, state.ready, state.published, state.delivered))
            while len(readings) > 2 and readings[1].at < horizon:
                readings.popleft()

    def rates(self, name: str) -> tuple[float | None, float | None]:
        """Messages per second into and out of the queue over the last minute (None: unknown yet)."""
        readings = self._readings.get(name)
        if not readings or len(readings) < 2:
            return None, None
        last = readings[-1]
        first = next((r for r in readings if r.at >= last.at - RATE_WINDOW), readings[0])
        if first is last:
            first = readings[-2]  # polls further apart than the window: the last two
        elapsed = last.at - first.at
        if elapsed <= 0:
            return None, None
        return _per_second(first.published, last.published, elapsed), _per_second(first.delivered,
                                                                                   last.delivered, elapsed)

    def depth_history(self, name: str) -> list[int]:
        """The deepest ready count of each of the last `BUCKETS` buckets, oldest first (a bucket without a
        reading holds the depth of the reading before it: a queue stays as deep until read again)."""
        readings = self._readings.get(name)
        if not readings:
            return []
        end = readings[-1].at
        start = end - BUCKETS * BUCKET
        bars: list[int | None] = [None] * BUCKETS
        carried: int | None = None  # before the first reading nothing is known: no bar, not a bar at 0
        for reading in readings:
            if reading.at <= start:
                carried = reading.ready
                continue
            index = min(BUCKETS - 1, int((reading.at - start) / BUCKET))
            bars[index] = max(bars[index] or 0, reading.ready)
        history = []
        for bar in bars:
            carried = carried if bar is None else bar
            if carried is not None:
                history.append(carried)
        return history


def _per_second(before: int | None, after: int | None, elapsed: float) -> float | None:
    if before is None or after is None or after < before:  # unknown, or the queue was declared again
        return None
    return (after - before) / elapsed


def rate_text(rate: float | None) -> str:
    """``12/s``, ``0.3/s``, ``<0.1/s``, ``0``, or ``?`` when unknown."""
    if rate is None:
        return "?"
    if rate == 0:
        return "0"
    if rate < 0.05:
        return "<0.1/s"  # a few messages a minute: "0.0/s" read as none
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s"


BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int], width: int = BUCKETS) -> Text:
    """Bars from 0 to the largest value, newest on the right. Textual's Sparkline scales from the smallest
    value to the largest: a queue steady at 38,758 drew as full as one that just filled, and a lone reading
    as a full bar."""
    values = values[-width:]
    top = max(values, default=0)
    if not top:
        return Text(BARS[0] * len(values), style="dim")
    bars = "".join(BARS[0] if not value else BARS[max(1, round(value / top * (len(BARS) - 1)))]
                   for value in values)
    return Text(bars, style="yellow")
