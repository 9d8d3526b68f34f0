"""RabbitMQ through pika (``amqp://`` / ``amqps://``): the real, distributed engine.

One `pika.BlockingConnection` per `AmqpConnection`, owned by one thread, with three channels:

- the *consuming* channel: basic_consume (with a per-consumer ``basic_qos``), basic_get, ack, reject. Delivery
  tags are per channel, so every tag this class hands out comes from this one channel.
- the *publishing* channel in transaction mode: a batch is published with ``mandatory=True`` then committed
  with one ``tx.commit`` (measured here: ~12,000 persistent messages/s in batches of 100+, against ~1,300/s with
  pika's BlockingChannel publisher confirms, which wait for each message's ack; see docs/broker.md).
  It must not be the consuming channel: acks on a transactional channel only take effect on commit.
- the *admin* channel: declarations, passive declares (``queue_states``), purge. RabbitMQ closes a channel on a
  404 / 406; that must never take the consumers down, so whatever can fail that way happens here, and the
  channel is reopened on demand.
"""

from __future__ import annotations

import functools
import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pika
import pika.exceptions as pe
from pika.adapters.blocking_connection import BlockingChannel

from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    MessageHandler,
    OutgoingMessage,
    PublishFailed,
    QueueState,
    TopologyConflict,
    mask_url,
)
from stepflow_tui.broker.cluster import ROTATION, split_urls
from stepflow_tui.broker.topology import ExchangeSpec, QueueSpec
from stepflow_tui.broker.url import InvalidBrokerURL, parse_broker_url

log = logging.getLogger(__name__)

HEARTBEAT = 30  # seconds; RabbitMQ closes a connection after two missed heartbeats
BLOCKED_CONNECTION_TIMEOUT = 60  # seconds blocked by a resource alarm before pika gives up
_TLS_QUERY_KEYS = ("cafile", "certfile", "keyfile")

# The connection itself is gone (network, server shutdown, heartbeat timeout): the owner reconnects.
_CONNECTION_ERRORS = (
    pe.AMQPConnectionError,  # includes ConnectionClosed, StreamLostError, ConnectionClosedByBroker
    pe.ConnectionWrongStateError,
)


def connection_parameters(url: str, name: str) -> pika.URLParameters:
    """pika parameters for ``url``: our heartbeat / blocked-connection defaults unless the URL's query sets
    them, the connection name shown in the management UI, and TLS files from ``?cafile=&certfile=&keyfile=``."""
    try:
        address = parse_broker_url(url)
    except InvalidBrokerURL as exc:
        raise BrokerError(str(exc)) from None
    tls = {k: v for k, v in address.options if k in _TLS_QUERY_KEYS}
    rest = [(k, v) for k, v in address.options if k not in _TLS_QUERY_KEYS]
    try:
        params = pika.URLParameters(address.for_pika() + ("?" + urlencode(rest) if rest else ""))
    except (ValueError, TypeError) as exc:  # an option pika refuses; its message never holds the password
        raise BrokerError(f"invalid broker URL {address.masked()}: {exc}") from None
    given = {k for k, _ in rest}
    if "heartbeat" not in given:
        params.heartbeat = HEARTBEAT
    if "blocked_connection_timeout" not in given:
        params.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    params.client_properties = {"connection_name": name}
    if tls:
        if address.scheme != "amqps":
            raise BrokerError(f"{', '.join(tls)} given for a plain amqp:// URL {address.masked()}: use amqps://")
        try:
            context = ssl.create_default_context(cafile=tls.get("cafile"))
            if "certfile" in tls:
                context.load_cert_chain(tls["certfile"], tls.get("keyfile"))
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot load TLS files for {address.masked()}: {exc}") from None
        params.ssl_options = pika.SSLOptions(context, server_hostname=address.host.strip("[]"))
    return params


def _certificate_refused(error: BaseException) -> bool:
    """Whether a connection error comes from a TLS certificate that failed verification (pika nests the
    ssl error in its exceptions' args)."""
    pending: list[object] = [error]
    seen = 0
    while pending and seen < 50:
        item = pending.pop()
        seen += 1
        if isinstance(item, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(item):
            return True
        if isinstance(item, BaseException):
            pending.extend(item.args)
            inner = getattr(item, "exception", None)  # pika's connector errors hold the ssl error here
            pending.extend(e for e in (inner, item.__cause__, item.__context__) if e is not None)
    return False


class AmqpConnection(Connection):
    """A connection to RabbitMQ; owned by the thread that calls `process_events`."""

    durable = True

    def __init__(self, url: str, *, name: str = "stepflow") -> None:
        self.url = url
        self.name = name
        self._masked = mask_url(url)
        nodes = split_urls(url)
        order = ROTATION.order(url)
        params = [connection_parameters(nodes[i], name) for i in order]
        self._vhost = params[0].virtual_host  # every node of a cluster serves the same vhost
        try:
            # pika tries a list of parameters in turn and keeps the first that answers.
            self._connection = pika.BlockingConnection(params if len(params) > 1 else params[0])
        except (pe.ProbableAuthenticationError, pe.ProbableAccessDeniedError) as exc:
            raise BrokerError(
                f"access refused to {self._masked}: check user, password and vhost ({exc})"
            ) from None
        except (pe.AMQPConnectionError, OSError) as exc:  # OSError: DNS, TLS, ... before pika wraps them
            if _certificate_refused(exc):  # the same certificate is refused on every attempt
                raise BrokerError(f"cannot connect to {self._masked}: its TLS certificate is not trusted "
                                  f"({_describe(exc)}): pass the CA with --ca-file") from None
            raise ConnectionLost(f"cannot connect to {self._masked}: {_describe(exc)}") from None
        self._node_index = _reached(self._connection, order, params)
        ROTATION.connected(url, self._node_index)
        self.node = mask_url(nodes[self._node_index])
        self._masked = self.node  # from now on, errors name the node reached, not every address
        self._closed = False
        self._lost = False  # closed by a failure, not by close(): later calls raise ConnectionLost
        self._consuming: BlockingChannel = self._connection.channel()
        self._publishing: BlockingChannel | None = None
        self._admin: BlockingChannel | None = None
        self._returned: list[str] = []

    def __repr__(self) -> str:
        return f"<AmqpConnection {self.name!r} to {self._masked}{' closed' if self._closed else ''}>"

    # --- channels and errors --------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Map pika's exceptions to ours. A broker-closed channel is a `BrokerError` (the admin and publishing
        channels reopen on demand); a closed consuming channel takes the consumers with it, so that is
        `ConnectionLost`: the owner reconnects, declares and consumes again."""
        if self._lost:
            raise ConnectionLost(f"{what}: connection {self.name!r} to {self._masked} was lost")
        if self._closed:
            raise BrokerError(f"connection {self.name!r} to {self._masked} is closed")
        try:
            yield
        except pe.ChannelClosedByBroker as exc:
            if _node_down(exc):  # a cluster: the queue lives on a node that is down; it comes back with it
                raise ConnectionLost(f"{what}: {_describe(exc)}") from None
            if self._consuming.is_closed:
                self._drop()
                raise ConnectionLost(f"{what}: channel closed by {self._masked}: {_describe(exc)}") from None
            raise BrokerError(f"{what}: {_describe(exc)}{_queue_type_hint(exc)}") from None
        except _CONNECTION_ERRORS as exc:
            self._drop()
            raise ConnectionLost(f"{what}: connection to {self._masked} lost: {_describe(exc)}") from None
        except pe.ChannelWrongStateError as exc:
            if self._connection.is_open and not self._consuming.is_closed:
                raise BrokerError(f"{what}: {_describe(exc)}") from None
            self._drop()
            raise ConnectionLost(f"{what}: connection to {self._masked} lost: {_describe(exc)}") from None

    def _drop(self) -> None:
        """Give up on a broken connection (close what is left, quietly); the next connection to a cluster
        starts with the node after this one."""
        self._closed = self._lost = True
        ROTATION.lost(self.url, self._node_index)
        try:
            if self._connection.is_open:
                self._connection.close()
        except Exception:  # noqa: BLE001 - already broken; nothing more to learn from this one
            log.debug("closing a broken connection failed", exc_info=True)

    def _admin_channel(self) -> BlockingChannel:
        if self._admin is None or not self._admin.is_open:
            self._admin = self._connection.channel()
        return self._admin

    def _publishing_channel(self) -> BlockingChannel:
        if self._publishing is None or not self._publishing.is_open:
            channel = self._connection.channel()
            channel.tx_select()
            # The public add_on_return_callback only runs inside process_data_events, i.e. after publish() has
            # returned; on the underlying channel the callback runs while tx_commit waits, and RabbitMQ sends a
            # basic.return before its tx.commit-ok, so every return of the batch is known when commit returns.
            channel._impl.add_on_return_callback(self._on_returned)  # noqa: SLF001 - see above
            self._publishing = channel
        return self._publishing

    def _on_returned(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        self._returned.append(
            f"{method.reply_code} {method.reply_text} (exchange {method.exchange!r}, "
            f"routing key {method.routing_key!r})"
        )

    def _require_queue(self, name: str) -> None:
        """Raise `BrokerError` if ``name`` does not exist, without risking the consuming channel."""
        if not self._queue_exists(name):
            raise BrokerError(f"no queue {name!r} on {self._masked}")

    def _queue_exists(self, name: str) -> tuple[int, int] | None:
        """(ready, consumers) of a queue by a passive declare on the admin channel, or None if it is missing."""
        channel = self._admin_channel()
        try:
            frame = channel.queue_declare(name, passive=True)
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:  # NOT_FOUND closes the channel; the next call opens a new one
                return None
            raise
        return frame.method.message_count, frame.method.consumer_count

    def _declare(self, exchanges: Sequence[ExchangeSpec], queues: Sequence[QueueSpec]) -> None:
        with self._errors("declaring the topology"):
            for exchange in exchanges:
                with self._conflict("exchange", exchange.name):
                    self._declare_or_check(exchange.name, "exchange", lambda ch, e=exchange: ch.exchange_declare(
                        e.name, e.type, durable=e.durable, arguments=e.arguments or None))
            for q in queues:
                with self._conflict("queue", q.name):
                    declared = self._declare_or_check(q.name, "queue", lambda ch, q=q: ch.queue_declare(
                        q.name, durable=q.durable, exclusive=q.exclusive, auto_delete=q.auto_delete,
                        arguments=q.arguments or None))
                if not declared:
                    continue  # declared and bound by a user allowed to (docs/security.md)
                channel = self._admin_channel()
                for binding in q.bindings:
                    # routing_key "" stays "": pika would turn None into the queue's name.
                    channel.queue_bind(q.name, binding.exchange, routing_key=binding.routing_key,
                                       arguments=binding.arguments or None)

    @contextmanager
    def _conflict(self, kind: str, name: str) -> Iterator[None]:
        """A 406 on declaring ``name``: one `TopologyConflict` saying what to delete (retrying cannot help)."""
        try:
            yield
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code != 406 or _queue_type_hint(exc):
                raise  # another --queue-type: `_errors` says so
            vhost = self._vhost
            how = (f"rabbitmqctl delete_queue -p {vhost!r} {name}" if kind == "queue"
                   else f"rabbitmqadmin -V {vhost!r} delete exchange name={name}")
            raise TopologyConflict(
                f"the {kind} {name!r} on {self._masked} exists with other arguments than stepflow-tui declares "
                f"(Media Cloud AI's; {_describe(exc)}). It was probably declared by an earlier version of "
                f"stepflow-tui: delete it ({how}) or the whole vhost (rabbitmqctl delete_vhost {vhost!r}), or "
                "use a fresh vhost, then start again."
            ) from None

    def _declare_or_check(self, name: str, kind: str, declare: Callable[[BlockingChannel], Any]) -> bool:
        """Declare an exchange or a queue; True when declared. A user without the right to (a worker with least
        privilege: docs/security.md) checks instead that it exists, declared by the backend: False."""
        try:
            declare(self._admin_channel())
            return True
        except pe.ChannelClosedByBroker as exc:
            if exc.reply_code != 403:  # ACCESS_REFUSED; anything else is the caller's to report
                raise
        try:
            check = self._admin_channel()
            if kind == "exchange":
                check.exchange_declare(name, passive=True)
            else:
                check.queue_declare(name, passive=True)
        except pe.ChannelClosedByBroker as exc:
            raise BrokerError(f"this user may not declare the {kind} {name!r} on {self._masked}, and it does not "
                              f"exist yet: start the backend once first ({exc.reply_code} {exc.reply_text})") from None
        return False

    # --- Connection -----------------------------------------------------------------------------------------

    def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        """Publish the batch in one transaction (``mandatory=True``); returns once RabbitMQ committed it."""
        if not messages:
            return
        with self._errors("publishing"):
            self._returned.clear()
            try:
                channel = self._publishing_channel()
                # The underlying channel's basic_publish only queues the frames; BlockingChannel.basic_publish
                # would also flush the socket after each message (a send and a poll per message: most of a
                # worker's time in bench/throughput.py). tx_commit flushes the whole batch at once.
                publish = channel._impl.basic_publish  # noqa: SLF001 - see above
                for m in messages:
                    publish(m.exchange, m.routing_key, m.body, _properties(m), mandatory=True)
                channel.tx_commit()
            except pe.ChannelClosedByBroker as exc:  # e.g. 404: no such exchange
                raise PublishFailed(f"publishing to {self._masked} failed: {_describe(exc)}") from None
            if self._returned:
                returned, self._returned = self._returned, []
                raise PublishFailed(f"{len(returned)} message(s) routed to no queue: {returned[0]}")

    def consume(self, queue: str, on_message: MessageHandler, prefetch: int = 0) -> str:
        """Start consuming ``queue`` (must exist) with at most ``prefetch`` unacked deliveries (0 = unbounded)."""
        with self._errors(f"consuming {queue!r}"):
            self._require_queue(queue)
            # global_qos=False: the limit applies to each consumer created after it on this channel.
            self._consuming.basic_qos(prefetch_count=max(0, prefetch), global_qos=False)

            def deliver(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
                on_message(_delivery(queue, method, properties, body))

            return self._consuming.basic_consume(queue, deliver, auto_ack=False)

    def cancel(self, consumer_tag: str) -> None:
        """Stop a consumer (pika nacks, requeueing, what arrived for it but was not dispatched yet)."""
        with self._errors("cancelling a consumer"):
            self._consuming.basic_cancel(consumer_tag)

    def ack(self, delivery_tag: int, multiple: bool = False) -> None:
        """Acknowledge a delivery (or every one up to it, with ``multiple``). The ack frame leaves with the next
        socket flush (the next `process_events`, `publish` or any other call that waits for the broker): a
        worker acking a batch one by one then costs one send, not one per ack. An ack lost with the connection
        means a redelivery, which at-least-once delivery allows."""
        with self._errors("acknowledging"):
            self._consuming._impl.basic_ack(delivery_tag=delivery_tag, multiple=multiple)  # noqa: SLF001

    def reject(self, delivery_tag: int, requeue: bool = False) -> None:
        """Requeue or dead-letter a delivery."""
        with self._errors("rejecting"):
            self._consuming.basic_reject(delivery_tag, requeue=requeue)

    def process_events(self, timeout: float) -> None:
        """Dispatch deliveries and thread-safe callbacks; returns once something was dispatched or after
        ``timeout`` seconds."""
        with self._errors("waiting for messages"):
            self._connection.process_data_events(time_limit=max(0.0, timeout))
            if self._consuming.is_closed:
                # pika reports a broker-closed channel only on its next call; the consumers are gone already.
                self._drop()
                raise ConnectionLost(f"the consuming channel to {self._masked} was closed by the broker")

    def call_threadsafe(self, callback: Callable[[], None]) -> None:
        """From any thread: run ``callback`` in the owning thread (raises `ConnectionLost` once the connection
        is gone: the owner's reconnect starts afresh)."""
        try:
            self._connection.add_callback_threadsafe(callback)
        except (pe.ConnectionWrongStateError, pe.AMQPConnectionError) as exc:
            raise ConnectionLost(f"connection to {self._masked} is closed: {_describe(exc)}") from None

    def queue_states(self, names: Sequence[str]) -> list[QueueState]:
        """Passive declares; ``unacked`` stays 0 (AMQP cannot tell, only the management API can)."""
        states = []
        with self._errors("reading queue states"):
            for name in names:
                found = self._queue_exists(name)
                if found is None:
                    states.append(QueueState(name, exists=False))
                else:
                    states.append(QueueState(name, True, ready=found[0], consumers=found[1]))
        return states

    def get(self, queue: str) -> Delivery | None:
        """basic_get on the consuming channel (so its tag is acked like any other), or None when empty."""
        with self._errors(f"getting from {queue!r}"):
            self._require_queue(queue)
            method, properties, body = self._consuming.basic_get(queue, auto_ack=False)
            if method is None:
                return None
            return _delivery(queue, method, properties, body)

    def purge(self, queue: str) -> int:
        """Drop the ready messages of ``queue``; return how many."""
        with self._errors(f"purging {queue!r}"):
            self._require_queue(queue)
            return self._admin_channel().queue_purge(queue).method.message_count

    def close(self) -> None:
        """Close the connection; RabbitMQ requeues its unacked deliveries. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._connection.is_open:
                self._connection.close()
        except (pe.AMQPError, OSError):
            log.debug("closing %s failed", self._masked, exc_info=True)


def _node_down(exc: pe.ChannelClosedByBroker) -> bool:
    """Whether RabbitMQ refused because the queue's node (or its quorum) is down: transient on a cluster."""
    text = str(exc.reply_text)
    return exc.reply_code == 404 and ("down or inaccessible" in text or "stopped by supervisor" in text)


def _queue_type_hint(exc: pe.ChannelClosedByBroker) -> str:
    """What to do about a queue declared earlier with another ``x-queue-type``."""
    if exc.reply_code != 406 or "x-queue-type" not in str(exc.reply_text):
        return ""
    return (": the queues were declared with another --queue-type; give every backend and worker of this vhost "
            "the same one, or delete the queues of the other type first")


def _reached(connection: pika.BlockingConnection, order: Sequence[int], params: Sequence[pika.ConnectionParameters]
             ) -> int:
    """The index of the node pika connected to (its parameters are a copy of one of ``params``)."""
    used = getattr(connection._impl, "params", None)  # noqa: SLF001 - pika keeps the node's parameters there
    for index, candidate in zip(order, params, strict=True):
        if used is not None and (used.host, used.port) == (candidate.host, candidate.port):
            return index
    return order[0]


def _describe(exc: BaseException) -> str:
    """pika's exceptions print as tuples; make one readable line (never containing a URL password: pika's
    messages never include credentials)."""
    if isinstance(exc, pe.ChannelClosedByBroker | pe.ConnectionClosedByBroker):
        return f"{exc.reply_code} {exc.reply_text}"
    cause = _root_cause(exc)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused (is RabbitMQ running there, and is the port right?)"
    if isinstance(cause, TimeoutError | socket.timeout):
        return "connection timed out (host unreachable or a firewall in the way?)"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the host name ({cause.strerror or cause})"
    if isinstance(cause, OSError) and cause is not exc:
        return cause.strerror or str(cause)
    text = str(exc) or type(exc).__name__
    return text.strip("()',\"") or type(exc).__name__


def _root_cause(exc: BaseException) -> BaseException:
    """pika wraps socket errors in connector errors inside AMQPConnectionError's args: dig the OSError out."""
    seen = 0
    current: object = exc
    while seen < 5:
        seen += 1
        inner = getattr(current, "exception", None)
        if isinstance(inner, BaseException):
            current = inner
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        if nested is None:
            break
        current = nested
    return current if isinstance(current, BaseException) else exc


def _delivery(queue: str, method: Any, properties: Any, body: bytes) -> Delivery:
    """A pika delivery (consumed or got) as ours."""
    return Delivery(queue=queue, body=body, delivery_tag=method.delivery_tag, routing_key=method.routing_key,
                    exchange=method.exchange, redelivered=method.redelivered, headers=properties.headers or {})


@functools.lru_cache(maxsize=16)
def _plain_properties(content_type: str, persistent: bool) -> pika.BasicProperties:
    """One properties object per kind of plain message (pika only reads it): building one per message was a
    few percent of a worker's and the backend's time per job."""
    return pika.BasicProperties(content_type=content_type, delivery_mode=2 if persistent else 1)


def _properties(m: OutgoingMessage) -> pika.BasicProperties:
    if not m.headers and m.expiration_ms is None:
        return _plain_properties(m.content_type, m.persistent)
    return pika.BasicProperties(
        content_type=m.content_type,
        delivery_mode=2 if m.persistent else 1,
        headers=m.headers or None,
        expiration=None if m.expiration_ms is None else str(m.expiration_ms),
    )
