"""RabbitMQ's management API, read for what AMQP cannot tell: unacked counts and message totals per queue.

AMQP's passive declare gives a queue's ready messages and consumers only. When the ``rabbitmq_management``
plugin is enabled, ``GET /api/queues/<vhost>`` (same host, port 15672 — 15671 for ``amqps://`` — and the
broker URL's credentials) gives the rest. Its figures lag by RabbitMQ's statistics interval (5 s by default):
good for a panel, not for a test that waits on an ack.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

#: The columns asked for: the answer for a broker with many queues stays small.
COLUMNS = "name,messages_unacknowledged,message_stats.publish,message_stats.deliver_get"
TIMEOUT = 2.0  # seconds; the poller's thread waits, never the broker's


@dataclass(frozen=True, slots=True)
class QueueCounters:
    """What the management API adds to a passive declare."""

    unacked: int
    published: int  # messages routed to the queue since it was declared
    delivered: int  # deliveries and gets, redeliveries included


def management_url(broker_url: str) -> str:
    """``amqp://u:p@rabbit:5672/prod`` -> ``http://rabbit:15672/api/queues/prod`` (the default vhost is ``/``)."""
    parts = urlsplit(broker_url)
    scheme, port = ("https", 15671) if parts.scheme == "amqps" else ("http", 15672)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}/api/queues/{quote(vhost, safe='')}?columns={COLUMNS}"


def _credentials(broker_url: str) -> str:
    parts = urlsplit(broker_url)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def parse_queues(payload: Any) -> dict[str, QueueCounters]:
    """The counters of each queue in an ``/api/queues`` answer (a queue never used has no message_stats)."""
    counters = {}
    for item in payload if isinstance(payload, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        stats = item.get("message_stats") or {}
        counters[item["name"]] = QueueCounters(int(item.get("messages_unacknowledged") or 0),
                                               int(stats.get("publish") or 0), int(stats.get("deliver_get") or 0))
    return counters


class ManagementAPI:
    """Reads queue counters over HTTP; `queue_counters` raises `ManagementUnavailable` when it cannot."""

    def __init__(self, broker_url: str, *, opener: Callable[..., Any] | None = None) -> None:
        self.url = management_url(broker_url)
        self._auth = _credentials(broker_url)
        self._open = opener or urllib.request.urlopen

    def queue_counters(self) -> dict[str, QueueCounters]:
        """The counters of every queue of the vhost."""
        request = urllib.request.Request(self.url, headers={"Authorization": f"Basic {self._auth}"})
        try:
            with self._open(request, timeout=TIMEOUT) as answer:
                return parse_queues(json.load(answer))
        except (OSError, ValueError, urllib.error.URLError) as exc:  # refused, 401, not JSON: all "not here"
            raise ManagementUnavailable(f"{self.url.split('?')[0]}: {exc}") from None


class ManagementUnavailable(Exception):
    """The management API did not answer (plugin disabled, wrong credentials, firewall)."""
