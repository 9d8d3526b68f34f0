"""What the backend tells its subscribers: coalesced updates, notices, and the connection's state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from stepflow_tui.backend.views import Update
from stepflow_tui.core.model import State

log = logging.getLogger("stepflow_tui.backend")
#: Set on the log records of the connection's state: a command that reports it itself (countdown, one line)
#: leaves them out of its stderr.
CONNECTION_RECORD = "stepflow_connection"


class Updates:
    """Collects what changed (workflows, jobs, queues, workers, notices) and posts it as one `Update` to the
    subscribers, at most every ``interval`` seconds; also holds the connection's state and the last error."""

    def __init__(self, interval: float, broker_display_url: str) -> None:
        self.interval = interval
        self.broker_display_url = broker_display_url
        self.connection_state = "stopped"
        self.last_error: str | None = None
        self.connection_reason: str | None = None  # why the connection is not up (None while connected)
        self.changed_queues = False
        self.changed_workers = False
        self._subscribers: list[Callable[[Update], None]] = []
        self._changed_workflows: set[int] = set()
        self._changed_jobs: set[int] = set()
        self._messages: list[str] = []
        self._last_update = 0.0

    def subscribe(self, callback: Callable[[Update], None]) -> None:
        """``callback(update)`` runs in the broker thread, at most every ``interval`` seconds."""
        self._subscribers.append(callback)

    def collect(self, state: State) -> None:
        """Note the workflows and jobs the engine marked dirty (or deleted) since the last flush."""
        self._changed_workflows |= state.dirty_workflows | state.deleted_workflows
        self._changed_jobs |= state.dirty_jobs

    def notice(self, message: str) -> None:
        """Log ``message`` and show it to the operator with the next update."""
        log.warning(message)
        self._messages.append(message)

    def set_connection(self, state: str, message: str | None) -> None:
        """Record the connection's state (and why); a change is posted at once."""
        if message:
            if message != self.connection_reason:  # once per reason, not once per attempt
                log.warning("%s: %s", self.broker_display_url, message, extra={CONNECTION_RECORD: True})
            self.last_error = message
        self.connection_reason = message
        if state != self.connection_state:
            self.connection_state = state
            self.emit(force=True, connection=state)

    def emit(self, force: bool = False, connection: str | None = None) -> None:
        """Post what changed, unless the last update is too recent or nothing changed (``force``: anyway)."""
        now = time.monotonic()
        if not force and now - self._last_update < self.interval:
            return
        if not (force or self._changed_workflows or self._changed_jobs or self.changed_queues
                or self.changed_workers or self._messages):
            return
        update = Update(workflow_ids=frozenset(self._changed_workflows), job_ids=frozenset(self._changed_jobs),
                        queues=self.changed_queues, workers=self.changed_workers, connection=connection,
                        messages=tuple(self._messages))
        self._changed_workflows = set()
        self._changed_jobs = set()
        self.changed_queues = self.changed_workers = False
        self._messages = []
        self._last_update = now
        for callback in list(self._subscribers):
            try:
                callback(update)
            except Exception:  # a subscriber's bug must not stop the engine
                log.exception("update subscriber failed")
