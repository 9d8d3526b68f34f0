"""`RemoteBackend` against a real running server: start a workflow and see it complete through subscribe,
retry a failed job (the ``fail`` job type), commands' errors, and the stream's reconnection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import wait_for

from stepflow_tui.backend.remote import RemoteBackend, RemoteCommandError, RemoteUnavailable
from stepflow_tui.backend.views import Update
from stepflow_tui.core.engine import EngineError
from stepflow_tui.service import ServiceThread, create_app

from .conftest import READ_TOKEN, TOKEN, Client

TIMEOUT = 30.0


class Seen:
    """Collects the workflow ids and connection states of the updates a subscriber got."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workflow_ids: set[int] = set()
        self.connections: list[str] = []

    def __call__(self, update: Update) -> None:
        with self.lock:
            self.workflow_ids |= update.workflow_ids
            if update.connection:
                self.connections.append(update.connection)


def test_round_trip(serve: Callable[..., Client], tmp_path: Path) -> None:
    client = serve(token=TOKEN)
    remote = RemoteBackend(client.url, token=TOKEN)
    remote.start()
    try:
        assert remote.connection_state == "connected" and remote.broker_display_url.startswith("memory://")
        assert remote.wait_until_running(5)
        assert "failing_demo" in [d.identifier for d in remote.definitions()]
        seen = Seen()
        remote.subscribe(seen)
        marker = tmp_path / "marker"
        workflow_id = remote.start_workflow("failing_demo", {"marker": str(marker)}).result(TIMEOUT)
        wait_for(lambda: workflow_id in seen.workflow_ids and remote.workflow(workflow_id).status == "error",
                 TIMEOUT, "the workflow in error, seen through the stream")
        assert [w.id for w in remote.workflows()] == [workflow_id]
        assert remote.count_failed(workflow_id) == 1 and remote.count_failed(workflow_id, 2) == 1
        failed = remote.jobs(workflow_id, 2, status="error")
        assert len(failed) == 1 and failed[0].job_type == "fail" and "on purpose" in failed[0].error
        assert remote.job(failed[0].id)["status"] == "error"
        marker.write_text("fixed")
        assert remote.retry_job(failed[0].id).result(TIMEOUT) is None
        wait_for(lambda: remote.workflow(workflow_id).status == "completed", TIMEOUT, "the workflow completed")
        with pytest.raises(EngineError, match="completed"):
            remote.retry_job(failed[0].id).result(TIMEOUT)
        assert remote.retry_failed(workflow_id).result(TIMEOUT) == 0
        assert remote.workflow(424242) is None and remote.job(424242) is None
        assert remote.jobs(424242, 1) == [] and remote.running_count(workflow_id) == 0
        assert isinstance(remote.queue_states(), list) and isinstance(remote.workers(), list)
        assert remote.redrive_dead_letters(dry_run=True).result(TIMEOUT) == {}
        assert remote.prune("0s", dry_run=True).result(TIMEOUT)["workflow_ids"] == [workflow_id]
        remote.delete(workflow_id).result(TIMEOUT)
        assert remote.workflow(workflow_id) is None
    finally:
        remote.stop()
    assert remote.connection_state == "stopped"


def test_slow_workflow_commands(serve: Callable[..., Client]) -> None:
    client = serve()
    with RemoteBackend(client.url) as remote:
        workflow_id = remote.start_workflow("slow", {}).result(TIMEOUT)
        wait_for(lambda: remote.jobs(workflow_id, 1, status="processing"), TIMEOUT, "the sleep job running")
        remote.pause(workflow_id).result(TIMEOUT)
        assert remote.workflow(workflow_id).paused and remote.running_count(workflow_id) == 1
        remote.resume(workflow_id).result(TIMEOUT)
        remote.abort(workflow_id).result(TIMEOUT)
        assert remote.workflow(workflow_id).status == "aborted"
        job_id = remote.jobs(workflow_id, 1)[0].id
        assert job_id in remote.dropped_job_ids()
        with pytest.raises(RemoteCommandError) as error:
            remote.cancel_job(job_id).result(TIMEOUT)
        assert error.value.status == 409


def test_read_only_and_unreachable(serve: Callable[..., Client]) -> None:
    client = serve(token=TOKEN, read_only_token=READ_TOKEN)
    with RemoteBackend(client.url, token=READ_TOKEN) as remote:
        with pytest.raises(RemoteCommandError) as error:
            remote.start_workflow("quick", {}).result(TIMEOUT)
        assert error.value.status == 403
    with pytest.raises(RemoteCommandError) as error:
        RemoteBackend(client.url).start()
    assert error.value.status == 401
    with pytest.raises(RemoteUnavailable):
        RemoteBackend("http://127.0.0.1:1").start()
    with pytest.raises(ValueError):
        RemoteBackend("ftp://example.com")


def test_stream_reconnects(backend, tmp_path: Path) -> None:
    first = ServiceThread(create_app(backend))
    url = first.start()
    port = int(url.rsplit(":", 1)[1])
    remote = RemoteBackend(url)
    remote.start()
    seen = Seen()
    remote.subscribe(seen)
    try:
        first.stop()
        wait_for(lambda: "reconnecting" in seen.connections, TIMEOUT, "the stream seen lost")
        second = ServiceThread(create_app(backend), port=port)
        second.start()
        try:
            wait_for(lambda: seen.connections[-1] == "connected", TIMEOUT, "the stream back")
            workflow_id = remote.start_workflow("quick", {}).result(TIMEOUT)
            wait_for(lambda: workflow_id in seen.workflow_ids, TIMEOUT, "an update after the reconnection")
        finally:
            second.stop()
    finally:
        remote.stop()
