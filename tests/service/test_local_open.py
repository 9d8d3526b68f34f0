"""`stepflow backend`'s tokens: a full token always exists (generated into ``<state>.token``, 0600, for Media
Cloud AI workers), local clients on a loopback service may still omit it — except for credential values — and
the worker's login then fetches a credential with the bare token, as the SDK sends it."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepflow_tui.backend.backend import Backend
from stepflow_tui.service import CredentialStore, ServiceThread, create_app
from stepflow_tui.service.auth import Tokens, service_tokens, token_path

from .conftest import Client


def test_service_tokens_always_have_a_full_token(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    local = service_tokens(state, "127.0.0.1", env={})
    assert local.full and local.local_open and local.read_only is None
    assert token_path(state).read_text().strip() == local.full
    assert stat.S_IMODE(token_path(state).stat().st_mode) == 0o600
    assert service_tokens(state, "127.0.0.1", env={}) == local  # read back: workers keep their password
    assert not service_tokens(state, "0.0.0.0", env={}).local_open
    assert service_tokens(state, "::1", env={"STEPFLOW_API_TOKEN": "t"}) == Tokens("t", None, False)
    assert not service_tokens(state, "127.0.0.1", env={"STEPFLOW_API_READ_TOKEN": "r"}).local_open


@pytest.fixture
def local_open(backend: Backend, tmp_path: Path) -> Iterator[tuple[Client, str]]:
    tokens = service_tokens(tmp_path / "state.json", "127.0.0.1", env={})
    app = create_app(backend, token=tokens.full, credentials=CredentialStore.beside(tmp_path / "state.json"),
                     local_open=tokens.local_open)
    thread = ServiceThread(app)
    try:
        yield Client(thread.start()), tokens.full
    finally:
        thread.stop()


def test_local_clients_without_a_token_may_do_all_but_read_credentials(local_open: tuple[Client, str],
                                                                      tmp_path: Path) -> None:
    client, token = local_open
    CredentialStore.beside(tmp_path / "state.json").set("S3", "s3cr3t")
    assert client.get("/api/workflows").status == 200
    assert client.post("/api/workflows", {"identifier": "quick"}).status == 201
    assert client.get("/api/credentials/S3").status == 403
    assert client.get("/api/workflows", token="wrong").status == 401  # a token sent is a token checked
    assert client.get("/api/step_flow").body["version"] == "1.8.1"  # >= 1.8: the SDK asks for the black list
    assert client.post("/api/sessions", {"session": {"email": "w@x", "password": "guess"}}).status == 401
    login = client.post("/api/sessions", {"session": {"email": "w@x", "password": token}})
    access = login.body["access_token"]
    for header in (access, f"Bearer {access}"):
        found = client.get("/api/credentials/S3", headers={"Authorization": header})
        assert found.status == 200 and found.body["data"]["value"] == "s3cr3t"
