"""A real Media Cloud AI SDK worker against a real ``stepflow backend`` with no configuration but the token
file: it logs in with ``<state>.token``, reads ``/api/step_flow`` (1.8.1, so it asks for the black list), and
fetches a credential set with ``stepflow credentials`` — with the bare ``Authorization: <token>`` it sends.

Runs the SDK with this Python (the test extra installs ``mcai-worker-sdk``), or ``STEPFLOW_TEST_MCAI_PYTHON``;
skipped only where neither has it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

import pika
import pytest
from helpers import wait_for

from .conftest import STARTUP, Service


def _sdk_python() -> str | None:
    given = os.environ.get("STEPFLOW_TEST_MCAI_PYTHON")
    if given:
        return given
    import importlib.util

    return sys.executable if importlib.util.find_spec("mcai_worker_sdk") is not None else None


SDK_PYTHON = _sdk_python()
pytestmark = pytest.mark.skipif(not SDK_PYTHON, reason="mcai_worker_sdk is not installed (pip install -e "
                                                       "'.[test]') and STEPFLOW_TEST_MCAI_PYTHON is not set")

WORKER = '''
from typing import Optional
import mcai_worker_sdk as mcai

class Params(mcai.WorkerParameters):
    source_path: Optional[str]
    secret: Optional[str]

class Probe(mcai.Worker):
    def process(self, handle, parameters, job_id):
        print("process", job_id, parameters.secret, flush=True)
        return {"destination_paths": []}

Probe(Params, mcai.WorkerDescription(__package__)).start()
'''
PYPROJECT = '''[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "sdk_probe"
version = "1.0.0"
description = "a probe worker"
license = { text = "MIT" }
'''


def test_an_sdk_worker_logs_in_and_fetches_a_credential(service_factory: Callable[[str], Service],
                                                        rabbitmq_url: str, sdk_vhost: str, tmp_path: Path) -> None:
    service = service_factory(rabbitmq_url)
    service.start()
    stored = subprocess.run([sys.executable, "-m", "stepflow_tui", "credentials", "set", "MYKEY", "--db",
                             str(service.db)], input="s3cr3t-value\n", text=True, capture_output=True, timeout=60)
    assert stored.returncode == 0, stored.stderr
    folder = tmp_path / "sdk"
    folder.mkdir()
    (folder / "worker.py").write_text(WORKER)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    base = urlsplit(rabbitmq_url)  # host and user; the SDK gets a vhost of its own
    env = {**os.environ, "AMQP_HOSTNAME": base.hostname or "127.0.0.1", "AMQP_PORT": str(base.port or 5672),
           "AMQP_USERNAME": base.username or "guest", "AMQP_PASSWORD": base.password or "guest",
           "AMQP_VHOST": sdk_vhost, "AMQP_QUEUE": "job_probe", "AMQP_TLS": "false",
           "BACKEND_HOSTNAME": f"{service.url}/api", "BACKEND_USERNAME": "worker@example.com",
           "BACKEND_PASSWORD": service.db.with_name("state.json.token").read_text().strip()}
    log_path = tmp_path / "sdk-worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([SDK_PYTHON, "worker.py"], cwd=folder, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        check_the_worker(service, worker, log_path, base._replace(path="/" + sdk_vhost))
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def check_the_worker(service: Service, worker: subprocess.Popen[bytes], log_path: Path, amqp: SplitResult) -> None:
    """The worker asks for the black list, then runs an order whose ``secret`` is stored in the backend."""

    def worker_log() -> str:
        assert worker.poll() is None, "the SDK worker exited:\n" + log_path.read_text(errors="replace")
        return log_path.read_text(errors="replace")

    wait_for(lambda: "Black listed jobs" in worker_log(), STARTUP, "the SDK asking for the black list")
    order = {"job_id": 11, "parameters": [{"id": "source_path", "type": "string", "value": "/tmp/a"},
                                          {"id": "secret", "type": "string", "value": "MYKEY", "store": "BACKEND"}]}
    connection = pika.BlockingConnection(pika.URLParameters(urlunsplit(amqp)))
    try:
        connection.channel().basic_publish("job_submit", "job_probe", json.dumps(order).encode())
    finally:
        connection.close()
    wait_for(lambda: "process 11 s3cr3t-value" in worker_log(), STARTUP, "the credential substituted")
    assert "Outdated step_flow version" not in worker_log()
    assert "s3cr3t-value" not in service.log()
