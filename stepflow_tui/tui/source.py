"""What the workbench needs from a backend, as a protocol: the real `Backend` and the test fake both fit.

Read methods copy under a lock and return quickly; command methods return `concurrent.futures.Future`s that
resolve on the backend's thread. ``subscribe`` callbacks run on a non-UI thread: the app only relays them
(`UpdateRelay`) into a Textual message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from stepflow_tui.backend.views import JobView, Update, WorkerView, WorkflowView
from stepflow_tui.broker.base import QueueState
from stepflow_tui.core.definitions import WorkflowDefinition


class WorkbenchBackend(Protocol):
    """The backend API the workbench uses (see stepflow_tui/backend/backend.py)."""

    broker_display_url: str  # password masked
    connection_state: str  # "connecting" | "connected" | "reconnecting" | "stopped"
    read_only: bool

    def subscribe(self, callback: Callable[[Update], None]) -> None: ...
    def definitions(self) -> list[WorkflowDefinition]: ...
    def workflows(self) -> list[WorkflowView]: ...
    def workflow(self, workflow_id: int) -> WorkflowView | None: ...
    def jobs(self, workflow_id: int, step_id: int, offset: int = 0, limit: int = 200,
             status: str | None = None, after: int | None = None, before: int | None = None) -> list[JobView]: ...
    def job(self, job_id: int) -> dict[str, Any] | None: ...
    def count_failed(self, workflow_id: int, step_id: int | None = None) -> int: ...
    def queue_states(self) -> list[QueueState]: ...
    def workers(self) -> list[WorkerView]: ...
    def start_workflow(self, identifier: str, parameters: dict[str, str]) -> Future[int]: ...
    def retry_job(self, job_id: int) -> Future[None]: ...
    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> Future[int]: ...
    def abort(self, workflow_id: int) -> Future[None]: ...
    def pause(self, workflow_id: int) -> Future[None]: ...
    def resume(self, workflow_id: int) -> Future[None]: ...
    def delete(self, workflow_id: int) -> Future[None]: ...
    def cancel_job(self, job_id: int) -> Future[None]: ...
    def redrive_dead_letters(self, queue: str | None = None, dry_run: bool = False) -> Future[dict[str, int]]: ...


def merge_updates(first: Update, second: Update) -> Update:
    """One update that says everything both say (the later connection state wins)."""
    return Update(
        workflow_ids=first.workflow_ids | second.workflow_ids,
        job_ids=first.job_ids | second.job_ids,
        queues=first.queues or second.queues,
        workers=first.workers or second.workers,
        connection=second.connection if second.connection is not None else first.connection,
        messages=first.messages + second.messages,
    )


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
