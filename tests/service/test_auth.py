"""Tokens: 401 without one when configured, the read-only one refused commands, the Media Cloud AI login and
credentials (full token only); token files and the loopback rule."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from stepflow_tui.service import ServiceError, run_service
from stepflow_tui.service.auth import Tokens, is_loopback, resolve_tokens, token_path
from stepflow_tui.service.credentials import CredentialStore

from .conftest import READ_TOKEN, TOKEN, Client

COMMANDS = [("POST", "/api/workflows", {"identifier": "quick"}), ("POST", "/api/jobs/1/retry", None),
            ("POST", "/api/workflows/1/abort", None), ("DELETE", "/api/workflows/1", None),
            ("POST", "/api/prune", {"older_than": "1d"}), ("POST", "/api/dead-letters/redrive", {})]
READS = ["/api/health", "/api/definitions", "/api/workflows", "/api/workers", "/api/queues", "/api/openapi.json",
         "/api/step_flow", "/api/step_flow/blacklist", "/api/jobs/1", "/api/credentials/x"]


def test_token_required_everywhere(serve: Callable[..., Client]) -> None:
    client = serve(token=TOKEN, read_only_token=READ_TOKEN)
    for path in READS + ["/api/nope", "/api/events"]:
        answer = client.get(path, token=None)
        assert answer.status == 401, path
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get(path, token="wrong").status == 401
        assert TOKEN not in str(answer.body) and READ_TOKEN not in str(answer.body)
    for method, path, body in COMMANDS:
        assert client.call(method, path, body, token=None).status == 401
    assert client.get("/api/health").status == 200
    assert client.get("/api/health", headers={"Authorization": TOKEN}, token=None).status == 200  # bare token


def test_read_only_token_reads_but_never_commands(serve: Callable[..., Client]) -> None:
    client = serve(token=TOKEN, read_only_token=READ_TOKEN)
    for path in ["/api/health", "/api/workflows", "/api/step_flow/blacklist"]:
        assert client.get(path, token=READ_TOKEN).status == 200
    for method, path, body in COMMANDS:
        answer = client.call(method, path, body, token=READ_TOKEN)
        assert answer.status == 403, path
        assert "read-only" in answer.body["error"]["message"]
    assert client.post("/api/workflows", {"identifier": "quick"}).status == 201  # the full token may


def test_sessions_and_credentials(serve: Callable[..., Client], tmp_path: Path) -> None:
    CredentialStore.beside(tmp_path / "state.json").set("S3_SECRET", "s3cr3t-value")
    client = serve(token=TOKEN, read_only_token=READ_TOKEN)
    login = client.post("/api/sessions", {"session": {"email": "w@x", "password": TOKEN}}, token=None)
    assert login.status == 200
    access = login.body["access_token"]
    wrong = client.post("/api/sessions", {"session": {"email": "w@x", "password": "guess"}}, token=None)
    assert wrong.status == 401 and "guess" not in str(wrong.body)
    assert client.post("/api/sessions", {"session": "x"}, token=None).body["error"]["field"] == "session"
    # the SDK sends the access token as the Authorization header, without "Bearer"
    found = client.get("/api/credentials/S3_SECRET", token=None, headers={"Authorization": access})
    assert found.status == 200
    assert found.body["data"]["value"] == "s3cr3t-value" and found.body["data"]["key"] == "S3_SECRET"
    assert set(found.body["data"]) == {"id", "key", "value", "inserted_at"}
    assert client.get("/api/credentials/S3_SECRET", token=READ_TOKEN).status == 403
    assert client.get("/api/credentials/NOPE").status == 404
    assert client.get("/api/credentials/bad%20key").status == 400
    assert client.get("/api/step_flow").body["application"] == "stepflow-tui"


def test_without_tokens_credentials_are_not_served(client: Client, tmp_path: Path) -> None:
    CredentialStore.beside(tmp_path / "state.json").set("K", "v")
    assert client.get("/api/credentials/K").status == 403
    assert client.post("/api/sessions", {"session": {"email": "a", "password": "b"}}).status == 200


def test_tokens_role_and_loopback() -> None:
    tokens = Tokens(TOKEN, READ_TOKEN)
    assert (tokens.role(TOKEN), tokens.role(READ_TOKEN), tokens.role("x"), tokens.role(None)) == (
        "full", "read", None, None)
    assert not Tokens().required
    assert all(is_loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.com", "::"))


def test_resolve_tokens(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert resolve_tokens(state, "127.0.0.1", env={}) == Tokens()
    assert not token_path(state).exists()
    generated = resolve_tokens(state, "0.0.0.0", env={})
    assert generated.full and token_path(state).read_text().strip() == generated.full
    assert stat.S_IMODE(token_path(state).stat().st_mode) == 0o600
    assert resolve_tokens(state, "127.0.0.1", env={}).full == generated.full  # the file is read back
    from_env = resolve_tokens(state, "0.0.0.0", env={"STEPFLOW_API_TOKEN": "a", "STEPFLOW_API_READ_TOKEN": "b"})
    assert from_env == Tokens("a", "b")
    with pytest.raises(ValueError):
        resolve_tokens(state, "0.0.0.0", env={"STEPFLOW_API_TOKEN": "a", "STEPFLOW_API_READ_TOKEN": "a"})


def test_run_service_rejects_bad_listen(tmp_path: Path) -> None:
    from stepflow_tui.backend.backend import BackendConfig

    with pytest.raises(ServiceError, match="HOST:PORT"):
        run_service(BackendConfig(db_path=tmp_path / "s.json"), listen="nowhere")
