"""Several broker addresses (a RabbitMQ cluster) and the queue type of the queues the backend owns.

A cluster is given as one string: the nodes' URLs separated by commas,
``amqp://u:p@host1:5672/vh,amqp://u:p@host2:5672/vh`` (each a whole URL, so each may have its own credentials,
port and TLS options). A comma only separates two URLs where the next one starts with a scheme (``amqp://``),
so a password holding a comma stays whole. The string travels as one value through ``--broker``,
``STEPFLOW_BROKER_URL`` and the state, like a single URL.

Connecting tries the nodes in turn; after a connection was lost, the next attempt starts with the node after
the one that was lost (`NodeRotation`), so a failover does not wait on the node that just went down.
"""

from __future__ import annotations

import re
import threading

#: The ``x-queue-type`` of the queues the backend owns (response, worker and catch queues). Job queues keep the
#: SDK's arguments (classic, with ``x-max-priority``, which quorum queues refuse).
CLASSIC, QUORUM = "classic", "quorum"
QUEUE_TYPES = (CLASSIC, QUORUM)

# A comma followed by a scheme starts the next URL.
_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_urls(text: str) -> list[str]:
    """The node URLs of a broker string: ``"amqp://a,amqp://b"`` -> ``["amqp://a", "amqp://b"]``; a single URL
    gives a list of one."""
    return [part.strip() for part in _NEXT_URL.split(text.strip())]


def is_cluster(text: str) -> bool:
    """Whether a broker string names several nodes."""
    return len(split_urls(text)) > 1


def check_queue_type(queue_type: str) -> str:
    """``queue_type`` if it is one of `QUEUE_TYPES`, else a ValueError naming the choices."""
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"queue type {queue_type!r}: expected one of {', '.join(QUEUE_TYPES)}")
    return queue_type


class NodeRotation:
    """Which node of a cluster string to try first: after node i was lost, start with node i + 1.

    Shared by every connection of the process (the backend's reconnect loop opens a new connection each time),
    keyed by the broker string."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: dict[str, int] = {}

    def order(self, text: str) -> list[int]:
        """The node indexes of ``text`` in the order to try them."""
        count = len(split_urls(text))
        with self._lock:
            first = self._first.get(text, 0) % count
        return [(first + i) % count for i in range(count)]

    def connected(self, text: str, index: int) -> None:
        """Node ``index`` answered: the next connection tries it first again."""
        with self._lock:
            self._first[text] = index

    def lost(self, text: str, index: int) -> None:
        """The connection to node ``index`` was lost: the next connection tries the following node first."""
        with self._lock:
            self._first[text] = index + 1


#: The process-wide rotation `amqp.AmqpConnection` uses.
ROTATION = NodeRotation()
