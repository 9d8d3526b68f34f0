"""The embedded broker (``memory://``): RabbitMQ's semantics, in process, for a machine without RabbitMQ.

One `MemoryBroker` per URL per process (``memory://`` and ``memory://default`` are the same broker,
``memory://other`` is another); every `MemoryConnection` to that URL shares it. What it reproduces of RabbitMQ:
topic (``*`` / ``#``), fanout, headers (``x-match`` any/all) and the default exchange; alternate exchanges when a
message routes nowhere; ``x-dead-letter-exchange`` on reject(requeue=False) with an ``x-death`` header;
round-robin among consumers; per-consumer prefetch; per-connection delivery tags (ack ``multiple``);
redelivery (``redelivered=True``) of unacked messages when their connection closes; auto-delete and exclusive
queues; PRECONDITION_FAILED on a re-declaration with other arguments. Nothing survives the process
(``durable = False``).

The exchanges, queues and routing are in `memory_broker`; this module is the `Connection` to them.

Threading: one lock guards the whole broker. A delivery is decided under the lock (tag, unacked, prefetch) and
put into the consuming connection's inbox; only `MemoryConnection.process_events`, in the owning thread, calls
handlers. `call_threadsafe` puts a callback into the same inbox, so it wakes a waiting `process_events` at once.
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PublishFailed,
    QueueState,
)
from stepflow_tui.broker.memory_broker import Consumer, MemoryBroker, Message, Queue
from stepflow_tui.broker.topology import ExchangeSpec, QueueSpec

_CALL = object()  # inbox marker: a thread-safe callback
_WAKE = object()  # inbox marker: just wake up (connection broken)


class MemoryConnection(Connection):
    """A connection to the embedded broker of ``url``; owned by the thread that calls `process_events`."""

    durable = False
    counts_unacked = True

    def __init__(self, url: str = "memory://", *, name: str = "stepflow") -> None:
        self.url = url
        self.name = name
        self._broker = MemoryBroker.for_url(url)
        self._inbox: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._consumers: dict[str, Consumer] = {}
        # delivery tag -> (message, queue, consumer or None for basic_get); ascending, for ack(multiple=True)
        self._unacked: dict[int, tuple[Message, Queue, Consumer | None]] = {}
        self._tags = itertools.count(1)
        self._consumer_tags = itertools.count(1)
        self._closed = False
        self._lost = False

    def __repr__(self) -> str:
        return f"<MemoryConnection {self.name!r} to {self.url!r}{' closed' if self._closed else ''}>"

    # --- helpers --------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lost:
            raise ConnectionLost(f"connection {self.name!r} to {self.url} was lost")
        if self._closed:
            raise BrokerError(f"connection {self.name!r} to {self.url} is closed")

    def _queue(self, name: str) -> Queue:
        q = self._broker.queues.get(name)
        if q is None:
            raise BrokerError(f"no queue {name!r} on {self.url}: NOT_FOUND")
        return q

    def _deliver(self, consumer: Consumer, message: Message) -> None:
        """Called by the broker (lock held, any thread): record the delivery and queue it for our owner."""
        tag = next(self._tags)
        self._unacked[tag] = (message, consumer.queue, consumer)
        consumer.unacked += 1
        consumer.queue.unacked += 1
        consumer.queue.delivered += 1
        delivery = _delivery(consumer.queue.spec.name, message, tag)
        self._inbox.put((consumer, delivery))

    def _settle(self, tag: int) -> tuple[Message, Queue]:
        """Forget an unacked delivery (lock held); the caller decides its fate."""
        try:
            message, q, consumer = self._unacked.pop(tag)
        except KeyError:
            raise BrokerError(
                f"unknown delivery tag {tag} on connection {self.name!r}: PRECONDITION_FAILED"
            ) from None
        q.unacked -= 1
        if consumer is not None:
            consumer.unacked -= 1
            if consumer.active and consumer.unacked == consumer.prefetch - 1:
                self._broker.dispatch(q)  # it had no room; now it has
        return message, q

    def _requeue(self, tag: int) -> None:
        message, q = self._settle(tag)
        message.redelivered = True
        self._broker.enqueue(q, message, front=True)
        self._broker.dispatch(q)

    def _remove_consumer(self, consumer: Consumer) -> None:
        consumer.active = False
        self._consumers.pop(consumer.tag, None)
        q = consumer.queue
        if consumer in q.consumers:
            q.consumers.remove(consumer)
        if q.spec.auto_delete and not q.consumers:
            self._broker.delete_queue(q)  # RabbitMQ: auto-delete once its last consumer is gone

    def _declare(self, exchanges: Iterable[ExchangeSpec], queues: Iterable[QueueSpec]) -> None:
        with self._broker.lock:
            self._check_open()
            for exchange in exchanges:
                self._broker.declare_exchange(exchange)
            for q in queues:
                self._broker.declare_queue(q, self)

    # --- Connection -----------------------------------------------------------------------------------------

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Route the whole batch first, then enqueue it: a batch that fails puts nothing in any queue."""
        broker = self._broker
        with broker.lock:
            self._check_open()
            routed: list[tuple[list[Queue], OutgoingMessage]] = []
            for m in messages:
                targets = broker.route(m.exchange, m.routing_key, m.headers)
                if targets is None:
                    raise PublishFailed(f"no exchange {m.exchange!r} on {self.url}: NOT_FOUND")
                if not targets:
                    # mandatory=True on RabbitMQ: an unroutable message comes back as basic.return
                    raise PublishFailed(
                        f"message to exchange {m.exchange!r} with routing key {m.routing_key!r} routes to no queue"
                    )
                routed.append((targets, m))
            touched: dict[int, Queue] = {}
            for targets, m in routed:
                headers = dict(m.headers) if m.headers else None
                for q in targets:
                    q.messages.append(Message(m.body, m.exchange, m.routing_key, headers))
                    q.published += 1
                    touched[id(q)] = q
            for q in touched.values():
                broker.dispatch(q)

    def consume(self, queue: str, on_message: MessageHandler, prefetch: int = 0) -> str:
        """Start consuming ``queue`` (must exist); handlers run inside `process_events`."""
        with self._broker.lock:
            self._check_open()
            q = self._queue(queue)
            tag = f"{self.name}.ctag{next(self._consumer_tags)}"
            consumer = Consumer(tag, q, on_message, max(0, prefetch), self)
            self._consumers[tag] = consumer
            q.consumers.append(consumer)
            self._broker.dispatch(q)
        return tag

    def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer; deliveries it already handled stay unacked, those not yet handled are requeued
        (as pika's BlockingChannel does on basic_cancel)."""
        with self._broker.lock:
            self._check_open()
            consumer = self._consumers.get(consumer_tag)
            if consumer is not None:
                self._remove_consumer(consumer)

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Acknowledge one delivery, or with ``multiple`` every unacked delivery of this connection up to it."""
        with self._broker.lock:
            self._check_open()
            if not multiple:
                self._settle(delivery_tag)
                return
            if delivery_tag not in self._unacked:
                raise BrokerError(
                    f"unknown delivery tag {delivery_tag} on connection {self.name!r}: PRECONDITION_FAILED"
                )
            tags = list(itertools.takewhile(lambda t: t <= delivery_tag, self._unacked))
            for tag in tags:
                self._settle(tag)

    def reject(self, delivery_tag: int, requeue: bool = False) -> None:
        """Requeue (redelivered=True) or dead-letter a delivery."""
        with self._broker.lock:
            self._check_open()
            if requeue:
                self._requeue(delivery_tag)
            else:
                message, q = self._settle(delivery_tag)
                self._broker.dead_letter(q, message)

    def process_events(self, timeout: float) -> None:
        """Wait up to ``timeout`` for something to do; then do what is waiting, and return."""
        self._check_open()
        inbox = self._inbox
        try:
            item = inbox.get(timeout=timeout) if timeout > 0 else inbox.get_nowait()
        except queue.Empty:
            return
        self._handle(item)
        # Then what was already waiting, but not what handlers add meanwhile: process_events stays bounded.
        for _ in range(inbox.qsize()):
            if self._closed:
                return
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                return
            self._handle(item)

    def _handle(self, item: tuple[Any, Any]) -> None:
        kind, payload = item
        if kind is _CALL:
            payload()
        elif kind is _WAKE:
            self._check_open()
        elif self._closed:
            return  # close() already requeued it
        elif kind.active:
            kind.handler(payload)
        else:
            with self._broker.lock:  # its consumer was cancelled before the handler saw it: give it back
                if payload.delivery_tag in self._unacked:
                    self._requeue(payload.delivery_tag)

    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the owning thread, inside `process_events` (which it wakes up)."""
        self._inbox.put((_CALL, callback))

    def queue_states(self, names: Sequence[str]) -> list[QueueState]:
        """Ready, unacked and consumer counts of each queue (``exists=False`` for an unknown one)."""
        with self._broker.lock:
            self._check_open()
            states = []
            for name in names:
                q = self._broker.queues.get(name)
                if q is None:
                    states.append(QueueState(name, exists=False))
                else:
                    states.append(QueueState(name, True, len(q.messages), q.unacked, len(q.consumers),
                                             published=q.published, delivered=q.delivered))
            return states

    def get(self, queue: str) -> Delivery | None:
        """basic_get: take one ready message (to ack or reject), or None when the queue is empty."""
        with self._broker.lock:
            self._check_open()
            q = self._queue(queue)
            if not q.messages:
                return None
            message = q.messages.popleft()
            tag = next(self._tags)
            self._unacked[tag] = (message, q, None)
            q.unacked += 1
            q.delivered += 1
            return _delivery(queue, message, tag)

    def purge(self, queue: str) -> int:
        """Drop the ready messages of ``queue``; return how many."""
        with self._broker.lock:
            self._check_open()
            q = self._queue(queue)
            count = len(q.messages)
            q.messages.clear()
            return count

    def close(self) -> None:
        """Cancel consumers, requeue unacked deliveries (redelivered=True), delete our exclusive queues."""
        with self._broker.lock:
            if self._closed:
                return
            self._shut()

    def _shut(self) -> None:
        """Close under the lock: what RabbitMQ does when a connection ends, cleanly or not."""
        self._closed = True
        broker = self._broker
        for consumer in list(self._consumers.values()):
            self._remove_consumer(consumer)
        touched: dict[int, Queue] = {}
        # Newest first onto the front of each queue, so the oldest ends up first again.
        for tag in reversed(list(self._unacked)):
            message, q, consumer = self._unacked.pop(tag)
            q.unacked -= 1
            if consumer is not None:
                consumer.unacked -= 1
            message.redelivered = True
            broker.enqueue(q, message, front=True)
            touched[id(q)] = q
        for q in list(broker.queues.values()):
            if q.owner is self:
                broker.delete_queue(q)
        for q in touched.values():
            if not q.deleted:
                broker.dispatch(q)

    def break_connection(self) -> None:
        """Simulate a network failure (tests of reconnect logic; any thread): the broker takes back the
        unacked deliveries and the owner's next call, including a waiting `process_events`, raises
        `ConnectionLost`."""
        with self._broker.lock:
            if self._closed:
                return
            self._lost = True
            self._shut()
        self._inbox.put((_WAKE, None))


def _delivery(queue: str, message: Message, tag: int) -> Delivery:
    """What a consumer (or a get) receives of a stored message."""
    return Delivery(queue=queue, body=message.body, delivery_tag=tag, routing_key=message.routing_key,
                    exchange=message.exchange, redelivered=message.redelivered,
                    headers=dict(message.headers) if message.headers else {})
