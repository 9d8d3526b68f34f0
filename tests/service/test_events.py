"""The event stream: an update after a workflow starts, heartbeats, and the fan-out's coalescing."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Callable

from stepflow_tui.backend.views import Update
from stepflow_tui.service.events import UpdateHub, encode_event

from .conftest import TOKEN, Client


def open_stream(client: Client, token: str | None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(client.host, client.port, timeout=30)
    conn.request("GET", "/api/events", headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    assert response.readline() == b": connected\n"
    return response


def next_event(response: http.client.HTTPResponse) -> tuple[str, dict | None]:
    """The next event (name, data) or comment (text, None)."""
    name, data = "", None
    while True:
        line = response.readline().decode().rstrip("\n")
        if line.startswith(":"):
            return line, None
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data = json.loads(line[5:])
        elif not line and name:
            return name, data


def test_update_after_a_workflow_starts(serve: Callable[..., Client]) -> None:
    client = serve(token=TOKEN)
    stream = open_stream(client, TOKEN)
    workflow_id = client.post("/api/workflows", {"identifier": "quick"}).body["id"]
    seen: set[int] = set()
    while workflow_id not in seen:
        name, data = next_event(stream)
        if data is not None:
            assert name == "update" and set(data) == {"workflow_ids", "job_ids", "queues", "workers",
                                                      "connection", "messages"}
            seen.update(data["workflow_ids"])
    stream.close()


def test_heartbeat(serve: Callable[..., Client]) -> None:
    client = serve(heartbeat=0.05)
    stream = open_stream(client, None)
    comments = []
    while len(comments) < 2:
        name, data = next_event(stream)
        if data is None:
            comments.append(name)
    assert ": heartbeat" in comments
    stream.close()
    assert client.get("/api/health").status == 200


def test_hub_coalesces_for_a_slow_stream() -> None:
    async def scenario() -> Update | None:
        hub = UpdateHub()
        stream = hub.open()
        hub.publish(Update(workflow_ids=frozenset({1})))
        hub.publish(Update(job_ids=frozenset({5}), connection="connected"))
        await asyncio.wait_for(stream.ready.wait(), 5)
        update = stream.take()
        hub.close(stream)
        assert len(hub) == 0
        return update

    update = asyncio.run(scenario())
    assert update == Update(workflow_ids=frozenset({1}), job_ids=frozenset({5}), connection="connected")
    assert encode_event(update).startswith(b"event: update\ndata: {")
