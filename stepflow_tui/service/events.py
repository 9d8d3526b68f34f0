"""``GET /api/events``: the backend's coalesced updates as server-sent events (``event: update``, ``data:`` the
update as JSON), with a heartbeat comment every `HEARTBEAT` seconds so proxies and clients see a live stream.

The backend calls subscribers on its own thread: `UpdateHub` hands each update to every open stream's event
loop, where a slow stream merges what it has not sent yet (one pending update per stream, never a backlog)."""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

from stepflow_tui.backend.views import Update, merge_updates, update_to_dict

from .keys import HEARTBEAT, HUB

DEFAULT_HEARTBEAT = 15.0


class _Stream:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: Update | None = None
        self.ready = asyncio.Event()

    def offer(self, update: Update) -> None:  # on the stream's loop
        self.pending = update if self.pending is None else merge_updates(self.pending, update)
        self.ready.set()

    def take(self) -> Update | None:
        update, self.pending = self.pending, None
        self.ready.clear()
        return update


class UpdateHub:
    """Fans the backend's updates out to the open event streams."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[_Stream] = set()
        self.closed = False

    def publish(self, update: Update) -> None:
        """The backend's subscribe callback (any thread)."""
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.offer, update)
            except RuntimeError:  # its loop is closed: the stream is going away
                pass

    def open(self) -> _Stream:
        stream = _Stream(asyncio.get_running_loop())
        with self._lock:
            self._streams.add(stream)
        return stream

    def close(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def shutdown(self) -> None:
        """Wake every stream so it ends (the service is stopping)."""
        self.closed = True
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            try:
                stream.loop.call_soon_threadsafe(stream.ready.set)
            except RuntimeError:
                pass

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)


def encode_event(update: Update) -> bytes:
    """One server-sent event for ``update``."""
    return b"event: update\ndata: " + json.dumps(update_to_dict(update)).encode() + b"\n\n"


async def events(request: web.Request) -> web.StreamResponse:
    """Stream updates until the client goes away or the service stops."""
    hub = request.app[HUB]
    heartbeat = request.app.get(HEARTBEAT, DEFAULT_HEARTBEAT)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    stream = hub.open()
    try:
        await response.write(b": connected\n\n")  # lets a client know the subscription is in place
        while not hub.closed:
            try:
                await asyncio.wait_for(stream.ready.wait(), timeout=heartbeat)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            update = stream.take()
            if update is not None:
                await response.write(encode_event(update))
    except ConnectionResetError:
        pass  # the client left
    finally:
        hub.close(stream)
    return response
