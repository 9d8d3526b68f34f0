"""A state is tied to the broker its unfinished workflows were started on: opening it with another is refused
(both named, without credentials) unless the operator moves them with --move-to-broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO_WORKFLOWS, describe, run_cli

from stepflow_tui.backend.identity import broker_identity
from stepflow_tui.broker.base import connect
from stepflow_tui.store import read_state


def test_the_identity_is_scheme_host_port_vhost_without_credentials() -> None:
    assert broker_identity("amqp://u:S3cret@rabbit/prod?heartbeat=5") == "amqp://rabbit:5672/prod"
    assert broker_identity("amqps://u:p@[::1]:5999/%2F") == "amqps://[::1]:5999/%2F"
    assert broker_identity("memory://test-1") == broker_identity("memory://") == "memory://"


@pytest.mark.rabbitmq
def test_unfinished_workflows_stay_on_their_broker_unless_moved(rabbitmq_url: str, tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    source = tmp_path / "data"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    queue_owner = connect(rabbitmq_url)  # orders wait in the job queue: nobody serves it
    queue_owner.declare_job_queue("list_files")
    queue_owner.close()
    started = run_cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={tmp_path}/m",
                      "--broker", rabbitmq_url, "--workflows", REPO_WORKFLOWS, db=db, cwd=tmp_path)
    assert started.returncode == 0, describe(started)
    vhost = rabbitmq_url.rpartition("/")[2]
    assert read_state(db).broker == f"amqp://127.0.0.1:5672/{vhost}"

    refused = run_cli("wait", "1", "--broker", "memory://", "--workflows", REPO_WORKFLOWS, db=db, cwd=tmp_path)
    assert refused.returncode == 2, describe(refused)
    line = refused.stderr.strip()
    assert f"started on amqp://127.0.0.1:5672/{vhost}, not on memory://" in line and "--move-to-broker" in line
    assert "guest" not in line and len(line.splitlines()) == 1
    state = read_state(db)
    assert state.workflows[1].status == "processing" and state.jobs[1].status != "completed"  # nothing ran here

    moved = run_cli("wait", "1", "--broker", "memory://", "--move-to-broker", "--workflows", REPO_WORKFLOWS,
                    db=db, cwd=tmp_path, timeout=120)
    assert moved.returncode == 0, describe(moved)  # its orders sent again, to the in-process workers
    assert "moved 1 unfinished workflow(s) (#1)" in moved.stderr, describe(moved)
    state = read_state(db)
    assert state.broker == "memory://" and state.workflows[1].status == "completed"
    # nothing unfinished: any broker may open it now, and it becomes that broker's
    again = run_cli("run", "checksum_folder", "-p", f"source_dir={source}", "-p", f"manifest={tmp_path}/m2",
                    "--broker", rabbitmq_url, "--workflows", REPO_WORKFLOWS, db=db, cwd=tmp_path)
    assert again.returncode == 0, describe(again)
    assert read_state(db).broker == f"amqp://127.0.0.1:5672/{vhost}"
