"""Broker semantics, on the embedded broker and on RabbitMQ (``broker_url`` runs each test on both)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import (
    BrokerError,
    Connection,
    ConnectionLost,
    Delivery,
    OutgoingMessage,
    PublishFailed,
    connect,
    mask_url,
)
from stepflow_tui.broker.memory import MemoryConnection
from stepflow_tui.broker.memory_broker import MemoryBroker, headers_match, topic_matches


def wait_for(conn: Connection, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run ``conn``'s events until ``condition`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        conn.process_events(0.05)


def drain(conn: Connection, rounds: int = 4) -> None:
    """Give ``conn`` a few chances to dispatch something that must NOT arrive (bounded, never a sync point)."""
    for _ in range(rounds):
        conn.process_events(0.05)


def order(routing_key: str, job_id: int = 1, exchange: str = topology.JOB_SUBMIT) -> OutgoingMessage:
    return OutgoingMessage(exchange, routing_key, json.dumps({"job_id": job_id, "parameters": []}).encode())


def job_id(delivery: Delivery) -> int:
    return json.loads(delivery.body)["job_id"]


@pytest.fixture
def open_connection(broker_url: str) -> Iterator[Callable[..., Connection]]:
    """Open connections to this test's broker; all closed at the end."""
    opened: list[Connection] = []

    def open_(name: str = "test") -> Connection:
        conn = connect(broker_url, name=name)
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


@pytest.fixture
def conn(open_connection: Callable[..., Connection]) -> Connection:
    """A connection with the backend topology declared."""
    c = open_connection("backend")
    c.declare_backend_topology()
    return c


def collect(conn: Connection, queue: str, prefetch: int = 0) -> tuple[list[Delivery], str]:
    received: list[Delivery] = []
    tag = conn.consume(queue, received.append, prefetch=prefetch)
    return received, tag


# --- topology --------------------------------------------------------------------------------------------


def test_backend_topology_declares_every_system_queue_and_is_idempotent(conn: Connection) -> None:
    conn.declare_backend_topology()  # a second time: same arguments, no PRECONDITION_FAILED
    states = conn.queue_states(topology.system_queue_names())
    assert [s.name for s in states if not s.exists] == []
    assert all(s.ready == 0 for s in states)


def test_worker_may_declare_its_queue_before_the_backend(open_connection: Callable[..., Connection]) -> None:
    worker = open_connection("worker")
    assert worker.declare_job_queue("transfer") == "job_transfer"
    assert worker.declare_job_queue("job_transfer") == "job_transfer"  # a StepFlow step name
    backend = open_connection("backend")
    backend.declare_backend_topology()  # same exchange arguments as the worker's: accepted
    backend.publish([order("job_transfer")])
    assert [s.ready for s in backend.queue_states(["job_transfer"])] == [1]


def test_order_for_undeclared_job_type_lands_in_job_queue_not_found(conn: Connection) -> None:
    conn.publish([order("job_nobody", job_id=7)])
    delivery = conn.get(topology.JOB_QUEUE_NOT_FOUND)
    assert delivery is not None
    assert (job_id(delivery), delivery.routing_key) == (7, "job_nobody")
    conn.ack(delivery.delivery_tag)


def test_response_with_unknown_routing_key_lands_in_job_response_not_found(conn: Connection) -> None:
    conn.publish([order("job_strange", job_id=3, exchange=topology.JOB_RESPONSE)])
    delivery = conn.get(topology.JOB_RESPONSE_NOT_FOUND)
    assert delivery is not None and delivery.routing_key == "job_strange"
    assert conn.queue_states([topology.JOB_COMPLETED])[0].ready == 0


def test_responses_reach_their_queues(conn: Connection) -> None:
    conn.publish(
        [order(name, i, topology.JOB_RESPONSE) for i, name in enumerate(topology.response_queue_names())]
    )
    assert [s.ready for s in conn.queue_states(topology.response_queue_names())] == [1, 1, 1]


# --- consume, ack, reject ----------------------------------------------------------------------------------


def test_declared_job_queue_gets_the_order_and_ack_removes_it(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    conn.publish([order(queue, job_id=1), order(queue, job_id=2)])
    received, _ = collect(conn, queue)
    wait_for(conn, lambda: len(received) == 2)
    assert [job_id(d) for d in received] == [1, 2]
    assert received[0].queue == queue and received[0].routing_key == queue and not received[0].redelivered
    conn.ack(received[1].delivery_tag, multiple=True)
    reopened = connect(conn.url)  # unacked messages would come back when conn closes: there must be none
    conn.close()
    try:
        assert reopened.get(queue) is None
        assert reopened.queue_states([topology.JOB_QUEUE_NOT_FOUND])[0].ready == 0
    finally:
        reopened.close()


def test_reject_dead_letters_with_x_death_naming_the_queue(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    conn.publish([order(queue, job_id=5)])
    received, _ = collect(conn, queue)
    wait_for(conn, lambda: len(received) == 1)
    # A job queue's own dead-letter exchange is the SDK's job_delayed (tests/test_topology.py): for good is this.
    conn.dead_letter(received[0])
    dead: list[Delivery] = []
    conn.consume(topology.JOB_DEAD_LETTER, dead.append)
    wait_for(conn, lambda: len(dead) == 1)
    assert job_id(dead[0]) == 5 and dead[0].routing_key == queue
    death = dead[0].headers["x-death"][0]
    assert (death["queue"], death["reason"], death["count"]) == (queue, "rejected", 1)
    assert death["exchange"] == topology.JOB_SUBMIT and list(death["routing-keys"]) == [queue]
    assert conn.queue_states([queue])[0].ready == 0


def test_reject_with_requeue_redelivers(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    conn.publish([order(queue)])
    received, _ = collect(conn, queue)
    wait_for(conn, lambda: len(received) == 1)
    conn.reject(received[0].delivery_tag, requeue=True)
    wait_for(conn, lambda: len(received) == 2)
    assert received[1].redelivered and received[1].body == received[0].body
    conn.ack(received[1].delivery_tag)


def test_prefetch_bounds_unacked_deliveries(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    conn.publish([order(queue, job_id=i) for i in range(5)])
    received, _ = collect(conn, queue, prefetch=2)
    wait_for(conn, lambda: len(received) == 2)
    drain(conn)
    assert len(received) == 2
    conn.ack(received[0].delivery_tag)
    wait_for(conn, lambda: len(received) == 3)
    drain(conn)
    assert [job_id(d) for d in received] == [0, 1, 2]


def test_consumers_share_a_queue_round_robin(open_connection: Callable[..., Connection]) -> None:
    first, second = open_connection("first"), open_connection("second")
    queue = first.declare_job_queue("transfer")
    got_first, _ = collect(first, queue, prefetch=1)
    got_second, _ = collect(second, queue, prefetch=1)
    first.publish([order(queue, job_id=i) for i in range(2)])
    wait_for(first, lambda: len(got_first) == 1)
    wait_for(second, lambda: len(got_second) == 1)
    assert {job_id(got_first[0]), job_id(got_second[0])} == {0, 1}


def test_close_with_unacked_redelivers_to_another_connection(
    open_connection: Callable[..., Connection],
) -> None:
    dying, survivor = open_connection("dying"), open_connection("survivor")
    queue = dying.declare_job_queue("transfer")
    dying.publish([order(queue, job_id=9)])
    received, _ = collect(dying, queue)
    wait_for(dying, lambda: len(received) == 1)
    assert not received[0].redelivered
    dying.close()
    dying.close()  # idempotent
    again, _ = collect(survivor, queue)
    wait_for(survivor, lambda: len(again) == 1)
    assert job_id(again[0]) == 9 and again[0].redelivered


def test_cancelled_consumer_gets_nothing_more(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    received, tag = collect(conn, queue)
    conn.publish([order(queue, job_id=1)])
    wait_for(conn, lambda: len(received) == 1)
    conn.cancel(tag)
    conn.publish([order(queue, job_id=2)])
    drain(conn)
    assert len(received) == 1
    assert conn.queue_states([queue])[0].ready == 1
    conn.ack(received[0].delivery_tag)  # a cancelled consumer's delivery can still be acked


# --- threads, states, get / purge -------------------------------------------------------------------------


def test_call_threadsafe_runs_the_callback_in_the_owner_thread(conn: Connection) -> None:
    ran_in: list[int] = []
    caller = threading.Thread(
        target=lambda: conn.call_threadsafe(lambda: ran_in.append(threading.get_ident()))
    )
    caller.start()
    caller.join(timeout=10)
    wait_for(conn, lambda: bool(ran_in))
    assert ran_in == [threading.get_ident()]


def test_queue_states_counts_ready_and_consumers_and_reports_missing_queues(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    conn.publish([order(queue, job_id=i) for i in range(3)])
    unknown, known = conn.queue_states(["job_nothing_here", queue])
    assert (unknown.name, unknown.exists) == ("job_nothing_here", False)
    assert (known.exists, known.ready, known.consumers) == (True, 3, 0)
    other = connect(conn.url, name="other")
    try:
        other.consume(queue, lambda d: None, prefetch=1)
        wait_for(conn, lambda: conn.queue_states([queue])[0].consumers == 1)
        wait_for(conn, lambda: conn.queue_states([queue])[0].ready == 2)
    finally:
        other.close()
    # the connection is still usable after a passive declare of a missing queue
    assert conn.queue_states([queue])[0].exists


def test_get_and_purge(conn: Connection) -> None:
    queue = conn.declare_job_queue("transfer")
    conn.publish([order(queue, job_id=i) for i in range(3)])
    first = conn.get(queue)
    assert first is not None and job_id(first) == 0 and first.queue == queue
    conn.ack(first.delivery_tag)
    assert conn.purge(queue) == 2
    assert conn.get(queue) is None
    with pytest.raises(BrokerError, match="no_such_queue"):
        conn.purge("no_such_queue")
    with pytest.raises(BrokerError, match="no_such_queue"):
        conn.get("no_such_queue")
    assert conn.queue_states([queue])[0].ready == 0  # still usable


def test_publish_to_a_missing_exchange_or_nowhere_fails_and_the_connection_stays_usable(
    conn: Connection,
) -> None:
    with pytest.raises(PublishFailed):
        conn.publish([order("x", exchange="no_such_exchange")])
    # Every exchange has an alternate (the SDK's topology): what routes nowhere is kept there, not refused.
    conn.publish([order("nobody_listens", exchange=topology.WORKER_RESPONSE)])
    assert conn.queue_states([topology.WORKER_RESPONSE_NOT_FOUND])[0].ready == 1
    conn.publish([order(topology.WORKER_STATUS, exchange=topology.WORKER_RESPONSE)])
    assert conn.queue_states([topology.WORKER_STATUS])[0].ready == 1


def test_direct_queue_receives_by_instance_broadcast_or_job_type(
    open_connection: Callable[..., Connection],
) -> None:
    worker = open_connection("worker")
    queue = worker.declare_direct_queue("w1", ["transfer"])
    assert queue == "direct_messaging_w1"
    received, _ = collect(worker, queue)
    sends = [{"instance_id": "w1"}, {"broadcast": True}, {"job_type": "transfer"}]
    worker.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", b"{}", headers=h) for h in sends])
    wait_for(worker, lambda: len(received) == 3)
    assert [d.headers for d in received] == sends
    # Every exchange has an alternate (the SDK's topology): a message to nobody is kept there, not refused.
    worker.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", b"{}", headers={"instance_id": "w2"})])
    assert worker.queue_states([topology.DIRECT_MESSAGING_NOT_FOUND])[0].ready == 1
    observer = open_connection("observer")
    worker.close()  # auto-delete: the queue goes with its last consumer
    wait_for(observer, lambda: not observer.queue_states([queue])[0].exists)


# --- errors -----------------------------------------------------------------------------------------------


def test_unsupported_scheme_is_a_broker_error() -> None:
    with pytest.raises(BrokerError, match="unsupported broker URL 'redis://u:\\*\\*\\*@h/'"):
        connect("redis://u:secret@h/")


@pytest.mark.rabbitmq
def test_bad_password_is_refused_with_the_password_masked(rabbitmq_url: str) -> None:
    bad = rabbitmq_url.replace("guest:guest@", "guest:s3cret-pw@")
    with pytest.raises(BrokerError) as info:
        connect(bad)
    message = str(info.value)
    assert "access refused" in message and "guest:***@" in message
    assert "s3cret-pw" not in message
    assert not isinstance(info.value, ConnectionLost)  # retrying will not fix it


@pytest.mark.rabbitmq
def test_unreachable_server_is_connection_lost(rabbitmq_url: str) -> None:
    with pytest.raises(ConnectionLost, match="cannot connect to amqp://guest:\\*\\*\\*@127.0.0.1:1/"):
        connect("amqp://guest:guest@127.0.0.1:1/")


@pytest.mark.rabbitmq
def test_amqp_connection_is_durable_and_memory_is_not(rabbitmq_url: str, memory_url: str) -> None:
    amqp, memory = connect(rabbitmq_url), connect(memory_url)
    try:
        assert (amqp.durable, memory.durable) == (True, False)
    finally:
        amqp.close()
        memory.close()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@host:5672/vh", "amqp://guest:***@host:5672/vh"),
        ("amqps://u:p%40ss@rabbit.example/%2F?cafile=/x", "amqps://u:***@rabbit.example/%2F?cafile=/x"),
        ("amqp://host/vh", "amqp://host/vh"),
        ("amqp://user@host/vh", "amqp://user@host/vh"),
        ("memory://", "memory://"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


# --- pure logic: topology names, matching, the memory broker's registry ----------------------------------


def test_job_queue_names() -> None:
    assert topology.job_queue("transfer") == "job_transfer"
    assert topology.job_queue("job_transfer") == "job_transfer"
    assert topology.job_type_of("job_transfer") == "transfer"
    assert topology.job_type_of(topology.job_queue("noop")) == "noop"
    spec = topology.job_queue_spec("noop")
    assert spec.durable and spec.dead_letter_exchange == topology.JOB_DELAYED  # the SDK's argument
    assert spec.bindings == (topology.Binding(topology.JOB_SUBMIT, "job_noop"),)
    with pytest.raises(ValueError):
        topology.job_queue("")


def test_every_binding_names_a_declared_exchange() -> None:
    exchanges = {e.name for e in topology.EXCHANGES}
    queues = (
        topology.BACKEND_QUEUES + topology.worker_topology("x")[1] + (topology.direct_queue_spec("i", ["t"]),)
    )
    assert {b.exchange for q in queues for b in q.bindings} <= exchanges
    assert {e.alternate_exchange for e in topology.EXCHANGES} - {None} <= exchanges
    assert {q.dead_letter_exchange for q in queues} - {None, ""} <= exchanges


@pytest.mark.parametrize(
    ("pattern", "key", "hit"),
    [
        ("job_a", "job_a", True),
        ("job_a", "job_b", False),
        ("#", "", True),
        ("#", "a.b.c", True),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("a.*", "a", False),
        ("a.#", "a", True),
        ("a.#.c", "a.x.y.c", True),
        ("*.b.#", "a.b", True),
        ("#.c", "a.b", False),
    ],
)
def test_topic_matching(pattern: str, key: str, hit: bool) -> None:
    assert topic_matches(pattern, key) is hit


def test_headers_matching() -> None:
    any_ = {"x-match": "any", "instance_id": "w1", "broadcast": True}
    assert headers_match(any_, {"broadcast": True})
    assert not headers_match(any_, {"instance_id": "w2"})
    assert not headers_match(any_, None)
    all_ = {"x-match": "all", "job_type": "t", "x": 1}
    assert headers_match(all_, {"job_type": "t", "x": 1, "other": 2})
    assert not headers_match(all_, {"job_type": "t"})


def test_memory_urls_name_brokers() -> None:
    a, b, c = (
        MemoryConnection("memory://"),
        MemoryConnection("memory://default"),
        MemoryConnection("memory://zz-other"),
    )
    try:
        a.declare_job_queue("shared")
        assert b.queue_states(["job_shared"])[0].exists
        assert not c.queue_states(["job_shared"])[0].exists
    finally:
        for conn in (a, b, c):
            conn.close()
        MemoryBroker.drop("memory://")
        MemoryBroker.drop("memory://zz-other")


def test_memory_redeclaration_with_other_arguments_is_refused(memory_url: str) -> None:
    conn = MemoryConnection(memory_url)
    conn.declare_job_queue("transfer")
    MemoryBroker.for_url(memory_url).queues["job_transfer"].spec.arguments.clear()  # an old queue, no DLX
    with pytest.raises(BrokerError, match="PRECONDITION_FAILED"):
        conn.declare_job_queue("transfer")


def test_memory_ack_of_an_unknown_tag_is_an_error(memory_url: str) -> None:
    conn = MemoryConnection(memory_url)
    with pytest.raises(BrokerError, match="unknown delivery tag 42"):
        conn.ack(42)


def test_memory_break_connection_wakes_the_owner_and_redelivers(memory_url: str) -> None:
    owner, other = MemoryConnection(memory_url, name="owner"), MemoryConnection(memory_url, name="other")
    queue = owner.declare_job_queue("transfer")
    owner.publish([order(queue)])
    received, _ = collect(owner, queue)
    wait_for(owner, lambda: len(received) == 1)
    breaker = threading.Thread(target=owner.break_connection)
    breaker.start()
    breaker.join(timeout=10)
    with pytest.raises(ConnectionLost):
        owner.process_events(5)
    delivery = other.get(queue)
    assert delivery is not None and delivery.redelivered
    other.close()


def test_memory_round_trip_of_many_messages(memory_url: str) -> None:
    conn = MemoryConnection(memory_url)
    queue = conn.declare_job_queue("noop")
    seen: list[int] = []

    def on_message(delivery: Delivery) -> None:
        seen.append(delivery.delivery_tag)
        conn.ack(delivery.delivery_tag)

    conn.consume(queue, on_message, prefetch=50)
    for batch in range(20):
        conn.publish([OutgoingMessage(topology.JOB_SUBMIT, queue, b"{}") for _ in range(500)])
        wait_for(conn, lambda expected=(batch + 1) * 500: len(seen) == expected)
    assert seen == list(range(1, 10_001))
    assert conn.queue_states([queue])[0].ready == 0 and conn.queue_states([queue])[0].unacked == 0


@pytest.mark.rabbitmq
def test_amqp_ack_of_an_unknown_tag_ends_the_connection(rabbitmq_url: str) -> None:
    # RabbitMQ closes the channel (406) and with it every consumer: the owner must reconnect.
    conn = connect(rabbitmq_url)
    try:
        conn.declare_backend_topology()
        conn.ack(42)
        with pytest.raises(ConnectionLost, match="PRECONDITION_FAILED|closed by the broker"):
            wait_for(conn, lambda: False, timeout=5)
    finally:
        conn.close()


def test_amqp_parameters_from_the_url(tmp_path: Path) -> None:
    from stepflow_tui.broker.amqp import HEARTBEAT, connection_parameters

    params = connection_parameters("amqp://u:p@rabbit:5673/v%2Fh", "stepflow-worker")
    assert (params.host, params.port, params.virtual_host, params.heartbeat) == (
        "rabbit",
        5673,
        "v/h",
        HEARTBEAT,
    )
    assert params.client_properties == {"connection_name": "stepflow-worker"}
    assert connection_parameters("amqp://u:p@rabbit/?heartbeat=5", "x").heartbeat == 5
    with pytest.raises(BrokerError, match="use amqps://"):
        connection_parameters("amqp://u:p@rabbit/?cafile=/x.pem", "x")
    with pytest.raises(BrokerError, match="cannot load TLS files for amqps://u:\\*\\*\\*@rabbit/"):
        connection_parameters(f"amqps://u:p@rabbit/?cafile={tmp_path / 'missing.pem'}", "x")
    with pytest.raises(BrokerError, match="invalid broker URL amqp://u:\\*\\*\\*@rabbit/"):
        connection_parameters("amqp://u:p@rabbit/?no_such_option=1", "x")


@pytest.mark.rabbitmq
def test_amqp_connection_closed_by_the_server_is_lost_and_its_unacked_come_back(rabbitmq_url: str) -> None:
    vhost = unquote(urlsplit(rabbitmq_url).path[1:])
    dying = connect(rabbitmq_url, name="dying")
    queue = dying.declare_job_queue("transfer")
    dying.publish([order(queue, job_id=4)])
    received, _ = collect(dying, queue)
    wait_for(dying, lambda: len(received) == 1)
    subprocess.run(
        ["rabbitmqctl", "close_all_connections", "--vhost", vhost, "test"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    with pytest.raises(ConnectionLost):
        wait_for(dying, lambda: False, timeout=10)
    with pytest.raises(ConnectionLost):  # and stays lost: the owner must reconnect
        dying.ack(received[0].delivery_tag)
    dying.close()
    survivor = connect(rabbitmq_url, name="survivor")
    try:
        again, _ = collect(survivor, queue)
        wait_for(survivor, lambda: len(again) == 1)
        assert job_id(again[0]) == 4 and again[0].redelivered
    finally:
        survivor.close()
