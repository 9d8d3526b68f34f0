"""Bearer tokens: a full token (reads and commands) and a read-only one (reads only), compared in constant
time. Required on every request when any is configured; one is always configured on a non-loopback address
(`resolve_tokens` generates it into ``<state>.token``, mode 0600, when the environment gives none).

`stepflow backend` always has a full token (`service_tokens`), so that Media Cloud AI workers can log in with
it and fetch credentials; on a loopback address without ``STEPFLOW_API_TOKEN`` local clients may still omit
it (``local_open``), for everything but credential values."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from .errors import Handler, error_response
from .keys import TOKENS

log = logging.getLogger("stepflow_tui.service")

TOKEN_ENV = "STEPFLOW_API_TOKEN"
READ_TOKEN_ENV = "STEPFLOW_API_READ_TOKEN"
FULL, READ = "full", "read"
#: Paths anyone may call: the login of Media Cloud AI workers checks its own password.
PUBLIC_PATHS = frozenset({"/api/sessions"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Tokens:
    """The API tokens; ``local_open``: a loopback client without an ``Authorization`` header is served as
    the full token, except credential values."""

    full: str | None = None
    read_only: str | None = None
    local_open: bool = False

    @property
    def required(self) -> bool:
        return bool(self.full or self.read_only)

    def role(self, presented: str | None) -> str | None:
        """FULL, READ or None for a presented token (both compared, in constant time)."""
        if not presented:
            return None
        given = presented.encode()
        full = bool(self.full) and hmac.compare_digest(given, (self.full or "").encode())
        read = bool(self.read_only) and hmac.compare_digest(given, (self.read_only or "").encode())
        return FULL if full else READ if read else None


def token_path(state_path: Path, read_only: bool = False) -> Path:
    """``<state>.token`` (``<state>.read-token`` for the read-only one), beside the state."""
    return state_path.with_name(state_path.name + (".read-token" if read_only else ".token"))


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (only those may go without a token)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600 from creation)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_token_file(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def resolve_tokens(state_path: Path, host: str, env: Mapping[str, str] | None = None) -> Tokens:
    """The tokens for a service on ``host``: from the environment, else from the files beside the state;
    on a non-loopback address without any, a full token is generated into ``<state>.token``."""
    env = os.environ if env is None else env
    full = env.get(TOKEN_ENV) or _read_token_file(token_path(state_path))
    read_only = env.get(READ_TOKEN_ENV) or _read_token_file(token_path(state_path, read_only=True))
    if not full and not is_loopback(host):
        full = secrets.token_urlsafe(32)
        write_secret_file(token_path(state_path), full + "\n")
        log.warning("listening on %s: generated an API token into %s", host, token_path(state_path))
    if full and read_only and full == read_only:
        raise ValueError(f"{TOKEN_ENV} and {READ_TOKEN_ENV} must differ")
    return Tokens(full or None, read_only or None)


def service_tokens(state_path: Path, host: str, env: Mapping[str, str] | None = None) -> Tokens:
    """The tokens of ``stepflow backend``: `resolve_tokens`, plus a full token generated into ``<state>.token``
    when none is configured (workers log in with it). Local clients may omit it when listening on a loopback
    address and ``STEPFLOW_API_TOKEN`` does not ask for it."""
    env = os.environ if env is None else env
    tokens = resolve_tokens(state_path, host, env)
    full = tokens.full
    if not full:
        full = secrets.token_urlsafe(32)
        write_secret_file(token_path(state_path), full + "\n")
        log.info("generated an API token into %s (give it to Media Cloud AI workers as BACKEND_PASSWORD)",
                 token_path(state_path))
    local_open = is_loopback(host) and not env.get(TOKEN_ENV) and not tokens.read_only
    return Tokens(full, tokens.read_only, local_open)


def presented_token(request: web.Request) -> str | None:
    """The token in ``Authorization``: ``Bearer X`` (or a bare ``X``, as Media Cloud AI workers send it)."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, value = header.partition(" ")
    if value and scheme.lower() == "bearer":
        return value.strip()
    return header or None


def anonymous_local(request: web.Request, tokens: Tokens) -> bool:
    """A loopback client that sent no token, served as the full token (``local_open``)."""
    return (tokens.local_open and "Authorization" not in request.headers
            and is_loopback(request.remote or ""))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 without a valid token (when tokens are configured); 403 for a command with the read-only one."""
    tokens = request.app[TOKENS]
    if not tokens.required or request.path in PUBLIC_PATHS or anonymous_local(request, tokens):
        return await handler(request)
    role = tokens.role(presented_token(request))
    if role is None:
        return error_response(401, "a valid API token is required (Authorization: Bearer <token>)",
                              headers={"WWW-Authenticate": 'Bearer realm="stepflow"'})
    if role == READ and request.method not in READ_METHODS:
        return error_response(403, "the read-only token cannot send commands")
    return await handler(request)
