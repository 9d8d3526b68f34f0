"""Time, in one place: the one timestamp format of the state and the wire, its parsing, and the monotonic clock.

Every time the engine records (histories, ``created_at``, ``finished_at``…) is ISO 8601 in UTC with
microseconds and a ``Z``: ``2026-11-27T10:00:05.123456Z``. Text in that format sorts as the times it names, so
the store compares such strings directly. Durations and deadlines use the monotonic clock, never wall time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

#: The one timestamp format (``strptime`` / ``strftime``): what `utc_now` and `format_time` give.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

#: Seconds on a clock that never goes back: for deadlines and durations (retry delays, timeout guards).
monotonic = time.monotonic

#: (second, its text up to the seconds): strftime is slow, and the engine takes the time several times a job.
_second_text: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The current time in `TIME_FORMAT`."""
    global _second_text
    now = time.time()
    second = int(now)
    cached = _second_text
    if cached[0] != second:
        cached = _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"


def format_time(moment: datetime) -> str:
    """A datetime (UTC) in `TIME_FORMAT`."""
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond:06d}Z")


def parse_time(text: str) -> datetime | None:
    """A time in `TIME_FORMAT` (or any ISO 8601 text ending in ``Z``) as an aware UTC datetime; None if it is
    not one."""
    if not text.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError:
        return None


def seconds_before(when: str, seconds: float) -> str:
    """``when`` (a `TIME_FORMAT` time) moved back by ``seconds``; ``when`` itself if it is not in that format."""
    # Within the same second (a short job's start from its result): only the microseconds change. Parsing and
    # formatting a datetime was ~5 % of the backend's time per result in bench/throughput.py.
    if len(when) == 27 and when[19] == "." and when[26] == "Z" and when[20:26].isdigit():
        try:
            back = round(max(0.0, float(seconds)) * 1_000_000)
        except (ValueError, OverflowError):  # NaN, infinity
            return when
        micros = int(when[20:26])
        if back <= micros:
            return f"{when[:20]}{micros - back:06d}Z"
    moment = parse_time(when)
    if moment is None:
        return when
    try:
        return format_time(moment - timedelta(seconds=max(0.0, float(seconds))))
    except (ValueError, OverflowError):  # a duration beyond the calendar
        return when


def file_stamp() -> str:
    """The current UTC time for a file name (no colons): ``20261127T100005``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())
