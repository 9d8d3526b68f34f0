"""Operations: dead letters (look, redrive) and pruning old workflows. Pure logic over a broker `Connection`
and a `Store`; no Textual, no printing (the CLI and the workbench present the results).

    letters = peek_dead_letters(conn, limit=20)        # nothing consumed: close the connection afterwards
    report = redrive(conn, queue="job_checksum", dry_run=True)   # report.planned {"job_checksum": 3}
    report = redrive(conn)                               # report.redriven, report.unredrivable, report.failed
    result = prune(db_path, older_than=parse_age("30d"), dry_run=False)

Both broker functions work on any connection, including the backend's own: every message they take with
``basic_get`` is settled before they return (acked once republished, else requeued in its original order),
so a later ``ack(multiple=True)`` of the owner can never settle one of them by accident.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import BrokerError, Connection, Delivery, OutgoingMessage, PublishFailed

#: Key of `RedriveReport.counts` for messages without an ``x-death`` header: they cannot be sent back.
NO_ORIGIN = "(no x-death)"
EXCERPT_CHARS = 100
#: Messages looked at in one call (held unacked meanwhile); run again for more.
MAX_MESSAGES = 100_000
#: Headers the broker adds when it dead-letters a message: dropped on redrive, the broker adds them again
#: if the message dies again.
_DEATH_HEADERS = re.compile(r"^x-(death|first-death-.*|last-death-.*)$")


# ------------------------------------------------------------------------------------------ dead letters
@dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to know about one message of ``job_dead_letter`` (from its ``x-death``)."""

    position: int  # 0 = the oldest, the next one the queue would deliver
    original_queue: str | None  # the queue it died in (x-death[0].queue), None without x-death
    reason: str | None  # rejected, expired, maxlen, delivery_limit
    count: int  # how many times it died there for that reason
    time: str | None  # of its latest death, UTC ISO 8601
    exchange: str | None  # where it was published before dying (x-death[0].exchange)
    routing_keys: tuple[str, ...]
    routing_key: str  # its routing key in job_dead_letter
    excerpt: str  # the first EXCERPT_CHARS characters of the body, control characters escaped
    size: int  # body length in bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``stepflow dead-letters --json``)."""
        return {"position": self.position, "original_queue": self.original_queue, "reason": self.reason,
                "count": self.count, "time": self.time, "exchange": self.exchange,
                "routing_keys": list(self.routing_keys), "routing_key": self.routing_key,
                "excerpt": self.excerpt, "size": self.size}


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The start of a body as one safe line: invalid UTF-8 as ``\\xNN``, control characters escaped (a
    malformed message must not drive the operator's terminal), ``…`` when cut."""
    text = body.decode("utf-8", errors="backslashreplace")
    cut = len(text) > limit
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text[:limit])
    return shown + ("…" if cut else "")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _iso(value: Any) -> str | None:
    """x-death ``time``: a datetime from pika (naive UTC), a float from the embedded broker."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe_dead_letter(delivery: Delivery, position: int = 0) -> DeadLetter:
    """Read a dead-lettered message's latest death (``x-death`` is newest first)."""
    deaths = delivery.headers.get("x-death") if delivery.headers else None
    death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else None
    if death is None:
        return DeadLetter(position, None, None, 0, None, None, (), delivery.routing_key, excerpt(delivery.body),
                          len(delivery.body))
    keys = death.get("routing-keys") or ()
    return DeadLetter(
        position=position,
        original_queue=_text(death["queue"]) if death.get("queue") is not None else None,
        reason=_text(death["reason"]) if death.get("reason") is not None else None,
        count=int(death.get("count") or 1),
        time=_iso(death.get("time")),
        exchange=_text(death["exchange"]) if death.get("exchange") is not None else None,
        routing_keys=tuple(_text(k) for k in keys) if isinstance(keys, list | tuple) else (),
        routing_key=delivery.routing_key,
        excerpt=excerpt(delivery.body),
        size=len(delivery.body),
    )


def dead_letter_count(conn: Connection) -> int | None:
    """Ready messages in ``job_dead_letter``, or None when the queue does not exist (nothing declared yet)."""
    (state,) = conn.queue_states([topology.JOB_DEAD_LETTER])
    return state.ready if state.exists else None


def _take(conn: Connection, limit: int) -> list[Delivery]:
    """basic_get up to ``limit`` messages of job_dead_letter, oldest first, holding them all unacked (so
    none comes round twice). Not bounded by a prior count: a passive declare on another channel may not see
    messages this connection just requeued yet, while a get on the same channel always does."""
    taken: list[Delivery] = []
    while len(taken) < limit:
        delivery = conn.get(topology.JOB_DEAD_LETTER)
        if delivery is None:
            break
        taken.append(delivery)
    return taken


def peek_dead_letters(conn: Connection, limit: int | None = None) -> list[DeadLetter]:
    """The first ``limit`` dead letters (all when None), oldest first, without consuming them: each is taken
    with basic_get and requeued (newest first, so the queue keeps its order) before returning."""
    if dead_letter_count(conn) is None:
        return []
    taken: list[Delivery] = []
    try:
        taken = _take(conn, MAX_MESSAGES if limit is None else limit)
        return [describe_dead_letter(d, i) for i, d in enumerate(taken)]
    finally:
        _requeue(conn, [d.delivery_tag for d in taken])


def _requeue(conn: Connection, tags: list[int]) -> None:
    # Newest first: the embedded broker puts a requeued message at the front (RabbitMQ puts it back at its
    # original position either way), so the oldest ends up first again.
    for tag in reversed(tags):
        try:
            conn.reject(tag, requeue=True)
        except BrokerError:
            return  # the connection is gone: the broker requeues every unacked message by itself


def republished(delivery: Delivery, letter: DeadLetter) -> OutgoingMessage:
    """The message as it was before it died: to x-death's exchange with its first routing key (the default
    exchange to the queue itself when x-death does not say), persistent, headers without the death records."""
    if letter.exchange is not None and letter.routing_keys:
        exchange, routing_key = letter.exchange, letter.routing_keys[0]
    else:
        exchange, routing_key = "", letter.original_queue or ""
    headers = {k: v for k, v in (delivery.headers or {}).items() if not _DEATH_HEADERS.match(k)}
    return OutgoingMessage(exchange, routing_key, delivery.body, headers=headers or None, persistent=True)


def queue_matches(original: str | None, wanted: str) -> bool:
    """``--queue checksum`` and ``--queue job_checksum`` both name ``job_checksum``."""
    return original is not None and original in (wanted, topology.job_queue(wanted))


@dataclass
class RedriveReport:
    """What `redrive` found and did. Counts are per original queue."""

    dry_run: bool
    planned: Counter[str] = field(default_factory=Counter)  # would be / were meant to be sent back
    redriven: Counter[str] = field(default_factory=Counter)  # republished (confirmed) and acked
    skipped: Counter[str] = field(default_factory=Counter)  # from other queues than --queue: left in place
    unredrivable: list[DeadLetter] = field(default_factory=list)  # no x-death: left in place
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)  # republish refused: left in place

    def counts(self) -> dict[str, int]:
        """Per original queue: planned (dry run) or redriven messages; plus `NO_ORIGIN` for those without
        x-death. What `Backend.redrive_dead_letters` resolves to."""
        counts = dict(self.planned if self.dry_run else self.redriven)
        if self.unredrivable:
            counts[NO_ORIGIN] = len(self.unredrivable)
        return counts


def redrive(conn: Connection, queue: str | None = None, dry_run: bool = False) -> RedriveReport:
    """Send the dead letters (those of original queue ``queue`` only, when given) back where they died.

    First every message is taken (held unacked, at most `MAX_MESSAGES`), then each is republished on its own
    (confirmed) and acked from ``job_dead_letter`` only then: a message that dies again meanwhile arrives after
    the taking ended and is not redriven twice. A message without x-death, of another queue, or whose
    republish fails stays, in its place. ``dry_run``: count only. Raises `BrokerError` when
    ``job_dead_letter`` does not exist, `ConnectionLost` if the connection drops (what was not acked yet
    returns to the queue)."""
    if dead_letter_count(conn) is None:
        raise BrokerError(f"no queue {topology.JOB_DEAD_LETTER!r}: nothing was ever dead-lettered here")
    report = RedriveReport(dry_run)
    taken: list[Delivery] = []
    acked: set[int] = set()
    try:
        taken = _take(conn, MAX_MESSAGES)
        for position, delivery in enumerate(taken):
            letter = describe_dead_letter(delivery, position)
            if letter.original_queue is None:
                report.unredrivable.append(letter)
                continue
            if queue is not None and not queue_matches(letter.original_queue, queue):
                report.skipped[letter.original_queue] += 1
                continue
            report.planned[letter.original_queue] += 1
            if dry_run:
                continue
            try:
                conn.publish([republished(delivery, letter)])
            except PublishFailed as exc:
                report.failed.append((letter, str(exc)))
                continue
            conn.ack(delivery.delivery_tag)  # only now: the broker holds the republished copy
            acked.add(delivery.delivery_tag)
            report.redriven[letter.original_queue] += 1
    finally:
        # everything not sent back returns to its place, also when something failed half-way
        _requeue(conn, [d.delivery_tag for d in taken if d.delivery_tag not in acked])
    return report


def redrive_summary(counts: dict[str, int]) -> tuple[int, str]:
    """(messages to send back, one line per original queue) for a confirmation: from `RedriveReport.counts`."""
    movable = {q: n for q, n in counts.items() if q != NO_ORIGIN}
    lines = [f"{n:>6}  {q}" for q, n in sorted(movable.items())]
    if counts.get(NO_ORIGIN):
        lines.append(f"{counts[NO_ORIGIN]:>6}  without x-death: cannot be sent back, they stay")
    return sum(movable.values()), "\n".join(lines)


# ------------------------------------------------------------------------------------------ prune
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """``"30d"`` -> seconds. Units: s, m, h, d. Raises ValueError with a message for the user."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"--older-than {text!r}: expected a number and a unit s, m, h or d (e.g. 30d, 12h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def prunable(state: Any, older_than: float, now: datetime) -> list[int]:
    """Ids of finished workflows (completed, error, aborted) whose ``finished_at`` (``updated_at`` if it is
    missing) is more than ``older_than`` seconds before ``now``."""
    found = []
    for workflow in state.workflows.values():
        if not workflow.finished:
            continue
        finished = _parse_time(workflow.finished_at) or _parse_time(workflow.updated_at)
        if finished is not None and (now - finished).total_seconds() > older_than:
            found.append(workflow.id)
    return sorted(found)


def state_size(path: str | Path) -> int:
    """Bytes of a state: the index, its job shards and definitions (not the lock file or corrupt copies)."""
    path = Path(path)
    total = path.stat().st_size if path.exists() else 0
    shards = path.with_name(path.name + ".d")
    if shards.is_dir():
        total += sum(p.stat().st_size for p in shards.glob("*.json"))  # jobs-<n>.json, definition-<w>.json
    return total


@dataclass(frozen=True)
class PruneResult:
    workflow_ids: tuple[int, ...]
    jobs: int
    size_before: int
    size_after: int
    dry_run: bool


def prune(db_path: str | Path, older_than: float, *, dry_run: bool = False,
          now: Callable[[], datetime] | None = None) -> PruneResult:
    """Delete finished workflows older than ``older_than`` seconds, and their jobs, through `Engine.delete`
    (the store drops their shards' jobs). Owns the state file while it works (`StoreLocked` if another
    process has it); a dry run only reads it."""
    from stepflow_tui.core.engine import Engine
    from stepflow_tui.store import Store, read_state

    moment = (now or (lambda: datetime.now(UTC)))()
    before = state_size(db_path)
    if dry_run:
        state = read_state(db_path)
        ids = prunable(state, older_than, moment)
        jobs = sum(len(s.job_ids) for i in ids for s in state.workflows[i].steps)
        return PruneResult(tuple(ids), jobs, before, before, True)
    store = Store(db_path)
    state = store.open()
    try:
        engine = Engine(state)
        ids = prunable(state, older_than, moment)
        jobs = 0
        with store.lock:
            for workflow_id in ids:
                jobs += sum(1 for s in state.workflows[workflow_id].steps for j in s.job_ids if j in state.jobs)
                engine.delete(workflow_id)
        store.flush(state)
    finally:
        store.close()
    return PruneResult(tuple(ids), jobs, before, state_size(db_path), False)


def human_size(size: int) -> str:
    """``1536`` -> ``1.5 KB``."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
