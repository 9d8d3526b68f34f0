"""The broker interface: what the backend and the workers need from a message broker.

Two implementations: `memory.MemoryConnection` (``memory://``, in-process, the default) and
`amqp.AmqpConnection` (``amqp://`` / ``amqps://``, RabbitMQ through pika). Same semantics for both:
durable topic exchanges with alternate exchanges, per-type job queues with a dead-letter exchange, manual acks,
redelivery of unacked messages when a connection closes, per-consumer prefetch.

Threading: a `Connection` belongs to the one thread that calls `process_events`; every other method must be
called from that thread too, except `call_threadsafe`, the only door in from other threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stepflow_tui.broker import topology
from stepflow_tui.broker.cluster import CLASSIC, check_queue_type, split_urls
from stepflow_tui.broker.url import InvalidBrokerURL, parse_broker_url
from stepflow_tui.broker.url import (
    mask_url as mask_url,  # one masker for every output path; imported from here
)


class BrokerError(Exception):
    """A broker operation failed in a way retrying will not fix (bad URL, access refused, ...)."""


class TopologyConflict(BrokerError):
    """An exchange or queue exists with other arguments than ours (RabbitMQ's 406 PRECONDITION_FAILED):
    reconnecting cannot fix it, the operator must delete it (the message says how)."""


class ConnectionLost(BrokerError):
    """The connection dropped; the owner reconnects (with capped backoff) and declares again.
    Unacked deliveries of the lost connection are redelivered by the broker."""


class PublishFailed(BrokerError):
    """The broker nacked a message or returned it as unroutable; nothing of the batch may be assumed sent."""


@dataclass(slots=True)
class OutgoingMessage:
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] | None = None
    persistent: bool = True  # delivery_mode 2
    content_type: str = "application/json"
    expiration_ms: int | None = None  # per-message TTL: a status poll nobody takes must not pile up


@dataclass(slots=True)
class Delivery:
    queue: str
    body: bytes
    delivery_tag: int
    routing_key: str = ""
    exchange: str = ""
    redelivered: bool = False
    headers: dict[str, Any] = field(default_factory=dict)  # incl. ``x-death`` for dead letters


@dataclass(slots=True)
class QueueState:
    name: str
    exists: bool
    ready: int = 0  # messages waiting
    #: delivered, not acked; None when unknown (RabbitMQ's passive declare cannot tell, its management API can)
    unacked: int | None = 0
    consumers: int = 0
    #: messages routed to the queue and delivered from it since it was declared; None when unknown. Rates
    #: are the difference of two readings (the memory broker counts them, RabbitMQ's management API tells).
    published: int | None = None
    delivered: int | None = None


MessageHandler = Callable[[Delivery], None]


class Connection(ABC):
    """One connection to a broker, owned by one thread."""

    url: str
    #: True when queued messages survive a restart of this process (RabbitMQ); False for ``memory://``.
    durable: bool
    #: True when `queue_states` knows the unacked counts (memory://); RabbitMQ's passive declares report 0.
    counts_unacked: bool = False
    #: ``x-queue-type`` of the queues the backend owns (`cluster.QUEUE_TYPES`); set by `connect`.
    queue_type: str = "classic"
    #: The node this connection reached (masked URL): one of a cluster's, or the only one.
    node: str = ""

    def declare_backend_topology(self) -> None:
        """Declare the exchanges and response queues of `topology` (never the job queues)."""
        self._declare(topology.EXCHANGES, topology.with_queue_type(topology.BACKEND_QUEUES, self.queue_type))

    def declare_job_queue(self, job_type: str) -> str:
        """Declare and bind ``job_<type>`` (durable, with the dead-letter exchange); return the queue name.
        Also declares the exchanges it binds to, so a worker may start before any backend."""
        exchanges, queues = topology.worker_topology(job_type, self.queue_type)
        self._declare(exchanges, queues)
        return topology.job_queue(job_type)

    def declare_direct_queue(self, instance_id: str, job_types: Sequence[str]) -> str:
        """Declare the auto-delete ``direct_messaging_<instance_id>`` queue bound to ``direct_messaging``
        (headers: ``instance_id`` = this id, or ``broadcast`` = true, or ``job_type`` in job_types)."""
        spec = topology.direct_queue_spec(instance_id, job_types)
        exchanges, queues = topology.direct_topology(spec)
        # its catch queue of the backend's type (the direct queue itself is auto-delete: always classic)
        self._declare(exchanges, topology.with_queue_type(queues, self.queue_type))
        return spec.name

    def dead_letter(self, delivery: Delivery, reason: str = "rejected") -> None:
        """Put a delivery in ``job_dead_letter`` for good (with an ``x-death`` naming its queue, as RabbitMQ
        writes it), then ack it. For a job order: rejecting it would send it through ``job_delayed`` back to
        its queue for ever (the SDK's job queue arguments)."""
        headers = with_death(delivery.headers, delivery.queue, reason, delivery.exchange, delivery.routing_key)
        self.publish([OutgoingMessage(topology.JOB_DEAD_LETTER, delivery.routing_key, delivery.body,
                                      headers=headers)])
        self.ack(delivery.delivery_tag)

    @abstractmethod
    def _declare(self, exchanges: Sequence[topology.ExchangeSpec], queues: Sequence[topology.QueueSpec]) -> None:
        """Declare these `topology.ExchangeSpec`s, then these `topology.QueueSpec`s with their bindings."""

    @abstractmethod
    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish a batch and wait until the broker confirmed all of it (publisher confirms or a
        transaction). Raises `PublishFailed` or `ConnectionLost`."""

    @abstractmethod
    def consume(self, queue: str, on_message: MessageHandler, prefetch: int = 0) -> str:
        """Start consuming ``queue``; ``on_message`` is called from `process_events`. ``prefetch`` bounds the
        unacked deliveries of this consumer (0 = unbounded). Returns a consumer tag."""

    @abstractmethod
    def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; its unacked deliveries stay unacked until acked/rejected or the connection ends."""

    @abstractmethod
    def ack(self, delivery_tag: int, multiple: bool = False) -> None: ...

    @abstractmethod
    def reject(self, delivery_tag: int, requeue: bool = False) -> None:
        """``requeue=False`` dead-letters the message to its queue's dead-letter exchange (``job_delayed`` for a
        job queue: back in 5 s; ``job_dead_letter`` for a response queue). See `dead_letter` for good."""

    @abstractmethod
    def process_events(self, timeout: float) -> None:
        """Dispatch deliveries and thread-safe callbacks for up to ``timeout`` seconds (returns earlier
        once something was dispatched). Raises `ConnectionLost`."""

    @abstractmethod
    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        """From any thread: run ``callback`` in the owning thread, inside `process_events`."""

    @abstractmethod
    def queue_states(self, names: Sequence[str]) -> list[QueueState]:
        """Passive look at each queue; a queue that does not exist gives ``exists=False``."""

    @abstractmethod
    def get(self, queue: str) -> Delivery | None:
        """Take one message without a consumer (basic_get, manual ack), or None when empty."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Drop every ready message of ``queue``; return how many."""

    @abstractmethod
    def close(self) -> None:
        """Close; unacked deliveries go back to their queues (redelivered=True). Idempotent."""


def with_death(headers: dict[str, Any] | None, queue: str, reason: str, exchange: str,
               routing_key: str) -> dict[str, Any]:
    """``headers`` plus one more death in ``queue`` (RabbitMQ's ``x-death`` format, newest first: a second death
    in the same queue for the same reason counts up) and the ``x-first-death-*`` headers."""
    result = dict(headers or {})
    deaths = [dict(d) for d in result.get("x-death") or [] if isinstance(d, dict)]
    now = datetime.now(UTC).replace(microsecond=0)  # an AMQP timestamp, as RabbitMQ writes it (pika has no float)
    for i, death in enumerate(deaths):
        if death.get("queue") == queue and death.get("reason") == reason:
            death["count"] = (death.get("count") or 1) + 1
            death["time"] = now
            deaths.insert(0, deaths.pop(i))
            break
    else:
        deaths.insert(0, {"count": 1, "reason": reason, "queue": queue, "time": now,
                          "exchange": exchange, "routing-keys": [routing_key]})
    result["x-death"] = deaths
    result.setdefault("x-first-death-exchange", exchange)
    result.setdefault("x-first-death-queue", queue)
    result.setdefault("x-first-death-reason", reason)
    return result


def connect(url: str, *, name: str = "stepflow", queue_type: str = CLASSIC) -> Connection:
    """Open a connection for ``url``: ``memory://[name]`` or ``amqp[s]://user:pass@host:port/vhost``, or a
    cluster's node URLs separated by commas (tried in turn, see `cluster`). ``queue_type`` is the
    ``x-queue-type`` of the queues the backend owns. Raises `BrokerError` for a URL that cannot be used,
    `ConnectionLost` when no node can be reached."""
    try:
        check_queue_type(queue_type)
    except ValueError as exc:
        raise BrokerError(str(exc)) from None
    conn = _open(url, name)
    conn.queue_type = queue_type
    return conn


def _open(url: str, name: str) -> Connection:
    nodes = split_urls(url)
    try:
        schemes = {parse_broker_url(node).scheme for node in nodes}
    except InvalidBrokerURL as exc:
        raise BrokerError(str(exc)) from None
    if len(nodes) > 1 and not schemes <= {"amqp", "amqps"}:
        raise BrokerError(f"broker {mask_url(url)!r}: several addresses are for a RabbitMQ cluster (amqp:// or "
                          "amqps:// each)")
    scheme = parse_broker_url(nodes[0]).scheme
    if scheme == "memory":
        from stepflow_tui.broker.memory import MemoryConnection

        return MemoryConnection(url, name=name)
    from stepflow_tui.broker.amqp import AmqpConnection

    return AmqpConnection(url, name=name)
