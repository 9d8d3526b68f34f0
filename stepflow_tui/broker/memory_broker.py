"""The embedded broker's model (``memory://``): exchanges, queues, bindings, routing and dead-lettering.

`MemoryBroker` holds the shared state of one broker; `memory.MemoryConnection` is the `Connection` to it and
the only caller. Every method of `MemoryBroker` but `for_url` and `drop` expects its `lock` held.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import BrokerError, MessageHandler
from stepflow_tui.broker.topology import ExchangeSpec, QueueSpec

if TYPE_CHECKING:
    from stepflow_tui.broker.memory import MemoryConnection


def broker_name(url: str) -> str:
    """The broker a ``memory://`` URL names: ``memory://`` -> ``default``, ``memory://other`` -> ``other``."""
    parts = urlsplit(url)
    if parts.scheme != "memory":
        raise BrokerError(f"not a memory:// broker URL: {url!r}")
    return (parts.netloc + parts.path).strip("/") or "default"


@lru_cache(maxsize=8192)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: words separated by ``.``, ``*`` is exactly one word, ``#`` is zero or more."""
    return _match_words(
        tuple(pattern.split(".")) if pattern else (), tuple(routing_key.split(".")) if routing_key else ()
    )


def _match_words(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head = pattern[0]
    if head == "#":
        # "#" swallows nothing, or one more word and stays.
        return _match_words(pattern[1:], words) or (bool(words) and _match_words(pattern, words[1:]))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match_words(pattern[1:], words[1:])


def headers_match(binding_arguments: dict[str, Any], headers: dict[str, Any] | None) -> bool:
    """A headers-exchange binding: ``x-match`` ``all`` (default) or ``any`` over the non-``x-`` arguments."""
    wanted = {k: v for k, v in binding_arguments.items() if not k.startswith("x-")}
    headers = headers or {}
    hits = (k in headers and headers[k] == v for k, v in wanted.items())
    if binding_arguments.get("x-match", "all") == "any":
        return any(hits)
    return all(hits)


class Message:
    """A message in a queue (or unacked): shared by every queue it was routed to."""

    __slots__ = ("body", "exchange", "routing_key", "headers", "redelivered")

    def __init__(self, body: bytes, exchange: str, routing_key: str, headers: dict[str, Any] | None) -> None:
        self.body = body
        self.exchange = exchange
        self.routing_key = routing_key
        self.headers = headers
        self.redelivered = False


class Exchange:
    """A declared exchange and its bindings."""

    __slots__ = ("spec", "bindings")

    def __init__(self, spec: ExchangeSpec) -> None:
        self.spec = spec
        self.bindings: list[tuple[str, str, dict[str, Any]]] = []  # (queue, routing key, arguments)


class Consumer:
    """A consumer of a queue, on the connection whose inbox receives its deliveries."""

    __slots__ = ("tag", "queue", "handler", "prefetch", "connection", "unacked", "active")

    def __init__(
        self, tag: str, queue: Queue, handler: MessageHandler, prefetch: int, connection: MemoryConnection
    ):
        self.tag = tag
        self.queue = queue
        self.handler = handler
        self.prefetch = prefetch
        self.connection = connection
        self.unacked = 0
        self.active = True

    def has_room(self) -> bool:
        """Whether the prefetch limit allows one more unacked delivery."""
        return self.prefetch <= 0 or self.unacked < self.prefetch


class Queue:
    """A declared queue: ready messages, consumers (round-robin) and the count of unacked deliveries."""

    __slots__ = ("spec", "messages", "consumers", "next_consumer", "unacked", "owner", "deleted", "published",
                 "delivered")

    def __init__(self, spec: QueueSpec, owner: MemoryConnection | None) -> None:
        self.spec = spec
        self.messages: deque[Message] = deque()
        self.consumers: list[Consumer] = []
        self.next_consumer = 0  # round-robin position
        self.unacked = 0
        self.owner = owner  # the declaring connection of an exclusive queue
        self.deleted = False
        self.published = 0  # messages routed here since it was declared (RabbitMQ's message_stats.publish)
        self.delivered = 0  # deliveries and gets, redeliveries included (message_stats.deliver_get)


class MemoryBroker:
    """The shared state of one ``memory://`` broker. Use `MemoryBroker.for_url`; every method takes `lock`."""

    _registry: dict[str, MemoryBroker] = {}
    _registry_lock = threading.Lock()

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}

    @classmethod
    def for_url(cls, url: str) -> MemoryBroker:
        """The process-global broker of ``url`` (created on first use)."""
        name = broker_name(url)
        with cls._registry_lock:
            broker = cls._registry.get(name)
            if broker is None:
                broker = cls._registry[name] = cls(name)
            return broker

    @classmethod
    def drop(cls, url: str) -> None:
        """Forget the broker of ``url`` and everything queued in it (tests; a fresh start)."""
        with cls._registry_lock:
            cls._registry.pop(broker_name(url), None)

    # --- declarations (caller holds the lock) -------------------------------------------------------------

    def declare_exchange(self, spec: ExchangeSpec) -> None:
        """Create the exchange, or check that it exists with the same settings."""
        existing = self.exchanges.get(spec.name)
        if existing is None:
            self.exchanges[spec.name] = Exchange(spec)
        elif (existing.spec.type, existing.spec.arguments) != (spec.type, spec.arguments):
            raise BrokerError(
                f"exchange {spec.name!r} exists with other settings ({existing.spec.type}, {existing.spec.arguments})"
                f" than declared ({spec.type}, {spec.arguments}): PRECONDITION_FAILED"
            )

    def declare_queue(self, spec: QueueSpec, owner: MemoryConnection) -> None:
        """Create the queue (or check its settings) and add its bindings."""
        existing = self.queues.get(spec.name)
        if existing is None:
            self.queues[spec.name] = Queue(spec, owner if spec.exclusive else None)
        else:
            old = existing.spec
            if (old.durable, old.auto_delete, old.exclusive, old.arguments) != (
                spec.durable,
                spec.auto_delete,
                spec.exclusive,
                spec.arguments,
            ):
                raise BrokerError(
                    f"queue {spec.name!r} exists with other settings than declared: PRECONDITION_FAILED"
                )
            if existing.owner is not None and existing.owner is not owner:
                raise BrokerError(f"queue {spec.name!r} is exclusive to another connection: RESOURCE_LOCKED")
        for binding in spec.bindings:
            exchange = self.exchanges.get(binding.exchange)
            if exchange is None:
                raise BrokerError(f"cannot bind queue {spec.name!r}: no exchange {binding.exchange!r}")
            entry = (spec.name, binding.routing_key, dict(binding.arguments))
            if entry not in exchange.bindings:
                exchange.bindings.append(entry)

    def delete_queue(self, q: Queue) -> None:
        """Drop a queue, its ready messages and its bindings (unacked copies are dropped when settled)."""
        if self.queues.get(q.spec.name) is q:
            del self.queues[q.spec.name]
        q.deleted = True
        q.messages.clear()
        for exchange in self.exchanges.values():
            exchange.bindings = [b for b in exchange.bindings if b[0] != q.spec.name]

    # --- routing ------------------------------------------------------------------------------------------

    def route(
        self, exchange_name: str, routing_key: str, headers: dict[str, Any] | None
    ) -> list[Queue] | None:
        """The queues a message reaches (following alternate exchanges), or None if the exchange is missing."""
        if exchange_name == "":
            q = self.queues.get(routing_key)  # the default exchange: direct to the queue of that name
            return [q] if q is not None else []
        exchange = self.exchanges.get(exchange_name)
        if exchange is None:
            return None
        seen = {exchange_name}
        while True:
            names = self._bound_queues(exchange, routing_key, headers)
            if names:
                return [self.queues[n] for n in names if n in self.queues]
            alternate = exchange.spec.alternate_exchange
            if not alternate or alternate in seen or alternate not in self.exchanges:
                return []
            seen.add(alternate)
            exchange = self.exchanges[alternate]

    @staticmethod
    def _bound_queues(exchange: Exchange, routing_key: str, headers: dict[str, Any] | None) -> list[str]:
        kind = exchange.spec.type
        found: dict[str, None] = {}  # ordered set: a queue bound twice gets one copy
        for queue_name, key, arguments in exchange.bindings:
            if kind == topology.FANOUT:
                hit = True
            elif kind == topology.HEADERS:
                hit = headers_match(arguments, headers)
            elif kind == topology.TOPIC:
                hit = (
                    key == routing_key
                    if ("*" not in key and "#" not in key)
                    else topic_matches(key, routing_key)
                )
            else:  # direct
                hit = key == routing_key
            if hit:
                found[queue_name] = None
        return list(found)

    def enqueue(self, q: Queue, message: Message, front: bool = False) -> None:
        """Add a ready message to a queue (at its front for a requeue); nothing if the queue is deleted."""
        if q.deleted:
            return
        if front:
            q.messages.appendleft(message)
        else:
            q.published += 1
            q.messages.append(message)

    def dispatch(self, q: Queue) -> None:
        """Hand ready messages to consumers with room, round-robin."""
        messages, consumers = q.messages, q.consumers
        while messages and consumers:
            count = len(consumers)
            start = q.next_consumer % count
            for i in range(count):
                consumer = consumers[(start + i) % count]
                if consumer.has_room():
                    q.next_consumer = (start + i + 1) % count
                    break
            else:
                return
            consumer.connection._deliver(consumer, messages.popleft())

    def dead_letter(self, q: Queue, message: Message) -> None:
        """Republish a rejected message to the queue's dead-letter exchange, with ``x-death`` (RabbitMQ's
        format, newest first; a second death in the same queue for the same reason counts up)."""
        dlx = q.spec.dead_letter_exchange
        if dlx is None:
            return
        headers = dict(message.headers or {})
        deaths = [dict(d) for d in headers.get("x-death", [])]
        for i, death in enumerate(deaths):
            if death.get("queue") == q.spec.name and death.get("reason") == "rejected":
                death["count"] = death.get("count", 1) + 1
                death["time"] = time.time()
                deaths.insert(0, deaths.pop(i))
                break
        else:
            deaths.insert(
                0,
                {
                    "count": 1,
                    "reason": "rejected",
                    "queue": q.spec.name,
                    "time": time.time(),
                    "exchange": message.exchange,
                    "routing-keys": [message.routing_key],
                },
            )
        headers["x-death"] = deaths
        headers.setdefault("x-first-death-exchange", message.exchange)
        headers.setdefault("x-first-death-queue", q.spec.name)
        headers.setdefault("x-first-death-reason", "rejected")
        routing_key = q.spec.arguments.get("x-dead-letter-routing-key", message.routing_key)
        for target in self.route(dlx, routing_key, headers) or []:
            self.enqueue(target, Message(message.body, dlx, routing_key, headers))
            self.dispatch(target)
