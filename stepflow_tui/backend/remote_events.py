"""`EventStream`: follows a service's ``GET /api/events`` (server-sent events) on a thread of its own for
`RemoteBackend`, handing each update over, and reconnecting with a growing delay when the stream drops."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from collections.abc import Callable

from stepflow_tui.backend.views import Update, update_from_dict

log = logging.getLogger("stepflow_tui.remote")


class StreamRefused(ConnectionError):
    """The service answered the stream request with an error status (a bad token, ...)."""


class EventStream:
    """``open_connection()`` gives a new HTTP connection (its timeout longer than the service's heartbeat: a
    silent stream is a dead one); ``deliver(update)`` runs on the stream thread; ``resync()`` after each
    reconnection, when updates may have been missed."""

    def __init__(self, open_connection: Callable[[], http.client.HTTPConnection], base_path: str,
                 headers: Callable[[], dict[str, str]], deliver: Callable[[Update], None],
                 resync: Callable[[], None]) -> None:
        self._open_connection = open_connection
        self._path = base_path + "/api/events"
        self._headers = headers
        self._deliver = deliver
        self._resync = resync
        self._stopping = threading.Event()
        self._open = threading.Event()
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._follow, name="stepflow-remote-events", daemon=True)

    def start(self, wait: float) -> None:
        """Start following; wait up to ``wait`` seconds for the service to confirm the subscription."""
        self._thread.start()
        self._open.wait(wait)

    def stop(self, timeout: float) -> None:
        """Stop following (idempotent)."""
        self._stopping.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread's blocked read
            except OSError:
                pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _follow(self) -> None:
        delay = 0.2
        first = True
        while not self._stopping.is_set():
            try:
                self._read_stream(resync=not first)
                delay = 0.2
            except Exception as exc:  # any failure of a stream is a reason to open another one
                if self._stopping.is_set():
                    break
                log.info("event stream lost (%s); reconnecting in %.1f s", exc, delay)
            first = False
            if self._stopping.is_set():
                break
            self._deliver(Update(connection="reconnecting"))
            self._stopping.wait(delay)
            delay = min(delay * 2, 5.0)

    def _read_stream(self, resync: bool) -> None:
        conn = self._open_connection()
        try:
            conn.request("GET", self._path, headers={**self._headers(), "Accept": "text/event-stream"})
            response = conn.getresponse()
            if response.status != 200:
                raise StreamRefused(f"event stream refused: HTTP {response.status}")
            self._sock = conn.sock
            if resync:
                self._resync()
            self._read_events(response)
        finally:
            self._sock = None
            conn.close()

    def _read_events(self, response: http.client.HTTPResponse) -> None:
        data: list[str] = []
        while not self._stopping.is_set():
            line = response.readline()
            if not line:
                raise ConnectionError("the service closed the event stream")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith(":"):
                self._open.set()  # the service's first comment: subscribed
            elif text.startswith("data:"):
                data.append(text[5:].lstrip())
            elif not text and data:
                try:
                    update = update_from_dict(json.loads("\n".join(data)))
                except (ValueError, TypeError, AttributeError):
                    log.warning("ignored a malformed event")
                else:
                    self._deliver(update)
                data = []
