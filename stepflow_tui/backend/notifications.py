"""Webhook calls the engine asked for (notification steps, notification hooks), made off the broker thread.

The broker loop calls `Notifier.pump` each round: it takes the engine's due calls and hands them to a few
sender threads, and applies the results that came back (a notification step's job completes or fails). Each
call has a timeout and bounded retries with a growing delay; a hook that still fails is shown as a notice and
changes nothing else: it never holds a workflow up.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from stepflow_tui.core.engine import Engine
from stepflow_tui.core.notifications import Notification

log = logging.getLogger("stepflow_tui.notifications")

TIMEOUT = 5.0  # seconds per attempt
ATTEMPTS = 3
FIRST_DELAY = 0.5  # seconds before the second attempt; doubles after each
SENDERS = 4


def where(url: str) -> str:
    """A URL shown to an operator: scheme, host and path only (a query string may hold a token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def post(notification: Notification, timeout: float = TIMEOUT) -> None:
    """Make one HTTP call; raises OSError (URLError, HTTPError for a status >= 300, timeouts) when it fails."""
    request = urllib.request.Request(notification.url, data=notification.body.encode("utf-8"),
                                     method=notification.method, headers=dict(notification.headers))
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http and https only)
        if response.status >= 300:
            raise urllib.error.HTTPError(notification.url, response.status, response.reason, response.headers,
                                         None)


def deliver(notification: Notification, send: Callable[[Notification], None] = post, attempts: int = ATTEMPTS,
            first_delay: float = FIRST_DELAY, sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Call until it works, at most ``attempts`` times; None on success, else why it failed (one line)."""
    delay = first_delay
    reason = "not sent"
    for attempt in range(1, attempts + 1):
        try:
            send(notification)
            return None
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a bad URL
            reason = str(getattr(exc, "reason", exc)) or type(exc).__name__
        if attempt < attempts:
            sleep(delay)
            delay *= 2
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    return f"{notification.method} {where(notification.url)} failed after {tries}: {reason}"


class Notifier:
    """Sends the engine's webhook calls; results come back to the broker thread through `pump`."""

    def __init__(self, engine: Engine, lock: threading.RLock, notice: Callable[[str], None],
                 wake: Callable[[], None], send: Callable[[Notification], None] = post) -> None:
        self._engine = engine
        self._lock = lock
        self._notice = notice
        self._wake = wake
        self._send = send
        self._results: deque[tuple[Notification, str | None]] = deque()
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="stepflow-notify")
        self.pending = 0  # calls handed to the senders and not back yet (broker thread only)

    def pump(self) -> bool:
        """Broker thread: hand the due calls to the senders; apply the finished ones. True if any finished."""
        with self._lock:
            due = self._engine.take_notifications()
        for notification in due:
            self.pending += 1
            self._pool.submit(self._run, notification)
        finished = False
        while self._results:
            notification, error = self._results.popleft()
            self.pending -= 1
            finished = True
            if notification.job_id is not None:
                with self._lock:
                    self._engine.on_notification_sent(notification.job_id, error)
            elif error is not None:
                self._notice(f"workflow #{notification.workflow_id}: notification hook "
                             f"{notification.label!r} ({notification.event}): {error}")
            else:
                log.info("workflow #%d: hook %r told of %s", notification.workflow_id, notification.label,
                         notification.event)
        return finished

    def _run(self, notification: Notification) -> None:
        try:
            error = deliver(notification, self._send)
        except Exception as exc:  # a bug in a sender must still report back, or the job would wait forever
            log.exception("notification to %s failed", where(notification.url))
            error = f"{type(exc).__name__}: {exc}"
        self._results.append((notification, error))
        self._wake()

    def stop(self) -> None:
        """Stop taking calls; those in progress finish in the background (daemon-like: not awaited)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
