"""`run_service` as a real process: serves, records its URL in the lock file, answers, and on SIGTERM refuses
nothing half-done, flushes, forgets the URL and exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from helpers import REPO_WORKFLOWS, LineReader, cli_env

from stepflow_tui.backend.remote import RemoteBackend
from stepflow_tui.store import read_state
from stepflow_tui.store.lockfile import read_lock_info

SCRIPT = """
import sys
from pathlib import Path
from stepflow_tui.backend.backend import BackendConfig
from stepflow_tui.core.definitions import load_definitions
from stepflow_tui.plugins import load_registry
from stepflow_tui.service import run_service

definitions = {d.identifier: d for d in load_definitions(sys.argv[3])}
config = BackendConfig(broker_url=sys.argv[1], db_path=Path(sys.argv[2]), definitions=definitions,
                       registry=load_registry())
sys.exit(run_service(config, listen="127.0.0.1:0", on_ready=lambda url: print("READY", url, flush=True)))
"""


def test_serves_until_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, f"memory://svc-{uuid.uuid4().hex[:8]}", str(db),
                             str(REPO_WORKFLOWS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(), stdin=subprocess.DEVNULL)
    try:
        url = LineReader(proc).wait_line(lambda line: line.startswith("READY "), 60, "the READY line").split()[1]
        assert read_lock_info(db) == (proc.pid, url)
        with RemoteBackend(url) as remote:
            workflow_id = remote.start_workflow("fanout_demo", {}).result(30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert "serving the API on " + url in stderr and "stopped" in stderr
    assert "Traceback" not in stderr
    assert read_lock_info(db) == (None, None)
    assert workflow_id in read_state(db).workflows  # flushed before exit
    assert json.loads(db.read_text())  # a valid state file
