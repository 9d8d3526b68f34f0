"""`RemoteBackend`: the backend's public API over a running service's HTTP API (stepflow_tui/service), so a
workbench or a CLI command can attach to ``stepflow backend`` instead of owning the state.

Reads are synchronous HTTP calls; commands return `concurrent.futures.Future`s (run on a small thread pool)
whose failures are `RemoteCommandError` (an `EngineError`, as the local backend's); ``subscribe`` starts a
thread that reads the event stream and calls back with `Update`s, reconnecting when the stream drops."""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from stepflow_tui.backend.remote_events import EventStream
from stepflow_tui.backend.views import (
    JobView,
    StepStats,
    Update,
    WorkerView,
    WorkflowView,
    job_from_dict,
    stats_from_dict,
    worker_from_dict,
    workflow_from_dict,
)
from stepflow_tui.broker.base import QueueState
from stepflow_tui.core.definitions import WorkflowDefinition, definition_from_dict
from stepflow_tui.core.engine import EngineError

log = logging.getLogger("stepflow_tui.remote")
PAGE = 10_000
API_ENV = "STEPFLOW_API"
TOKEN_ENV = "STEPFLOW_API_TOKEN"


def find_service(state_path: Path, api: str | None = None,
                 env: Mapping[str, str] | None = None) -> tuple[str, str | None] | None:
    """Where to attach, as ``(url, token or None)``: ``api`` (``--api URL``), else ``$STEPFLOW_API``, else the
    URL a running service recorded in the state's lock file; None when no service runs for this state.
    The token: ``$STEPFLOW_API_TOKEN``, else the ``<state>.token`` file when this user can read it."""
    from stepflow_tui.store.lockfile import read_lock_info

    env = os.environ if env is None else env
    url = api or env.get(API_ENV) or read_lock_info(Path(state_path))[1]
    if not url:
        return None
    token = env.get(TOKEN_ENV)
    if not token:
        try:
            # the name service.auth.token_path gives it (not imported: a client needs no aiohttp)
            token = Path(str(state_path) + ".token").read_text(encoding="utf-8").strip() or None
        except OSError:
            token = None
    return url, token


class RemoteUnavailable(ConnectionError):
    """The service did not answer (not running, wrong address, network)."""


class RemoteCommandError(EngineError):
    """The service refused a command or a read; ``status`` is the HTTP status, ``field`` the bad field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class RemoteBackend:
    """The `WorkbenchBackend` protocol (and what the CLI uses) over HTTP."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 30.0,
                 stream_timeout: float = 40.0) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected an http:// or https:// URL of a stepflow service")
        self.url = url.rstrip("/")
        self.mode = f"attached to {self.url}"  # for the workbench's header
        self._parts = parts
        self._token = token
        self.timeout = timeout
        self.stream_timeout = stream_timeout  # > the service's heartbeat: a silent stream is a dead one
        self.broker_display_url = ""
        self.connection_state = "connecting"
        self.read_only = False
        self._callbacks: list[Callable[[Update], None]] = []
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stepflow-remote")
        self._stopping = threading.Event()
        self._events: EventStream | None = None

    # ------------------------------------------------------------------ HTTP
    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
        return cls(self._parts.hostname, self._parts.port, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """One API call; the decoded JSON answer. `RemoteCommandError` for an error status,
        `RemoteUnavailable` when nothing answers."""
        query = {k: v for k, v in (query or {}).items() if v is not None}
        target = self._parts.path + path + (f"?{urlencode(query)}" if query else "")
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(self.timeout)
        try:
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteUnavailable(f"{self.url}: {exc}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if response.status >= 400:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            raise RemoteCommandError(response.status, error.get("message") or f"HTTP {response.status}",
                                     error.get("field"))
        return answer

    def _get_or_none(self, path: str) -> Any:
        try:
            return self.request("GET", path)
        except RemoteCommandError as exc:
            if exc.status == 404:
                return None
            raise

    def _command(self, method: str, path: str, body: Any = None,
                 result: Callable[[Any], Any] = lambda answer: None) -> Future:
        return self._pool.submit(lambda: result(self.request(method, path, body)))

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Read the service's health (raises `RemoteUnavailable` / `RemoteCommandError` for a bad token)."""
        self._refresh_health()

    def _refresh_health(self) -> None:
        health = self.request("GET", "/api/health")
        self.broker_display_url = health.get("broker", "")
        self.connection_state = health.get("connection", "connected")
        self.read_only = bool(health.get("read_only"))

    def wait_until_running(self, timeout: float = 10.0) -> bool:
        """True once the service answers and its backend is connected to the broker."""
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not deadline.is_set():
                try:
                    self._refresh_health()
                    if self.connection_state == "connected":
                        return True
                except RemoteUnavailable:
                    pass
                deadline.wait(0.1)
            return False
        finally:
            timer.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following the event stream (the service keeps running). Idempotent."""
        self._stopping.set()
        if self._events is not None:
            self._events.stop(timeout)
        self._pool.shutdown(wait=False)
        self.connection_state = "stopped"

    def __enter__(self) -> RemoteBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ reads
    def definitions(self) -> list[WorkflowDefinition]:
        items = self.request("GET", "/api/definitions")["data"]
        return [definition_from_dict({k: v for k, v in item.items() if k not in ("version", "source")},
                                     item.get("source") or self.url) for item in items]

    def workflows(self) -> list[WorkflowView]:
        views: list[WorkflowView] = []
        while True:
            answer = self.request("GET", "/api/workflows", query={"offset": len(views), "limit": PAGE})
            views.extend(workflow_from_dict(item) for item in answer["data"])
            if not answer["data"] or len(views) >= answer["total"]:
                break
        return sorted(views, key=lambda view: view.id)

    def workflow(self, workflow_id: int) -> WorkflowView | None:
        answer = self._get_or_none(f"/api/workflows/{int(workflow_id)}")
        return None if answer is None else workflow_from_dict(answer)

    def running_count(self, workflow_id: int) -> int:
        answer = self._get_or_none(f"/api/workflows/{int(workflow_id)}")
        return 0 if answer is None else int(answer.get("running", 0))

    def jobs(self, workflow_id: int, step_id: int, offset: int = 0, limit: int = 200,
             status: str | None = None, after: int | None = None, before: int | None = None) -> list[JobView]:
        try:
            answer = self.request("GET", f"/api/workflows/{int(workflow_id)}/steps/{int(step_id)}/jobs", query={
                "offset": offset, "limit": limit, "status": status, "after": after, "before": before})
        except RemoteCommandError as exc:
            if exc.status == 404:
                return []
            raise
        return [job_from_dict(item) for item in answer["data"]]

    def job(self, job_id: int) -> dict[str, Any] | None:
        return self._get_or_none(f"/api/jobs/{int(job_id)}")

    def find_jobs(self, text: str, limit: int = 20) -> list[JobView]:
        return [job_from_dict(item) for item in self.request("GET", "/api/search/jobs",
                                                             query={"text": text, "limit": limit})["data"]]

    def step_stats(self, workflow_id: int, step_id: int) -> StepStats | None:
        answer = self._get_or_none(f"/api/workflows/{int(workflow_id)}/steps/{int(step_id)}/stats")
        return None if answer is None else stats_from_dict(answer)

    def count_failed(self, workflow_id: int, step_id: int | None = None) -> int:
        view = self.workflow(workflow_id)
        return 0 if view is None else view.failed_count(step_id)

    def queue_states(self) -> list[QueueState]:
        return [QueueState(**item) for item in self.request("GET", "/api/queues")["data"]]

    def workers(self) -> list[WorkerView]:
        return [worker_from_dict(item) for item in self.request("GET", "/api/workers")["data"]]

    def dropped_job_ids(self) -> list[int]:
        """The job ids whose orders must not run (the Media Cloud AI black list)."""
        return list(self.request("GET", "/api/step_flow/blacklist")["data"])

    # ------------------------------------------------------------------ commands
    def start_workflow(self, identifier: str, parameters: dict[str, Any]) -> Future:
        return self._command("POST", "/api/workflows", {"identifier": identifier, "parameters": parameters},
                             lambda answer: answer["id"])

    def retry_job(self, job_id: int) -> Future:
        return self._command("POST", f"/api/jobs/{int(job_id)}/retry")

    def retry_failed(self, workflow_id: int, step_id: int | None = None) -> Future:
        return self._command("POST", f"/api/workflows/{int(workflow_id)}/retry", {"step_id": step_id},
                             lambda answer: answer["retried"])

    def abort(self, workflow_id: int) -> Future:
        return self._command("POST", f"/api/workflows/{int(workflow_id)}/abort")

    def pause(self, workflow_id: int) -> Future:
        return self._command("POST", f"/api/workflows/{int(workflow_id)}/pause")

    def resume(self, workflow_id: int) -> Future:
        return self._command("POST", f"/api/workflows/{int(workflow_id)}/resume")

    def delete(self, workflow_id: int) -> Future:
        return self._command("DELETE", f"/api/workflows/{int(workflow_id)}")

    def cancel_job(self, job_id: int) -> Future:
        return self._command("POST", f"/api/jobs/{int(job_id)}/cancel")

    def redrive_dead_letters(self, queue: str | None = None, dry_run: bool = False) -> Future:
        return self._command("POST", "/api/dead-letters/redrive", {"queue": queue, "dry_run": dry_run},
                             lambda answer: answer["counts"])

    def prune(self, older_than: str, dry_run: bool = False) -> Future:
        """Delete finished workflows older than ``older_than`` (``"30d"``); resolves to
        ``{"workflow_ids", "jobs", "dry_run"}``."""
        return self._command("POST", "/api/prune", {"older_than": older_than, "dry_run": dry_run},
                             lambda answer: answer)

    # ------------------------------------------------------------------ updates
    def subscribe(self, callback: Callable[[Update], None], wait: float = 5.0) -> None:
        """``callback(update)`` on the stream thread, for each update the service sends. The first call opens
        the stream and waits (up to ``wait`` seconds) until the service confirms it, so no later change is
        missed."""
        self._callbacks.append(callback)
        if self._events is None:
            self._events = EventStream(lambda: self._connection(self.stream_timeout), self._parts.path,
                                       self._headers, self._deliver, self._resync)
            self._events.start(wait)

    def _deliver(self, update: Update) -> None:
        if update.connection is not None:
            self.connection_state = update.connection
        for callback in list(self._callbacks):
            try:
                callback(update)
            except Exception:  # a subscriber's bug must not stop the stream
                log.exception("update subscriber failed")

    def _resync(self) -> None:
        """After a reconnection: updates were missed, so everything may have changed."""
        self._refresh_health()
        ids = frozenset(view.id for view in self.workflows())
        self._deliver(Update(workflow_ids=ids, queues=True, workers=True, connection=self.connection_state))
