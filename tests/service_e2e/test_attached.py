"""``stepflow backend`` as a real process on RabbitMQ with two ``stepflow worker`` processes, and the CLI
attached to it from other processes: run --wait, a run nobody follows, retry / abort / cancel while a client
is attached, SIGKILL mid-run then a restart that loses nothing, SIGTERM -> exit 0."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

from helpers import make_tree, wait_for

from stepflow_tui.backend.views import Update
from stepflow_tui.store import read_state
from stepflow_tui.store.lockfile import read_lock_info

from .conftest import ITEMS, STARTUP, Service

#: A workflow of a few short jobs on a busy machine.
TIMEOUT = 60.0


def started_id(result: subprocess.CompletedProcess[str]) -> int:
    """The id in ``workflow #N … started`` of a `stepflow run`."""
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if " started (" in line)
    return int(line.split()[1].lstrip("#"))


def test_run_wait_attached_then_a_run_nobody_follows_then_sigterm(service: Service, tmp_path: Path) -> None:
    source = tmp_path / "data"
    make_tree(source, {f"d{i % 3}/f{i}.bin": bytes([i]) * (i * 97) for i in range(12)})
    manifest = tmp_path / "MANIFEST"
    result = service.cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={manifest}",
                         "--wait")
    assert result.returncode == 0, result.stdout + result.stderr + service.log()
    assert f"(service: {service.url})" in result.stdout and "completed" in result.stdout
    check = subprocess.run(["sha256sum", "-c", str(manifest)], cwd=source, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == 12, check.stdout + check.stderr

    # Started, and nobody follows it: the service moves it through its steps to the end.
    second = tmp_path / "MANIFEST2"
    workflow_id = started_id(service.cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p",
                                         f"manifest={second}"))
    wait_for(lambda: service.workflow(workflow_id)["status"] == "completed", TIMEOUT,
             "the unfollowed workflow completed")
    assert subprocess.run(["sha256sum", "-c", str(second)], cwd=source, capture_output=True).returncode == 0
    status = service.cli("status", str(workflow_id))
    assert status.returncode == 0 and "completed" in status.stdout.splitlines()[0], status.stdout + status.stderr

    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(STARTUP) == 0, service.log()
    assert read_lock_info(service.db) == (None, None)
    assert read_state(service.db).workflows[workflow_id].status.value == "completed"  # flushed at exit


def test_retry_abort_cancel_from_other_processes_while_a_client_is_attached(service: Service,
                                                                          tmp_path: Path) -> None:
    attached = service.remote()  # as the workbench is: subscribed to the event stream
    seen: set[int] = set()
    changed = threading.Condition()

    def on_update(update: Update) -> None:
        with changed:
            seen.update(update.workflow_ids)

    attached.subscribe(on_update)
    try:
        slow = started_id(service.cli("run", "slow"))
        job = wait_for(lambda: attached.jobs(slow, 1, status="processing"), TIMEOUT, "the sleep job running")[0]
        cancel = service.cli("cancel", str(job.id))
        assert cancel.returncode == 0, cancel.stdout + cancel.stderr
        wait_for(lambda: attached.job(job.id)["status"] == "stopped", TIMEOUT, "the job stopped")

        other = started_id(service.cli("run", "slow"))
        abort = service.cli("abort", str(other))
        assert abort.returncode == 0, abort.stdout + abort.stderr
        wait_for(lambda: attached.workflow(other).status == "aborted", TIMEOUT, "the workflow aborted")

        marker = tmp_path / "fixed"
        failing = started_id(service.cli("run", "failing_demo", "-p", f"marker={marker}"))
        wait_for(lambda: attached.workflow(failing).status == "error", TIMEOUT, "failing_demo in error")
        marker.write_text("fixed\n")
        retry = service.cli("retry", "--workflow", str(failing))
        assert retry.returncode == 0 and "1 failed job(s)" in retry.stdout, retry.stdout + retry.stderr
        wait_for(lambda: attached.workflow(failing).status == "completed", TIMEOUT, "failing_demo completed")
        with changed:
            assert {slow, other, failing} <= seen  # the attached client heard of every change
    finally:
        attached.stop()
    assert service.proc.poll() is None  # the client's stop leaves the service running


def test_sigkill_mid_run_then_a_restart_resumes_and_loses_nothing(service: Service) -> None:
    follower = service.processes.cli("run", "many", "--wait", "--db", service.db, name="run-wait")
    remote = service.remote()
    try:
        workflow_id = wait_for(lambda: next((view.id for view in remote.workflows()), None), TIMEOUT,
                               "the workflow started by run --wait")
        wait_for(lambda: remote.workflow(workflow_id).counts.get("completed", 0) >= 3, TIMEOUT,
                 "a few jobs completed")
    finally:
        remote.stop()
    service.proc.send_signal(signal.SIGKILL)
    service.proc.wait(STARTUP)
    service.start()  # the workers went on: their results wait in the broker's queues
    wait_for(lambda: service.workflow(workflow_id)["status"] == "completed", TIMEOUT, "the workflow completed")
    # run --wait followed it across the restart (its event stream reconnected to the same address)
    assert follower.wait(TIMEOUT) == 0, service.processes.output(follower)
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(STARTUP) == 0, service.log()
    state = read_state(service.db)
    jobs = [state.jobs[i] for s in state.workflows[workflow_id].steps for i in s.job_ids]
    assert len(jobs) == ITEMS and all(job.status.value == "completed" for job in jobs)
    completions = {job.id: sum(1 for entry in job.history if entry[0] == "completed") for job in jobs}
    assert set(completions.values()) == {1}, completions
