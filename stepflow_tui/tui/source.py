"""How backend updates reach the UI thread: ``subscribe`` callbacks (`stepflow_tui.backend.WorkbenchBackend`)
run on a non-UI thread; the app only relays them (`UpdateRelay`) into a Textual message, merged
(`merge_updates`) while the UI is busy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from stepflow_tui.backend.views import Update, merge_updates


class UpdateRelay:
    """Collects updates from the backend's thread and wakes the UI once per batch.

    ``relay(update)`` is the subscribe callback: it merges into the pending update and calls ``wake()``
    (which posts a Textual message) only when nothing was pending, so a flood of updates costs the UI one
    refresh at a time. The UI calls `take()` to get everything merged so far."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._pending: Update | None = None

    def __call__(self, update: Update) -> None:
        with self._lock:
            was_idle = self._pending is None
            self._pending = update if was_idle else merge_updates(self._pending, update)
        if was_idle:
            self._wake()

    def take(self) -> Update | None:
        """The merged pending update (or None), clearing it."""
        with self._lock:
            update, self._pending = self._pending, None
        return update

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._pending is not None
