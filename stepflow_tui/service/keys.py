"""What the application holds (typed aiohttp app keys), shared by the route modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .auth import Tokens
    from .credentials import CredentialStore
    from .events import UpdateHub

BACKEND: web.AppKey[Any] = web.AppKey("backend", object)  # a Backend (or anything with its public API)
TOKENS: web.AppKey[Tokens] = web.AppKey("tokens")
CREDENTIALS: web.AppKey[CredentialStore | None] = web.AppKey("credentials")
HUB: web.AppKey[UpdateHub] = web.AppKey("hub")
#: Set when the service is stopping: commands are refused (503) from then on.
STOPPING: web.AppKey[dict[str, bool]] = web.AppKey("stopping", dict)
#: How often the event stream sends a heartbeat comment, in seconds.
HEARTBEAT: web.AppKey[float] = web.AppKey("heartbeat", float)
