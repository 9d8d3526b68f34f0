"""The HTTP API around a `Backend`: `create_app` builds the aiohttp application, `run_service` is
``stepflow backend`` (start the backend, serve until SIGTERM/SIGINT, refuse commands, flush, exit 0), and
`ServiceThread` serves an application from a thread (tests, or a process that embeds the service)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from stepflow_tui.core.runtime import tune_for_service

from . import commands, events, mcai, resources
from .auth import Tokens, auth_middleware, is_loopback, service_tokens
from .credentials import CredentialStore
from .errors import MAX_BODY, error_middleware
from .keys import BACKEND, CREDENTIALS, HEARTBEAT, HUB, STOPPING, TOKENS
from .metrics import setup_metrics
from .openapi import openapi_document
from .stepflow_routes import setup_stepflow

log = logging.getLogger("stepflow_tui.service")
DEFAULT_LISTEN = "127.0.0.1:4000"


class ServiceError(Exception):
    """The service cannot start (bad --listen, no token on a public address, state in use, port taken)."""


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def create_app(backend: Any, *, token: str | None = None, read_only_token: str | None = None,
               credentials: CredentialStore | None = None, heartbeat: float = events.DEFAULT_HEARTBEAT,
               local_open: bool = False) -> web.Application:
    """The application serving ``backend`` (a started `Backend`, or anything with its public API). With a
    token, every request needs it (or the read-only one, for reads) — except, with ``local_open``, a loopback
    client that sends none (credential values still need the token). The process hands the GIL over every
    millisecond from now on (`core.runtime.tune_for_service`)."""
    tune_for_service()
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=MAX_BODY)
    hub = events.UpdateHub()
    app[BACKEND] = backend
    app[TOKENS] = Tokens(token or None, read_only_token or None, local_open)
    app[CREDENTIALS] = credentials
    app[HUB] = hub
    app[STOPPING] = {"stopping": False}
    app[HEARTBEAT] = heartbeat
    backend.subscribe(hub.publish)  # the backend has no unsubscribe: one hub per application, for its life
    app.router.add_get("/api/openapi.json", _openapi)
    app.router.add_get("/api/events", events.events)
    app.add_routes(resources.routes)
    app.add_routes(commands.routes)
    app.add_routes(mcai.routes)
    setup_stepflow(app)
    setup_metrics(app)

    async def end_streams(app: web.Application) -> None:
        app[STOPPING]["stopping"] = True
        hub.shutdown()

    app.on_shutdown.append(end_streams)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:4000`` for IPv6) -> (host, port); `ServiceError` if malformed."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ServiceError(f"--listen {listen!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host, int(port_text)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ServiceThread:
    """Serve ``app`` on ``host:port`` from a thread of its own (port 0: a free one). ``url`` once started."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self.url: str | None = None
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="stepflow-service", daemon=True)

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; return the URL (raises `ServiceError` if the address cannot be bound)."""
        self._thread.start()
        if not self._started.wait(timeout) or self._error is not None:
            raise ServiceError(f"cannot listen on {self.host}:{self.port}: {self._error or 'timeout'}")
        return self.url

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            self._loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            self.url = _url(self.host, self.port)
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the streams and the listener, then end the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)


async def _serve(app: web.Application, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ServiceError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    on_ready(_url(host, runner.addresses[0][1]))
    await stop.wait()
    log.info("stopping: no more commands; closing the event streams")
    app[STOPPING]["stopping"] = True
    await runner.cleanup()


def run_service(config: Any, listen: str = DEFAULT_LISTEN, *, env: Mapping[str, str] | None = None,
                on_ready: Callable[[str], None] | None = None) -> int:
    """``stepflow backend``: run a `Backend` for ``config`` (a `BackendConfig`) behind the HTTP API on
    ``listen`` until SIGTERM/SIGINT; flush and return 0. Raises `ServiceError` for what the operator must fix."""
    from stepflow_tui.backend.backend import Backend
    from stepflow_tui.store import StoreError
    from stepflow_tui.store.lockfile import held_lock

    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_listen(listen)
    db_path = Path(config.db_path)
    try:
        tokens = service_tokens(db_path, host, env)
    except (ValueError, OSError) as exc:  # equal tokens, or a token file that cannot be written
        raise ServiceError(f"API tokens: {exc}") from None
    if not is_loopback(host) and not tokens.full:
        raise ServiceError(f"refusing to listen on {host} without an API token")
    backend = Backend(config)
    try:
        backend.start()
    except StoreError as exc:
        raise ServiceError(str(exc)) from None

    def ready(url: str) -> None:
        lock = held_lock(db_path)
        if lock is not None:
            lock.set_api(url)
        log.info("serving the API on %s (broker %s, state %s, token %s)", url, backend.broker_display_url,
                 db_path, "optional for local clients" if tokens.local_open else "required")
        if on_ready is not None:
            on_ready(url)

    try:
        app = create_app(backend, token=tokens.full, read_only_token=tokens.read_only,
                         credentials=CredentialStore.beside(db_path), local_open=tokens.local_open)
        asyncio.run(_serve(app, host, port, ready))
    finally:
        backend.stop()  # flushes the state and releases the lock file (which forgets the API address)
    log.info("stopped")
    return 0
