"""The issue's own scenario, with processes only: `stepflow backend` on RabbitMQ, a Media Cloud AI SDK worker and
a `stepflow worker`, and `stepflow run --wait` attached to the backend's API: the mixed workflow completes (it
used to hang at "processing: 0/1" while the backend looped on a 406)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import wait_for

from stepflow_tui.store.lockfile import read_lock_info

from .conftest import TOKEN, SdkWorkers, fan_out_step, wait_consumers, workflow

MIXED = workflow("mixed", [fan_out_step("noop", 2),
                           {"id": 2, "name": "sdktest", "label": "sdk", "mode": "one_for_one", "parent_ids": [1]}])


def stepflow_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    env.update(STEPFLOW_API_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    return env


def test_stepflow_backend_an_sdk_worker_and_run_wait(rabbitmq_url: str, tmp_path: Path, sdk_workers: SdkWorkers,
                                                     processes: Any) -> None:
    workflows = tmp_path / "workflows.json"
    workflows.write_text(json.dumps({"workflows": [MIXED]}), encoding="utf-8")
    state = tmp_path / "state.json"
    log = open(tmp_path / "backend.log", "wb")  # noqa: SIM115 - closed in finally
    backend = subprocess.Popen(
        [sys.executable, "-m", "stepflow_tui", "backend", "--broker", rabbitmq_url, "--db", str(state),
         "--workflows", str(workflows), "--listen", "127.0.0.1:0", "--no-local-workers"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=stepflow_env())
    try:
        api = wait_for(lambda: backend.poll() is None and read_lock_info(state)[1], 20, "the backend's API")
        sdk_workers.start(api)
        processes.worker(rabbitmq_url, "noop", name="ours")
        wait_consumers(rabbitmq_url, "job_noop", 1)
        run = subprocess.run([sys.executable, "-m", "stepflow_tui", "run", "mixed", "--wait", "--api", api],
                             capture_output=True, text=True, timeout=60, env=stepflow_env(), cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr + (tmp_path / "backend.log").read_text()
    finally:
        backend.terminate()
        try:
            backend.wait(timeout=15)
        except subprocess.TimeoutExpired:
            backend.kill()
            backend.wait(timeout=10)
        log.close()
    assert backend.returncode == 0
