"""The two I/O ends of issue 13's references and calls: a worker resolving credential references (ENV, BACKEND
through the service's API) and the backend's webhook delivery (timeout, bounded retries, reasons), the latter
against a real local HTTP server."""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from stepflow_features import WebhookServer

from stepflow_tui.backend.notifications import deliver, post, where
from stepflow_tui.core.notifications import Notification
from stepflow_tui.worker.context import JobContext
from stepflow_tui.worker.credentials import CredentialUnavailable, credentials_url, resolve

SECRET = "the-value-9f8e"


def test_env_store_reads_the_environment() -> None:
    parameter = {"id": "p", "type": "string", "store": "ENV", "value": "MY_KEY"}
    assert resolve(parameter, env={"MY_KEY": SECRET}) == SECRET
    with pytest.raises(CredentialUnavailable, match="'MY_KEY' .*not set"):
        resolve(parameter, env={})


def test_backend_store_asks_the_service_with_the_token() -> None:
    asked: list[tuple[str, str | None]] = []

    def get(url: str, token: str | None) -> bytes:
        asked.append((url, token))
        return json.dumps({"data": {"id": 1, "key": "K", "value": SECRET}}).encode()

    credential = {"id": "p", "type": "credential", "value": "K"}
    assert resolve(credential, env={"STEPFLOW_API": "http://h:4000/", "STEPFLOW_API_TOKEN": "t"}, get=get) == SECRET
    assert resolve({**credential, "store": "BACKEND"}, env={"BACKEND_HOSTNAME": "http://h:4000/api",
                                                             "BACKEND_PASSWORD": "p"}, get=get) == SECRET
    assert asked == [("http://h:4000/api/credentials/K", "t"), ("http://h:4000/api/credentials/K", "p")]


def test_backend_store_failures_name_the_key_never_a_value() -> None:
    def refused(url: str, token: str | None) -> bytes:
        raise urllib.error.HTTPError(url, 403, "Forbidden", None, None)  # type: ignore[arg-type]

    credential = {"id": "p", "type": "credential", "value": "K"}
    with pytest.raises(CredentialUnavailable, match="'K': the service answered HTTP 403"):
        resolve(credential, env={"STEPFLOW_API": "http://h"}, get=refused)
    with pytest.raises(CredentialUnavailable, match="neither STEPFLOW_API nor BACKEND_HOSTNAME"):
        credentials_url("K", {})
    with pytest.raises(CredentialUnavailable, match="store 'VAULT' is not supported"):
        resolve({**credential, "store": "VAULT"}, env={})


def test_a_job_asks_its_context_for_a_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", SECRET)
    ctx = JobContext(job_id=1, job_type="t", raw_parameters=[
        {"id": "key", "type": "string", "store": "ENV", "value": "MY_KEY"}, {"id": "plain", "value": "x"}])
    assert ctx.credential("key") == SECRET
    assert ctx.param("key") == "MY_KEY"  # the parameters hold the reference only
    with pytest.raises(CredentialUnavailable, match="not a credential reference"):
        ctx.credential("plain")


class Server(WebhookServer):
    """Answers with the next status of ``statuses`` (the last one repeats); ``hang`` seconds before answering."""

    def __init__(self, statuses: list[int], hang: float = 0.0) -> None:
        answers = list(statuses)
        super().__init__(lambda _path: answers.pop(0) if len(answers) > 1 else answers[0], hang)
        self.calls = self.received


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Server] = []

    def start(statuses: list[int], hang: float = 0.0) -> Server:
        servers.append(Server(statuses, hang))
        return servers[-1]

    yield start
    for server in servers:
        server.server.shutdown()


def call(url: str) -> Notification:
    return Notification(url=url + "/hook?token=abc", body='{"event":"x"}', workflow_id=1, label="h",
                        headers={"Content-Type": "application/json"})


def test_delivery_retries_until_it_works(serve: Any) -> None:
    server = serve([500, 502, 200])
    assert deliver(call(server.url), sleep=lambda _: None) is None
    assert [c["body"] for c in server.calls] == ['{"event":"x"}'] * 3
    assert server.calls[0]["type"] == "application/json"


def test_delivery_gives_up_after_its_attempts_with_a_reason_without_the_query(serve: Any) -> None:
    server = serve([500])
    delays: list[float] = []
    error = deliver(call(server.url), sleep=delays.append)
    assert error == f"POST {server.url}/hook failed after 3 attempts: HTTP 500"
    assert delays == [0.5, 1.0] and len(server.calls) == 3
    assert where("http://u:p@h:8/x?token=1") == "http://h:8/x"


def test_delivery_times_out(serve: Any) -> None:
    server = serve([200], hang=2.0)
    started = time.monotonic()
    error = deliver(call(server.url), lambda n: post(n, timeout=0.2), attempts=2, sleep=lambda _: None)
    assert error is not None and "timed out" in error
    assert time.monotonic() - started < 1.5


def test_delivery_to_nobody_is_a_reason_not_an_exception() -> None:
    error = deliver(call("http://127.0.0.1:9"), attempts=1)
    assert error is not None and error.startswith("POST http://127.0.0.1:9/hook failed after 1 attempt:")
