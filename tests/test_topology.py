"""The topology is Media Cloud AI's SDK's, argument for argument (reference/mcai-sdk.md): declared in either
order beside the SDK's own declarations (reproduced with raw pika, exactly as observed) nothing is refused; a
rejected order goes through ``job_delayed`` and comes back after 5 s, a copy kept in ``job_rejected``; an old
vhost gets one `TopologyConflict` naming what to delete."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
from helpers import wait_for

from stepflow_tui.backend import loop
from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import Connection, OutgoingMessage, TopologyConflict, connect

# What mcai-worker-sdk 2.1.1 declares (observed with rabbitmqctl list_exchanges / list_queues / list_bindings).
SDK_EXCHANGES: list[tuple[str, str, dict[str, Any]]] = [
    ("job_submit", "topic", {"alternate-exchange": "job_queue_not_found"}),
    ("job_response", "topic", {"alternate-exchange": "job_response_not_found"}),
    ("worker_response", "topic", {"alternate-exchange": "worker_response_not_found"}),
    ("direct_messaging", "headers", {"alternate-exchange": "direct_messaging_not_found"}),
    ("job_delayed", "fanout", {}),
]
SDK_QUEUES: list[tuple[str, dict[str, Any]]] = [
    ("job_sdk", {"x-dead-letter-exchange": "job_delayed", "x-dead-letter-routing-key": "job_sdk",
                 "x-max-priority": 100}),
    ("worker_discovery", {"x-dead-letter-exchange": "job_response_delayed",
                          "x-dead-letter-routing-key": "worker_discovery"}),
    ("job_delayed", {"x-dead-letter-exchange": "", "x-message-ttl": 5000}),
    ("worker_response_not_found", {}),
]
SDK_BINDINGS = [("job_sdk", "job_submit", "job_sdk"), ("job_delayed", "job_delayed", "*")]


def declare_like_the_sdk(url: str, instance_id: str = "sdk-1") -> None:
    """The SDK's declarations, on a connection of their own (a 406 raises pika's ChannelClosedByBroker)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name, kind, arguments in SDK_EXCHANGES:
            channel.exchange_declare(name, kind, durable=True, arguments=arguments or None)
        for name, arguments in SDK_QUEUES:
            channel.queue_declare(name, durable=True, arguments=arguments or None)
        for queue, exchange, key in SDK_BINDINGS:
            channel.queue_bind(queue, exchange, routing_key=key)
        direct = f"direct_messaging_{instance_id}"
        channel.queue_declare(direct, durable=False, auto_delete=True)
        channel.queue_bind(direct, "direct_messaging", arguments={"x-match": "any", "instance_id": instance_id,
                                                                    "broadcast": "true"})
    finally:
        connection.close()


def declare_ours(url: str) -> None:
    conn = connect(url, name="test-topology")
    try:
        conn.declare_backend_topology()
        conn.declare_job_queue("sdk")
        conn.declare_direct_queue("ours-1", ["sdk"])
    finally:
        conn.close()


@pytest.fixture
def conn(broker_url: str) -> Iterator[Connection]:
    connection = connect(broker_url, name="test-topology")
    connection.declare_backend_topology()
    yield connection
    connection.close()


def test_our_tables_carry_exactly_the_sdks_arguments() -> None:
    ours = {e.name: (e.type, e.arguments) for e in topology.EXCHANGES}
    for name, kind, arguments in SDK_EXCHANGES:
        assert ours[name] == (kind, arguments), name
    queues = {q.name: q for q in topology.BACKEND_QUEUES + (topology.job_queue_spec("sdk"),)}
    for name, arguments in SDK_QUEUES:
        assert queues[name].arguments == arguments and queues[name].durable, name
    direct = topology.direct_queue_spec("i", [])
    assert direct.bindings[0].arguments == {"x-match": "any", "instance_id": "i", "broadcast": "true"}


def test_every_alternate_and_dead_letter_exchange_is_declared_with_a_queue() -> None:
    queues = topology.BACKEND_QUEUES + (topology.job_queue_spec("x"),)
    named = {e.alternate_exchange for e in topology.EXCHANGES} | {q.dead_letter_exchange for q in queues}
    named -= {None, ""}  # "" is the default exchange
    bound = {b.exchange for q in topology.BACKEND_QUEUES for b in q.bindings}
    assert named <= bound, named - bound
    assert {topology.JOB_DELAYED, topology.JOB_RESPONSE_DELAYED, topology.DIRECT_MESSAGING_NOT_FOUND,
            topology.WORKER_RESPONSE_NOT_FOUND} <= named
    discovery = {(b.exchange, b.routing_key) for b in topology.WORKER_DISCOVERY_QUEUE.bindings}
    assert {("job_response", "worker_discovery"), ("worker_response", "worker_created")} <= discovery
    status = next(q for q in topology.WORKER_QUEUES if q.name == topology.WORKER_STATUS)
    assert {b.routing_key for b in status.bindings} == {"worker_status", "worker_terminated"}


@pytest.mark.rabbitmq
@pytest.mark.parametrize("sdk_first", [True, False], ids=["sdk-first", "stepflow-first"])
def test_either_start_order_declares_without_a_conflict(rabbitmq_url: str, sdk_first: bool) -> None:
    if sdk_first:
        declare_like_the_sdk(rabbitmq_url)
        declare_ours(rabbitmq_url)
    else:
        declare_ours(rabbitmq_url)
        declare_like_the_sdk(rabbitmq_url)
    declare_ours(rabbitmq_url)  # and again, after the SDK: idempotent


def test_a_rejected_order_comes_back_after_the_delay_and_a_copy_stays(conn: Connection) -> None:
    queue = conn.declare_job_queue("sdk")
    conn.publish([OutgoingMessage(topology.JOB_SUBMIT, queue, b'{"job_id": 7, "parameters": []}')])
    delivery = wait_for(lambda: conn.get(queue), 10, "the order")
    rejected_at = time.monotonic()
    conn.reject(delivery.delivery_tag, requeue=False)
    copy = wait_for(lambda: conn.get(topology.JOB_REJECTED), 10, "the copy in job_rejected")
    death = copy.headers["x-death"][0]
    assert (death["queue"], death["reason"], death["count"]) == (queue, "rejected", 1)
    assert copy.body == delivery.body
    back = wait_for(lambda: conn.get(queue), 10, "the order back in its queue")
    assert time.monotonic() - rejected_at >= 4.5  # x-message-ttl 5000 on job_delayed
    assert back.body == delivery.body
    assert {d["reason"] for d in back.headers["x-death"]} == {"rejected", "expired"}


def test_a_poison_order_put_aside_for_good_does_not_come_back(conn: Connection) -> None:
    queue = conn.declare_job_queue("sdk")
    conn.publish([OutgoingMessage(topology.JOB_SUBMIT, queue, b"not json")])
    conn.dead_letter(wait_for(lambda: conn.get(queue), 10, "the order"))
    dead = wait_for(lambda: conn.get(topology.JOB_DEAD_LETTER), 10, "the dead letter")
    assert dead.headers["x-death"][0]["queue"] == queue
    names = [topology.JOB_REJECTED, topology.JOB_DELAYED, queue]
    assert [s.ready for s in conn.queue_states(names)] == [0, 0, 0]


def test_the_sdks_broadcast_string_reaches_our_worker(conn: Connection) -> None:
    queue = conn.declare_direct_queue("ours-1", ["sdk"])
    conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", b'{"type": "status"}',
                                  headers={"broadcast": topology.BROADCAST})])
    assert wait_for(lambda: conn.get(queue), 10, "the broadcast").headers == {"broadcast": "true"}


def test_a_poll_nobody_takes_expires(conn: Connection) -> None:
    conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", b'{"type": "status"}',
                                  headers={"broadcast": topology.BROADCAST}, expiration_ms=200)])
    assert conn.queue_states([topology.DIRECT_MESSAGING_NOT_FOUND])[0].ready == 1
    wait_for(lambda: conn.queue_states([topology.DIRECT_MESSAGING_NOT_FOUND])[0].ready == 0, 10,
             "the poll to expire")


@pytest.mark.rabbitmq
@pytest.mark.parametrize(("kind", "name"), [("exchange", "worker_response"), ("queue", "job_sdk")])
def test_an_old_vhost_gets_one_clear_error(rabbitmq_url: str, kind: str, name: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:  # as an earlier stepflow-tui declared them
        if kind == "exchange":
            connection.channel().exchange_declare(name, "topic", durable=True)
        else:
            connection.channel().queue_declare(name, durable=True,
                                               arguments={"x-dead-letter-exchange": "job_dead_letter"})
    finally:
        connection.close()
    conn = connect(rabbitmq_url)
    try:
        with pytest.raises(TopologyConflict) as caught:
            conn.declare_backend_topology()
            conn.declare_job_queue("sdk")
        message = str(caught.value)
        assert f"{kind} {name!r}" in message and "406" in message and "earlier version" in message
        assert ("rabbitmqctl delete_queue" if kind == "queue" else "delete exchange name=") in message
        assert conn.queue_states([topology.JOB_COMPLETED])  # the connection stays usable (no ConnectionLost)
    finally:
        conn.close()


@pytest.mark.rabbitmq
def test_the_backend_on_an_old_vhost_says_so_once_and_does_not_reconnect(
        rabbitmq_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:  # worker_response as an earlier stepflow-tui declared it: no alternate exchange
        connection.channel().exchange_declare("worker_response", "topic", durable=True)
    finally:
        connection.close()
    connects: list[str] = []

    def counting_connect(url: str, **kwargs: object) -> Connection:
        connects.append(url)
        return connect(url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "connect", counting_connect)
    backend = Backend(BackendConfig(broker_url=rabbitmq_url, db_path=tmp_path / "state.json", local_workers=False))
    backend.start()
    try:
        wait_for(lambda: backend.connection_state == "error", 15, "the backend's error")
        assert "exchange 'worker_response'" in (backend.last_error or "") and "delete" in backend.last_error
        time.sleep(1.5)  # a reconnect loop would retry within this (its first delay is 0.5 s)
        assert len(connects) == 1 and backend.connection_state == "error"
    finally:
        backend.stop()
