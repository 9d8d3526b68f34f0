"""Fixtures for the HTTP API: a real `Backend` on its own ``memory://`` broker and temp state, served by a
real aiohttp server on a free loopback port (`ServiceThread`), and a small HTTP client."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO_WORKFLOWS, step, workflow, write_workflows

from stepflow_tui.backend.backend import Backend, BackendConfig
from stepflow_tui.broker.memory import MemoryBroker
from stepflow_tui.core.definitions import load_definitions
from stepflow_tui.plugins import load_registry
from stepflow_tui.service import CredentialStore, ServiceThread, create_app

TOKEN = "full-token-for-tests"
READ_TOKEN = "read-token-for-tests"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]
    payload: bytes = b""  # the body as it came


class Client:
    """Raw HTTP calls to the service (bytes bodies allowed, for malformed requests)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = "default",
             raw: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        token = self.token if token == "default" else token
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for key, value in sent.items():
                conn.putheader(key, value)
            conn.putheader("Content-Length", str(len(data or b"")))
            conn.endheaders(data)
            response = conn.getresponse()
            payload = response.read()
            try:
                decoded = json.loads(payload) if payload else None
            except ValueError:
                decoded = payload
            return Answer(response.status, decoded, dict(response.headers), payload)
        finally:
            conn.close()

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.call("POST", path, body, **kwargs)


def test_definitions(tmp_path: Path) -> dict[str, Any]:
    """The repo's workflows plus ``slow`` (a 60 s sleep: stays running) and ``quick`` (one noop)."""
    extra = write_workflows(tmp_path / "extra.json", [
        workflow("slow", [step(1, "sleep", parameters=[{"id": "seconds", "type": "number", "value": 60}])]),
        workflow("quick", [step(1, "noop")]),
    ])
    found = load_definitions(REPO_WORKFLOWS) + load_definitions(extra)
    return {d.identifier: d for d in found}


test_definitions.__test__ = False  # a helper, not a test


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    url = f"memory://svc-{uuid.uuid4().hex[:10]}"
    config = BackendConfig(broker_url=url, db_path=tmp_path / "state.json", definitions=test_definitions(tmp_path),
                           registry=load_registry(), local_concurrency=4)
    running = Backend(config)
    running.start()
    assert running.wait_until_running(10)
    try:
        yield running
    finally:
        running.stop()
        MemoryBroker.drop(url)


@pytest.fixture
def serve(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """``serve(token=..., read_only_token=...)`` -> a `Client` of a server for ``backend``."""
    threads: list[ServiceThread] = []

    def start(token: str | None = None, read_only_token: str | None = None, heartbeat: float = 15.0) -> Client:
        app = create_app(backend, token=token, read_only_token=read_only_token, heartbeat=heartbeat,
                         credentials=CredentialStore.beside(tmp_path / "state.json"))
        thread = ServiceThread(app)
        threads.append(thread)
        return Client(thread.start(), token)

    yield start
    for thread in threads:
        thread.stop()


@pytest.fixture
def client(serve: Callable[..., Client]) -> Client:
    """A client of a server without tokens."""
    return serve()
