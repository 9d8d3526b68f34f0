"""Unacked counts and totals from RabbitMQ's management API, and what the backend does without it."""

from __future__ import annotations

import io
import json
import threading
import urllib.error

import pytest

from stepflow_tui.backend.queue_counters import CountersPoller, with_counters
from stepflow_tui.broker.base import QueueState
from stepflow_tui.broker.management import ManagementAPI, QueueCounters, management_url, parse_queues


def test_management_url_follows_the_broker_url():
    assert management_url("amqp://u:p@rabbit:5672/prod").startswith("http://rabbit:15672/api/queues/prod?")
    assert management_url("amqp://rabbit").startswith("http://rabbit:15672/api/queues/%2F?")
    assert management_url("amqps://rabbit/a%2Fb").startswith("https://rabbit:15671/api/queues/a%2Fb?")


def test_parse_queues_reads_counters_and_tolerates_a_queue_never_used():
    payload = [{"name": "job_a", "messages_unacknowledged": 2, "message_stats": {"publish": 10, "deliver_get": 7}},
               {"name": "job_b", "messages_unacknowledged": 0}, {"no": "name"}]
    assert parse_queues(payload) == {"job_a": QueueCounters(2, 10, 7), "job_b": QueueCounters(0, 0, 0)}


def test_the_api_sends_the_broker_credentials_and_says_when_it_is_not_there():
    seen = []

    def opener(request, timeout):
        seen.append(request.get_header("Authorization"))
        return io.BytesIO(json.dumps([{"name": "job_a", "messages_unacknowledged": 1}]).encode())

    assert ManagementAPI("amqp://user:secret@h/v", opener=opener).queue_counters()["job_a"].unacked == 1
    assert seen == ["Basic dXNlcjpzZWNyZXQ="]

    def refused(request, timeout):
        raise urllib.error.URLError("connection refused")

    poller = CountersPoller(ManagementAPI("amqp://h/", opener=refused), 1.0, threading.Event())
    assert poller.poll_once() == 60.0 and poller.latest is None  # asks again in a minute


def test_with_counters_completes_passive_declares_or_says_unknown():
    states = [QueueState("job_a", True, 3, 0, 1), QueueState("job_gone", False)]
    unknown = with_counters(states, None, counts_unacked=False)
    assert unknown[0].unacked is None and unknown[1] == states[1]
    known = with_counters(states, {"job_a": QueueCounters(2, 10, 7)}, counts_unacked=False)
    assert (known[0].unacked, known[0].published, known[0].delivered) == (2, 10, 7)
    assert with_counters(states, None, counts_unacked=True) == states  # memory:// counts them itself


def test_the_memory_broker_counts_what_goes_in_and_out() -> None:
    from stepflow_tui.broker import topology
    from stepflow_tui.broker.base import OutgoingMessage, connect

    conn = connect("memory://counters-test")
    try:
        conn.declare_backend_topology()
        queue = conn.declare_job_queue("counted")
        conn.publish([OutgoingMessage(topology.JOB_SUBMIT, queue, b"{}") for _ in range(3)])
        delivery = conn.get(queue)
        assert delivery is not None
        (state,) = conn.queue_states([queue])
        assert (state.ready, state.unacked, state.published, state.delivered) == (2, 1, 3, 1)
    finally:
        conn.close()


@pytest.mark.rabbitmq
def test_rabbitmq_management_tells_unacked(rabbitmq_url: str) -> None:
    from helpers import wait_for

    from stepflow_tui.broker import topology
    from stepflow_tui.broker.base import OutgoingMessage, connect
    from stepflow_tui.broker.management import ManagementUnavailable

    api = ManagementAPI(rabbitmq_url)
    try:
        api.queue_counters()
    except ManagementUnavailable as exc:
        pytest.skip(f"rabbitmq_management is not enabled: {exc}")
    conn = connect(rabbitmq_url)
    try:
        conn.declare_backend_topology()
        queue = conn.declare_job_queue("counted")
        conn.publish([OutgoingMessage(topology.JOB_SUBMIT, queue, b"{}") for _ in range(3)])
        assert conn.get(queue) is not None  # held, not acked
        # the API's figures follow RabbitMQ's statistics interval: wait for them to show the delivery
        # (the message counters may come one statistics emission after the unacked count)
        found = wait_for(lambda: (c := api.queue_counters().get(queue)) is not None and c.unacked == 1
                         and c.published and c.delivered and c, 30, "the management API to show one unacked message and the "
                         "published count", interval=0.5)
        assert found.published == 3 and found.delivered == 1
    finally:
        conn.close()


@pytest.mark.rabbitmq
def test_stepflow_queues_shows_unknown_unacked_as_a_question_mark(rabbitmq_url: str, tmp_path, monkeypatch,
                                                                 capsys) -> None:
    from stepflow_tui.broker.base import connect
    from stepflow_tui.cli import broker as cli_broker
    from stepflow_tui.cli.root import main

    conn = connect(rabbitmq_url)
    try:
        conn.declare_backend_topology()
        conn.declare_job_queue("noop")
    finally:
        conn.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_broker, "_management_counters", lambda url: None)  # as without the plugin
    assert main(["queues", "--broker", rabbitmq_url]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("job_noop"))
    assert line.split()[1:4] == ["0", "?", "0"], out
    assert "unacked: '?' = unknown" in out


@pytest.mark.rabbitmq
def test_a_backend_on_rabbitmq_shows_unacked_from_the_management_api(rabbitmq_url: str, tmp_path) -> None:
    from helpers import wait_for

    from stepflow_tui.backend.backend import Backend, BackendConfig
    from stepflow_tui.broker.management import ManagementUnavailable

    try:
        ManagementAPI(rabbitmq_url).queue_counters()
    except ManagementUnavailable as exc:
        pytest.skip(f"rabbitmq_management is not enabled: {exc}")
    backend = Backend(BackendConfig(broker_url=rabbitmq_url, db_path=tmp_path / "state.json", queue_interval=0.2))
    backend.start()
    try:
        assert backend.wait_until_running(10), backend.last_error
        completed = wait_for(lambda: next((s for s in backend.queue_states() if s.name == "job_completed"
                                           and s.unacked is not None), None), 30, "job_completed's counters")
        assert completed.unacked == 0 and completed.published is not None
    finally:
        backend.stop()
