"""Reaching the broker from a command: a permanent failure (access refused, a missing vhost, an untrusted
certificate, a bad URL) ends the command at once with one line and exit 2; a transient one (refused connection,
a broker restarting) is retried with a countdown on stderr until ``--connect-timeout``, then exit 1 with the
last reason."""

from __future__ import annotations

import sys
import time
from typing import Any

from stepflow_tui.cli.options import BrokerUnreachable, UsageError

#: Seconds between two countdown lines on stderr.
COUNTDOWN_EVERY = 5.0
#: A first connection takes a moment: the countdown starts after this many seconds without one.
FIRST_NOTICE = 1.5


class Countdown:
    """Prints ``broker X unreachable (reason); giving up in N s`` every few seconds while a broker is down."""

    def __init__(self, command: str, broker: str, timeout: float) -> None:
        self.command = command
        self.broker = broker
        self.timeout = timeout
        self.since: float | None = None
        self._printed = 0.0

    def down(self, reason: str | None) -> None:
        """The broker is (still) unreachable: print the countdown, or raise `BrokerUnreachable` once it ran out."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        left = self.timeout - (now - self.since)
        if left <= 0:
            raise BrokerUnreachable(f"{self.command}: broker unreachable for {self.timeout:.0f} s "
                                    f"(--connect-timeout): {reason or self.broker}")
        if now - self.since >= FIRST_NOTICE and now - self._printed >= COUNTDOWN_EVERY:
            self._printed = now
            print(f"{self.command}: broker unreachable: {reason or self.broker}; retrying, giving up in "
                  f"{left:.0f} s", file=sys.stderr, flush=True)

    def up(self) -> None:
        """The broker answers again: the next outage gets the whole timeout."""
        self.since = None
        self._printed = 0.0


def permanent(command: str, broker: str, reason: str | None) -> UsageError:
    """The one line of a permanent broker failure (exit 2)."""
    reason = reason or "refused"
    return UsageError(f"{command}: {reason}" if broker in reason else f"{command}: broker {broker}: {reason}")


def check_backend(backend: Any, countdown: Countdown) -> None:
    """Raise when ``backend``'s broker connection failed for good (`UsageError`) or for longer than the
    countdown allows (`BrokerUnreachable`); print the countdown while it is down."""
    state = backend.connection_state
    if state == "error":
        raise permanent(countdown.command, countdown.broker, getattr(backend, "connection_reason", None))
    if state == "connected":
        countdown.up()
    elif state in ("connecting", "reconnecting"):
        countdown.down(getattr(backend, "connection_reason", None))


def await_backend(backend: Any, command: str, timeout: float) -> None:
    """Block until ``backend`` is connected: before a command sends work it could not send otherwise."""
    countdown = Countdown(command, backend.broker_display_url, timeout)
    while not backend.wait_until_running(0.2):
        check_backend(backend, countdown)


def connect_or_fail(url: str, name: str, command: str, timeout: float) -> Any:
    """A connection of a command's own (queues, dead-letters, redrive), retried while the failure is transient."""
    from stepflow_tui.broker.base import BrokerError, ConnectionLost, connect, mask_url

    countdown = Countdown(command, mask_url(url), timeout)
    while True:
        try:
            return connect(url, name=name)
        except ConnectionLost as exc:
            countdown.down(str(exc))
            time.sleep(min(1.0, max(0.1, timeout / 10)))
        except BrokerError as exc:
            raise UsageError(f"{command}: {exc}") from None
