"""The worker runner on real brokers: the embedded one (``memory://``) and RabbitMQ (``broker_url`` runs each
test on both). The test thread owns a client connection: it declares the backend topology, publishes orders to
``job_submit`` and takes results from ``job_completed`` / ``job_error`` with basic_get, so that once the worker
has stopped, draining the queues tells exactly what it published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import Connection, OutgoingMessage, connect
from stepflow_tui.core.protocol import (
    JobCompleted,
    JobFailed,
    JobOrder,
    decode_response,
    decode_worker_status,
)
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.runner import Worker

TIMEOUT = 30.0  # generous bound on any wait; a passing test never waits that long


def wait_until(predicate: Callable[[], bool], what: str, conn: Connection | None = None,
               timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` (pumping ``conn`` if given) until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if conn is not None:
            conn.process_events(0.02)
        else:
            time.sleep(0.02)


class Client:
    """The backend's side of the wire, reduced to what the tests need."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url, name="test-client")
        self.conn.declare_backend_topology()
        self.results: list[JobCompleted | JobFailed] = []

    def submit(self, job_type: str, job_id: int, **parameters: Any) -> None:
        params = [{"id": key, "type": "string", "value": value} for key, value in parameters.items()]
        self.publish_raw(job_type, JobOrder(job_id, params).encode())

    def publish_raw(self, job_type: str, body: bytes) -> None:
        self.conn.publish([OutgoingMessage(topology.JOB_SUBMIT, topology.job_queue(job_type), body)])

    def take(self, queue: str) -> list[bytes]:
        """Every message waiting in ``queue`` (acked)."""
        bodies = []
        while (delivery := self.conn.get(queue)) is not None:
            bodies.append(delivery.body)
            self.conn.ack(delivery.delivery_tag)
        return bodies

    def poll(self) -> list[JobCompleted | JobFailed]:
        for queue in (topology.JOB_COMPLETED, topology.JOB_ERROR):
            for body in self.take(queue):
                message = decode_response(queue, body)
                assert isinstance(message, JobCompleted | JobFailed)
                self.results.append(message)
        return self.results

    def wait_results(self, count: int) -> list[JobCompleted | JobFailed]:
        wait_until(lambda: len(self.poll()) >= count, f"{count} results (have {len(self.results)})", self.conn)
        return self.results

    def ready(self, queue: str) -> int:
        return self.conn.queue_states([queue])[0].ready

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client(broker_url: str) -> Iterator[Client]:
    c = Client(broker_url)
    yield c
    c.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts; each is stopped (grace 0) at the end even if the test failed."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop(grace=0)
    for worker in started:
        assert worker.wait_stopped(TIMEOUT), "worker did not stop"


def start(workers: list[Worker], url: str, implementations: dict[str, Any], **options: Any) -> Worker:
    worker = Worker(url, implementations, **options)
    workers.append(worker)
    worker.start_in_thread()
    assert worker.wait_ready(TIMEOUT), f"worker did not start: {worker.failure}"
    return worker


def noop(ctx: JobContext) -> dict[str, Any]:
    return {"destination_paths": [f"/out/{ctx.job_id}.txt"], "outputs": {"n": ctx.job_id}}


def test_every_order_gets_exactly_one_result(broker_url: str, client: Client, workers: list[Worker]) -> None:
    worker = start(workers, broker_url, {"noop": noop}, concurrency=4)
    for job_id in range(1, 61):
        client.submit("noop", job_id)
    client.wait_results(60)
    worker.stop(grace=5)
    assert worker.wait_stopped(TIMEOUT)
    results = client.poll()  # anything published after the first 60 would be a duplicate
    assert Counter(r.job_id for r in results) == Counter(range(1, 61))
    assert all(isinstance(r, JobCompleted) for r in results)
    by_id = {r.job_id: r for r in results}
    assert isinstance(by_id[7], JobCompleted)
    assert by_id[7].destination_paths == ["/out/7.txt"]
    assert by_id[7].parameters == [{"id": "n", "type": "number", "value": 7}]
    assert by_id[7].instance_id == worker.instance_id
    # Every order was acked: none is waiting or held (unacked is only known on the embedded broker).
    state = client.conn.queue_states(["job_noop"])[0]
    assert (state.ready, state.unacked) == (0, 0)
    # A job whose result was ready by the time its progression 0 would leave sends the result alone.
    progressions = [decode_response(topology.JOB_PROGRESSION, body) for body in client.take("job_progression")]
    assert {p.job_id for p in progressions} <= set(range(1, 61))


def test_a_running_job_reports_progression_0_before_its_result(broker_url: str, client: Client,
                                                                workers: list[Worker]) -> None:
    release = threading.Event()

    def held(ctx: JobContext) -> None:
        assert release.wait(TIMEOUT)

    start(workers, broker_url, {"held": held})
    client.submit("held", 3)
    progressions: list[Any] = []
    wait_until(lambda: bool(progressions.extend(
        decode_response(topology.JOB_PROGRESSION, body) for body in client.take("job_progression")) or progressions),
        "progression 0 of the running job", client.conn)
    assert [(p.job_id, p.progression) for p in progressions] == [(3, 0)]
    assert client.poll() == []  # still running
    release.set()
    [result] = client.wait_results(1)
    assert isinstance(result, JobCompleted) and result.job_id == 3
    assert client.take("job_progression") == []  # nothing more: the result says the rest


def test_failing_job_reports_message_and_traceback(broker_url: str, client: Client,
                                                   workers: list[Worker]) -> None:
    def explode(ctx: JobContext) -> None:
        raise ValueError(f"cannot read {ctx.param('path')}")

    start(workers, broker_url, {"explode": explode})
    client.submit("explode", 5, path="/data/missing.txt")
    [result] = client.wait_results(1)
    assert isinstance(result, JobFailed)
    assert result.job_id == 5
    assert result.message == "ValueError: cannot read /data/missing.txt"
    assert not result.stopped
    assert result.traceback is not None
    assert "in explode" in result.traceback
    assert result.traceback.splitlines()[-1] == "ValueError: cannot read /data/missing.txt"


def test_bad_return_value_and_cancellation_become_errors(broker_url: str, client: Client,
                                                         workers: list[Worker]) -> None:
    def bad(ctx: JobContext) -> Any:
        return 42  # not a result shape normalize_result accepts

    def cancelled(ctx: JobContext) -> None:
        ctx.cancelled.set()
        ctx.check_cancelled()

    start(workers, broker_url, {"bad": bad, "cancelled": cancelled}, concurrency=2)
    client.submit("bad", 1)
    client.submit("cancelled", 2)
    results = {r.job_id: r for r in client.wait_results(2)}
    assert isinstance(results[1], JobFailed) and results[1].message.startswith("TypeError: ")
    assert isinstance(results[2], JobFailed) and results[2].stopped and results[2].message == "stopped"


def test_garbage_order_is_dead_lettered_and_worker_carries_on(broker_url: str, client: Client,
                                                              workers: list[Worker]) -> None:
    start(workers, broker_url, {"noop": noop})
    client.publish_raw("noop", b"this is not an order")
    client.submit("noop", 9)
    [result] = client.wait_results(1)
    assert isinstance(result, JobCompleted) and result.job_id == 9
    dead: list[bytes] = []
    wait_until(lambda: bool(dead.extend(client.take(topology.JOB_DEAD_LETTER)) or dead), "a dead letter",
               client.conn)
    assert dead == [b"this is not an order"]


def test_concurrency_runs_n_jobs_at_once(broker_url: str, client: Client, workers: list[Worker]) -> None:
    # Each job waits at a barrier of 3: with fewer than 3 jobs at once it would break (and the job fail).
    barrier = threading.Barrier(3, timeout=TIMEOUT)
    lock = threading.Lock()
    running = 0
    peak = 0

    def gather(ctx: JobContext) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            barrier.wait()
        finally:
            with lock:
                running -= 1

    start(workers, broker_url, {"gather": gather}, concurrency=3)
    for job_id in range(1, 7):
        client.submit("gather", job_id)
    results = client.wait_results(6)
    assert all(isinstance(r, JobCompleted) for r in results), results
    assert peak == 3  # never more than the concurrency


def test_graceful_stop_finishes_running_job_and_requeues_the_rest(broker_url: str, client: Client,
                                                                  workers: list[Worker]) -> None:
    started = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def slow(ctx: JobContext) -> None:
        calls.append(ctx.job_id)
        started.set()
        assert release.wait(TIMEOUT)

    # Prefetch 2 with one slot: the worker holds a second order it has not started.
    worker = start(workers, broker_url, {"slow": slow}, concurrency=1, prefetch=2)
    client.submit("slow", 1)
    client.submit("slow", 2)
    assert started.wait(TIMEOUT)
    worker.stop(grace=TIMEOUT)
    # The unstarted order goes back to the queue at once, while job 1 still runs.
    wait_until(lambda: client.ready("job_slow") == 1, "the unstarted order to be requeued", client.conn)
    assert not worker.wait_stopped(0.2)
    release.set()
    assert worker.wait_stopped(TIMEOUT)
    [result] = client.poll()
    assert isinstance(result, JobCompleted) and result.job_id == 1
    assert calls == [1]
    statuses = [decode_worker_status(body) for body in client.take(topology.WORKER_STATUS)]
    assert statuses and statuses[-1].kind == "terminated"
    assert statuses[-1].instance_id == worker.instance_id
    # The order of job 2 is still there for another worker.
    assert client.ready("job_slow") == 1


def test_stop_after_grace_requeues_a_running_job(broker_url: str, client: Client,
                                                 workers: list[Worker]) -> None:
    started = threading.Event()
    finished = threading.Event()

    def stubborn(ctx: JobContext) -> None:
        started.set()
        try:
            ctx.wait(TIMEOUT)  # returns early (JobCancelled) once the runner gives up on the job
        finally:
            finished.set()

    worker = start(workers, broker_url, {"stubborn": stubborn})
    client.submit("stubborn", 3)
    assert started.wait(TIMEOUT)
    worker.stop(grace=0)
    assert worker.wait_stopped(TIMEOUT)
    assert finished.wait(TIMEOUT)  # the job was told to stop
    wait_until(lambda: client.ready("job_stubborn") == 1, "the running order to be requeued", client.conn)
    assert client.poll() == []  # no result for a job given back


def test_worker_announces_itself(broker_url: str, client: Client, workers: list[Worker]) -> None:
    worker = start(workers, broker_url, {"noop": noop}, concurrency=2, status_interval=0.1, label="No-op",
                   schemas={"noop": {"type": "object"}})
    discovery: list[bytes] = []
    wait_until(lambda: bool(discovery.extend(client.take(topology.WORKER_DISCOVERY)) or discovery),
               "a discovery message", client.conn)
    announced = decode_worker_status(discovery[0])
    assert announced.kind == "discovery"
    assert announced.instance_id == worker.instance_id
    assert announced.queue_name == "job_noop"
    assert announced.job_types == ["noop"]
    assert announced.label == "No-op"
    assert announced.concurrency == 2
    assert announced.pid == os.getpid()
    assert announced.parameters == {"noop": {"type": "object"}}
    assert announced.direct_messaging_queue_name == topology.direct_queue(worker.instance_id)
    statuses: list[bytes] = []
    wait_until(lambda: bool(statuses.extend(client.take(topology.WORKER_STATUS)) or statuses),
               "a status message", client.conn)
    status = decode_worker_status(statuses[0])
    assert (status.kind, status.activity, status.current_jobs) == ("status", "Idle", [])


def test_redelivered_order_already_answered_is_not_run_again(broker_url: str, client: Client,
                                                             workers: list[Worker]) -> None:
    """A result published whose ack was lost: the redelivered order gets the same result, without a rerun."""
    calls = Counter[int]()
    release = threading.Event()

    def job(ctx: JobContext) -> list[str]:
        calls[ctx.job_id] += 1
        if ctx.param("block"):
            assert release.wait(TIMEOUT)
        return [f"/out/{ctx.job_id}"]

    start(workers, broker_url, {"job": job}, concurrency=1, prefetch=1)
    client.submit("job", 7)
    client.wait_results(1)
    client.submit("job", 8, block="yes")
    wait_until(lambda: calls[8] == 1, "job 8 to start")
    # The worker's one prefetch slot is taken by job 8, so order 7 waits in the queue: take it and requeue it,
    # which marks it redelivered, as the broker does for the orders of a lost connection.
    client.submit("job", 7)
    delivery = None

    def got_it() -> bool:
        nonlocal delivery
        delivery = client.conn.get("job_job")
        return delivery is not None

    wait_until(got_it, "order 7 in the queue", client.conn)
    assert delivery is not None
    client.conn.reject(delivery.delivery_tag, requeue=True)
    release.set()
    results = client.wait_results(3)
    assert Counter(r.job_id for r in results) == Counter({7: 2, 8: 1})
    assert all(isinstance(r, JobCompleted) and r.destination_paths == [f"/out/{r.job_id}"] for r in results)
    assert calls == Counter({7: 1, 8: 1})
    wait_until(lambda: client.conn.queue_states(["job_job"])[0].ready == 0, "order 7 acked", client.conn)


def test_reconnects_and_does_not_run_a_redelivered_running_job_twice(memory_url: str,
                                                                     workers: list[Worker]) -> None:
    """Embedded broker only: it can cut a connection on demand (RabbitMQ would need its admin tools)."""
    client = Client(memory_url)
    calls = Counter[int]()
    started = threading.Event()
    release = threading.Event()

    def job(ctx: JobContext) -> None:
        calls[ctx.job_id] += 1
        started.set()
        assert release.wait(TIMEOUT)

    worker = start(workers, memory_url, {"job": job})
    client.submit("job", 1)
    assert started.wait(TIMEOUT)
    first = worker._conn
    assert first is not None
    first.break_connection()  # type: ignore[attr-defined]
    # The broker takes order 1 back; the worker reconnects and gets it again (redelivered) while it runs.
    wait_until(lambda: worker._conn is not None and worker._conn is not first and worker.wait_ready(0),
               "the worker to reconnect")
    wait_until(lambda: client.conn.queue_states(["job_job"])[0].unacked == 1, "the redelivery", client.conn)
    release.set()
    [result] = client.wait_results(1)
    assert isinstance(result, JobCompleted) and result.job_id == 1
    assert calls == Counter({1: 1})
    wait_until(lambda: client.conn.queue_states(["job_job"])[0].unacked == 0, "order 1 acked", client.conn)
    client.close()


def test_result_of_a_job_finished_while_disconnected_is_published_after_reconnecting(
        memory_url: str, workers: list[Worker]) -> None:
    client = Client(memory_url)
    started = threading.Event()
    release = threading.Event()

    def job(ctx: JobContext) -> list[str]:
        started.set()
        assert release.wait(TIMEOUT)
        return ["/out/done"]

    worker = start(workers, memory_url, {"job": job})
    client.submit("job", 4)
    assert started.wait(TIMEOUT)
    first = worker._conn
    assert first is not None
    first.break_connection()  # type: ignore[attr-defined]
    release.set()  # finishes while the worker is (about to be) disconnected
    [result] = client.wait_results(1)
    assert isinstance(result, JobCompleted) and result.destination_paths == ["/out/done"]
    worker.stop(grace=5)
    assert worker.wait_stopped(TIMEOUT)
    state = client.conn.queue_states(["job_job"])[0]
    assert (state.ready, state.unacked) == (0, 0)
    assert client.poll() == [result]
    client.close()


def test_unusable_broker_url_stops_the_worker_with_a_failure(workers: list[Worker]) -> None:
    worker = Worker("redis://localhost:6379/0", {"noop": noop})
    workers.append(worker)
    worker.start_in_thread()
    assert worker.wait_stopped(TIMEOUT)
    assert worker.failure is not None
    assert "redis://" in str(worker.failure)


def test_worker_refuses_job_types_without_implementation() -> None:
    with pytest.raises(ValueError, match="no implementation for job type.*missing.*implemented: noop"):
        Worker("memory://", {"noop": noop}, job_types=["missing"])


# -- headless worker processes (RabbitMQ) ---------------------------------------------------------------------

def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["STEPFLOW_LOAD_PLUGINS"] = ""  # built-ins only: third-party plugins installed here play no part
    env.pop("STEPFLOW_BROKER_URL", None)
    return env


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stepflow_tui.worker", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=_worker_env())


def test_headless_worker_refuses_the_embedded_broker() -> None:
    result = _run_cli("--broker", "memory://", "--job-type", "noop")
    assert result.returncode == 2
    assert "--broker amqp://" in result.stderr


def test_headless_worker_refuses_an_unknown_job_type() -> None:
    result = _run_cli("--broker", "amqp://guest:guest@127.0.0.1:1/", "--job-type", "nope")
    assert result.returncode == 2
    assert "unknown job type 'nope'" in result.stderr
    assert "noop" in result.stderr and "sleep" in result.stderr  # names the known ones


def test_headless_worker_reports_an_unusable_broker() -> None:
    result = _run_cli("--broker", "redis://localhost", "--job-type", "noop")
    assert result.returncode == 2
    assert "unsupported broker URL" in result.stderr


@pytest.mark.rabbitmq
def test_headless_worker_exits_2_when_access_is_refused(rabbitmq_url: str) -> None:
    parts = urlsplit(rabbitmq_url)
    wrong = urlunsplit(parts._replace(netloc=f"{parts.username}:wrong-password@{parts.hostname}:{parts.port}"))
    result = _run_cli("--broker", wrong, "--job-type", "noop")
    assert result.returncode == 2
    assert "access refused" in result.stderr
    assert "wrong-password" not in result.stderr  # the password is never printed


@pytest.mark.rabbitmq
def test_headless_worker_serves_orders_and_exits_0_on_sigterm(rabbitmq_url: str) -> None:
    client = Client(rabbitmq_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepflow_tui.worker", "--broker", rabbitmq_url, "--job-type", "noop",
         "--concurrency", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_worker_env())
    try:
        discovery: list[bytes] = []
        wait_until(lambda: proc.poll() is not None
                   or bool(discovery.extend(client.take(topology.WORKER_DISCOVERY)) or discovery),
                   "the headless worker's discovery message", client.conn)
        assert proc.poll() is None, proc.communicate()
        instance_id = decode_worker_status(discovery[0]).instance_id
        for job_id in range(1, 21):
            client.submit("noop", job_id, source_path=f"/data/{job_id}.txt")
        results = client.wait_results(20)
        assert sorted(r.job_id for r in results) == list(range(1, 21))
        assert all(isinstance(r, JobCompleted) and r.instance_id == instance_id for r in results)
        assert {r.job_id: r.destination_paths for r in results}[3] == ["/data/3.txt"]
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, stderr
        statuses = [decode_worker_status(body) for body in client.take(topology.WORKER_STATUS)]
        assert statuses[-1].kind == "terminated" and statuses[-1].instance_id == instance_id
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        client.close()


HOLDING_WORKER = """
import sys, threading
from stepflow_tui.worker.runner import Worker
def hold(ctx):
    threading.Event().wait()  # never finishes: the process dies holding the order
Worker(sys.argv[1], {"hold": hold}, concurrency=2).run()
"""


@pytest.mark.rabbitmq
def test_orders_of_a_killed_worker_are_redelivered_and_completed(rabbitmq_url: str,
                                                                 workers: list[Worker]) -> None:
    client = Client(rabbitmq_url)
    proc = subprocess.Popen([sys.executable, "-c", HOLDING_WORKER, rabbitmq_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_worker_env())
    try:
        wait_until(lambda: proc.poll() is not None or bool(client.take(topology.WORKER_DISCOVERY)),
                   "the holding worker to start", client.conn)
        assert proc.poll() is None, proc.communicate()
        client.submit("hold", 1)
        client.submit("hold", 2)
        # Both orders are running in the doomed process once it reported progression 0 for each.
        held: set[int] = set()
        wait_until(lambda: bool(held.update(decode_response(topology.JOB_PROGRESSION, body).job_id
                                            for body in client.take(topology.JOB_PROGRESSION)))
                   or held == {1, 2}, "both orders to be held", client.conn)
        proc.kill()
        proc.communicate(timeout=TIMEOUT)
        rescuer = start(workers, rabbitmq_url, {"hold": noop}, concurrency=2)
        results = client.wait_results(2)
        assert sorted(r.job_id for r in results) == [1, 2]
        assert all(isinstance(r, JobCompleted) and r.instance_id == rescuer.instance_id for r in results)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        client.close()


def test_stop_process_direct_message_cancels_a_running_job(broker_url: str, client: Client,
                                                           workers: list[Worker]) -> None:
    started = threading.Event()

    def patient(ctx: JobContext) -> None:
        started.set()
        ctx.wait(TIMEOUT)  # raises JobCancelled as soon as the job is cancelled

    worker = start(workers, broker_url, {"patient": patient})
    client.submit("patient", 11)
    assert started.wait(TIMEOUT)
    # What the backend sends to stop one job on the worker that runs it.
    client.conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", b'{"type": "stop_process", "job_id": 11}',
                                         headers={"instance_id": worker.instance_id}, persistent=False)])
    [result] = client.wait_results(1)
    assert isinstance(result, JobFailed)
    assert (result.job_id, result.stopped, result.message) == (11, True, "stopped")
