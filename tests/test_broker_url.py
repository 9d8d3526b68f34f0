"""Broker URLs: one parser and masker (broker/url.py). Generated URLs parse to what was written and mask every
secret; every command's output (-vv included) on a real RabbitMQ user whose password holds / # ? @ : never shows
it; `serve` hands the URL to its sessions by environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest
from helpers import REPO_WORKFLOWS, cli_command, cli_env, describe, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from stepflow_tui.broker.url import InvalidBrokerURL, mask_url, parse_broker_url

LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
#: Passwords start with upper-case letters no other part of a generated URL holds, so "not in" means "not shown".
SECRET_PREFIX = "PW"
names = st.text(LOWER + "-._", min_size=1, max_size=12).filter(lambda s: s[0] in LOWER)
passwords = st.text(LOWER + "/#?@:!$&'()*+,;=[]~ %", max_size=16).map(lambda s: SECRET_PREFIX + s)
hosts = st.one_of(names, st.sampled_from(["[::1]", "[2001:db8::7]", "127.0.0.1", "rabbit.example"]))
ports = st.one_of(st.none(), st.integers(1, 65535))
vhosts = st.one_of(st.none(), names)
options = st.lists(st.tuples(st.sampled_from(["heartbeat", "password", "token", "connection_attempts"]),
                             st.text(LOWER, min_size=1, max_size=6)), max_size=3)


def build(user: str, password: str, host: str, port: int | None, vhost: str | None,
          query: list[tuple[str, str]], *, encode: bool) -> str:
    secret = quote(password, safe="") if encode else password
    location = host + (f":{port}" if port is not None else "")
    path = f"/{vhost}" if vhost is not None else ""
    rest = "?" + "&".join(f"{k}={SECRET_PREFIX}{v}" if k in ("password", "token") else f"{k}={v}"
                          for k, v in query) if query else ""
    return f"amqp://{user}:{secret}@{location}{path}{rest}"


@settings(max_examples=400, deadline=None)
@given(names, passwords, hosts, ports, vhosts, options, st.booleans())
def test_generated_urls_parse_to_what_was_written_and_mask_every_secret(
        user: str, password: str, host: str, port: int | None, vhost: str | None,
        query: list[tuple[str, str]], encode: bool) -> None:
    if not encode and "%" in password:
        password = password.replace("%", "")  # a raw "%41" means "A": only the encoded form is unambiguous
    url = build(user, password, host, port, vhost, query, encode=encode)
    address = parse_broker_url(url)
    assert (address.username, address.password, address.host, address.port) == (user, password, host, port)
    assert address.vhost == (vhost if vhost is not None else "/")
    for shown in (mask_url(url), address.masked(), address.identity()):
        assert SECRET_PREFIX not in shown, shown
        assert host in shown  # IPv6 keeps its brackets
    assert mask_url(url).startswith(f"amqp://{user}:***@{host}")
    # pika gets a strict URL it reads back to the same credentials and vhost
    params = pika.URLParameters(address.for_pika())
    assert (params.credentials.username, params.credentials.password) == (user, password)
    assert params.virtual_host == address.vhost


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_masked_without_raising(text: str) -> None:
    for candidate in (text, "amqp://" + text, f"amqp://u:{SECRET_PREFIX}{text}@h/v"):
        shown = mask_url(candidate)
        if SECRET_PREFIX in candidate and "@" in candidate:
            assert SECRET_PREFIX not in shown.rpartition("@")[0], shown


@pytest.mark.parametrize(("url", "message"), [
    ("amqp://u:p@h:abc/v", "the port 'abc' is not a number"),
    ("amqp://u:p@h:99999/v", "the port '99999' is not a number"),
    ("redis://u:p@h/", "unsupported broker URL 'redis://u:***@h/'"),
    ("amqp://u:p@/v", "names no host"),
    ("localhost:5672", "is not a URL"),
])
def test_an_unusable_url_is_named_masked(url: str, message: str) -> None:
    with pytest.raises(InvalidBrokerURL, match=re.escape(message)) as info:
        parse_broker_url(url)
    assert ":p@" not in str(info.value)


def test_a_user_without_password_reaches_pika_with_an_empty_one() -> None:
    address = parse_broker_url("amqp://alice@h/v")
    assert address.password is None and address.masked() == "amqp://alice@h/v"
    params = pika.URLParameters(address.for_pika())  # pika itself crashes on amqp://alice@h/v
    assert (params.credentials.username, params.credentials.password) == ("alice", "")


# ------------------------------------------------------------------------------------------ every command, real RabbitMQ
TRICKY = "S3cret/PW#a?b@c:d"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def tricky_user(rabbitmq_url: str) -> Iterator[str]:
    """A RabbitMQ user whose password holds / # ? @ :, with every permission on the test's vhost; the URL is
    written raw, as an operator types it."""
    user = f"stepflow-{uuid.uuid4().hex[:8]}"
    vhost = rabbitmq_url.rpartition("/")[2]
    _rabbitmqctl("add_user", user, TRICKY)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"amqp://{user}:{TRICKY}@127.0.0.1:5672/{vhost}"
    finally:
        _rabbitmqctl("delete_user", user)


def _never_shown(text: str) -> None:
    for secret in (TRICKY, quote(TRICKY, safe=""), "S3cret"):
        assert secret not in text, text


def _until_then_stop(args: list[str], marker: str, cwd: Path, timeout: float = 60) -> str:
    proc = subprocess.Popen(cli_command(*args), cwd=cwd, env=cli_env(None, cwd / ".xdg"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seen = ""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    assert marker in seen, seen + rest
    return seen + rest


@pytest.mark.rabbitmq
def test_no_command_shows_a_password_with_special_characters(tricky_user: str, tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    run = run_cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={tmp_path}/m",
                  "--wait", "--local-workers", "-vv", "--broker", tricky_user, "--workflows", REPO_WORKFLOWS,
                  db=db, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, describe(run)
    _never_shown(run.stdout + run.stderr)
    assert "***" in run.stderr  # the URL is shown, masked
    outputs = [run.stdout + run.stderr]
    for args in (["wait", "1", "--local-workers"], ["queues"], ["dead-letters"], ["dead-letters", "--json"],
                 ["redrive", "--dry-run"], ["status"], ["status", "1", "--json"]):
        result = run_cli(*args, "-vv", "--broker", tricky_user, "--workflows", REPO_WORKFLOWS, db=db, cwd=tmp_path)
        assert result.returncode == 0, describe(result)
        outputs.append(result.stdout + result.stderr)
    outputs.append(_until_then_stop(["worker", "--job-type", "checksum", "-vv", "--broker", tricky_user],
                                    "consuming", tmp_path))
    for text in outputs:
        _never_shown(text)
    wrong = tricky_user.replace(TRICKY, TRICKY + "x")
    refused = run_cli("queues", "-vv", "--broker", wrong, cwd=tmp_path)
    assert refused.returncode == 2 and "ACCESS_REFUSED" in refused.stderr, describe(refused)
    _never_shown(refused.stdout + refused.stderr)


def test_serve_passes_the_url_by_environment_not_argv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stepflow_tui.cli import main

    seen: dict[str, object] = {}

    class FakeServer:
        def __init__(self, command: str, **options: object) -> None:
            seen["command"] = command
            seen["env"] = os.environ.get("STEPFLOW_BROKER_URL")

        def serve(self) -> None:
            pass

    fake = type(sys)("textual_serve.server")
    fake.Server = FakeServer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "textual_serve.server", fake)
    monkeypatch.delenv("STEPFLOW_BROKER_URL", raising=False)
    url = f"amqp://u:{TRICKY}@rabbit:5672/v"
    assert main(["serve", "--broker", url, "--db", str(tmp_path / "s.json")]) == 0
    assert seen["env"] == url
    _never_shown(str(seen["command"]))
    assert "--broker" not in str(seen["command"])
