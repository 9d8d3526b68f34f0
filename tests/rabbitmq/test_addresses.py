"""Several broker addresses on the one RabbitMQ of the test machine: a node that does not answer is skipped."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from stepflow_tui.broker.base import connect


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_the_first_node_that_answers_is_used_and_named(rabbitmq_url: str) -> None:
    parts = urlsplit(rabbitmq_url)
    down = rabbitmq_url.replace(f"@{parts.netloc.rsplit('@', 1)[1]}", f"@127.0.0.1:{_closed_port()}", 1)
    assert down != rabbitmq_url
    conn = connect(f"{down},{rabbitmq_url}", name="addresses-test", queue_type="quorum")
    try:
        assert conn.node.endswith(rabbitmq_url.rsplit("@", 1)[1])
        assert "guest:***@" in conn.node
        conn.declare_backend_topology()  # quorum queues on a single node work too
    finally:
        conn.close()
