"""Our worker reads the SDK's direct-message variants (stop/resume_consuming_jobs, add_to_black_list with one
job_id, stop_worker), announces itself on the SDK's routes, and puts a poison order in job_dead_letter itself
instead of rejecting it into job_delayed's 5 s loop."""

from __future__ import annotations

from helpers import wait_for

from stepflow_tui.broker import topology
from stepflow_tui.broker.base import Connection, OutgoingMessage, connect
from stepflow_tui.core import protocol
from stepflow_tui.worker.runner import Worker


def direct(conn: Connection, message: protocol.DirectMessage) -> None:
    conn.publish([OutgoingMessage(topology.DIRECT_MESSAGING, "", message.encode(),
                                  headers={"broadcast": topology.BROADCAST}, persistent=False)])


def order(conn: Connection, job_id: int) -> None:
    conn.publish([OutgoingMessage(topology.JOB_SUBMIT, topology.job_queue("rec"),
                                  protocol.JobOrder(job_id, []).encode())])


def ready(conn: Connection, queue: str) -> int:
    return conn.queue_states([queue])[0].ready


class Answers(list):
    """The results the worker published, taken from the result queues as they come."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def take(self) -> Answers:
        for queue in (topology.JOB_COMPLETED, topology.JOB_ERROR):
            while (delivery := self.conn.get(queue)) is not None:
                self.append((queue, protocol.decode_response(queue, delivery.body)))
                self.conn.ack(delivery.delivery_tag)
        return self


def start(memory_url: str, ran: list[int]) -> tuple[Worker, Connection, Answers]:
    """A worker of job type ``rec`` (recording the job ids it runs) and a connection playing the backend."""
    worker = Worker(memory_url, {"rec": lambda ctx: ran.append(ctx.job_id)}, concurrency=1, status_interval=60)
    conn = connect(memory_url, name="test")
    conn.declare_backend_topology()
    worker.start_in_thread()
    assert worker.wait_ready(5)
    return worker, conn, Answers(conn)


def test_stop_and_resume_consuming_jobs(memory_url: str) -> None:
    ran: list[int] = []
    worker, conn, answers = start(memory_url, ran)
    try:
        direct(conn, protocol.DirectMessage(protocol.STOP_CONSUMING_JOBS))
        wait_for(lambda: conn.queue_states([topology.job_queue("rec")])[0].consumers == 0, 5, "no consumer")
        order(conn, 1)
        conn.process_events(0.3)
        assert ready(conn, topology.job_queue("rec")) == 1 and ran == []  # left for another worker
        direct(conn, protocol.DirectMessage(protocol.RESUME_CONSUMING_JOBS))
        wait_for(lambda: ran == [1] and len(answers.take()) == 1, 5, "the order run")
    finally:
        worker.stop(grace=1)


def test_a_black_listed_job_id_in_the_sdks_form_is_not_run(memory_url: str) -> None:
    ran: list[int] = []
    worker, conn, answers = start(memory_url, ran)
    try:
        for message in protocol.black_list(protocol.ADD_TO_BLACK_LIST, [7]):
            direct(conn, message)
        wait_for(lambda: 7 in worker._dropped, 5, "the worker to know the black list")
        order(conn, 7)
        order(conn, 8)
        wait_for(lambda: len(answers.take()) == 2, 5, "two answers")
        assert ran == [8]
        stopped = [m for _, m in answers if isinstance(m, protocol.JobFailed)]
        assert [(m.job_id, m.stopped, m.message) for m in stopped] == [(7, True, protocol.DROPPED_REASON)]
    finally:
        worker.stop(grace=1)


def test_stop_worker_stops_it_and_it_says_so_on_worker_terminated(memory_url: str) -> None:
    worker, conn, _ = start(memory_url, [])
    try:
        direct(conn, protocol.DirectMessage(protocol.STOP_WORKER))
        wait_for(lambda: (conn.process_events(0.01), ready(conn, topology.WORKER_STATUS) > 0)[1], 5,
                 "the terminated message")
        delivery = conn.get(topology.WORKER_STATUS)
        assert delivery is not None and delivery.routing_key == topology.WORKER_TERMINATED
        assert protocol.decode_worker_status(delivery.body, delivery.routing_key).kind == "terminated"
        discovery = conn.get(topology.WORKER_DISCOVERY)
        assert discovery is not None and (discovery.exchange, discovery.routing_key) == (
            topology.JOB_RESPONSE, topology.WORKER_DISCOVERY)
    finally:
        worker.stop(grace=1)


def test_a_poison_order_goes_to_job_dead_letter_not_round_job_delayed(memory_url: str) -> None:
    worker, conn, _ = start(memory_url, [])
    try:
        conn.publish([OutgoingMessage(topology.JOB_SUBMIT, topology.job_queue("rec"), b"not json")])
        dead = wait_for(lambda: conn.get(topology.JOB_DEAD_LETTER), 5, "the dead letter")
        assert dead.body == b"not json" and dead.headers["x-death"][0]["queue"] == topology.job_queue("rec")
        assert ready(conn, topology.JOB_DELAYED) == 0 and ready(conn, topology.JOB_REJECTED) == 0
    finally:
        worker.stop(grace=1)
