"""The API on RabbitMQ: a workflow runs with in-process workers, dead letters are listed (peeked, not
consumed) and counted for a redrive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for

from stepflow_tui import ops
from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker import topology
from stepflow_tui.broker.base import OutgoingMessage, connect
from stepflow_tui.plugins import load_registry
from stepflow_tui.service import ServiceThread, create_app

from .conftest import TOKEN, Client, test_definitions

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
def amqp_client(rabbitmq_url: str, tmp_path: Path) -> Iterator[Client]:
    config = BackendConfig(broker_url=rabbitmq_url, db_path=tmp_path / "state.json",
                           definitions=test_definitions(tmp_path), registry=load_registry(), local_workers=True)
    backend = Backend(config)
    backend.start()
    assert backend.wait_until_running(20)
    service = ServiceThread(create_app(backend, token=TOKEN))
    try:
        yield Client(service.start(), TOKEN)
    finally:
        service.stop()
        backend.stop()


def test_workflow_and_dead_letters(amqp_client: Client, rabbitmq_url: str) -> None:
    health = amqp_client.get("/api/health").body
    assert health["broker"].startswith("amqp://") and "guest:guest" not in health["broker"]
    workflow_id = amqp_client.post("/api/workflows", {"identifier": "quick"}).body["id"]
    wait_for(lambda: amqp_client.get(f"/api/workflows/{workflow_id}").body["status"] == "completed", 60,
             "the workflow completed on RabbitMQ")
    conn = connect(rabbitmq_url, name="test-dead-letter")
    try:
        conn.publish([OutgoingMessage(topology.JOB_DEAD_LETTER, "by.hand", b"no x-death here")])
    finally:
        conn.close()
    wait_for(lambda: amqp_client.get("/api/dead-letters").body["total"] == 1, 30, "the dead letter listed")
    letters = amqp_client.get("/api/dead-letters").body
    assert letters["exists"] and letters["data"][0]["excerpt"] == "no x-death here"
    plan = amqp_client.post("/api/dead-letters/redrive", {"dry_run": True}).body
    assert plan == {"counts": {ops.NO_ORIGIN: 1}, "dry_run": True}
    assert amqp_client.get("/api/dead-letters").body["total"] == 1  # listing and a dry run consume nothing
