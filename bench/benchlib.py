"""Helpers shared by the benchmarks in this folder (not part of the package).

    definition = noop_definition(5000)          # one step, 5000 noop jobs, paths like a real one_for_one step
    with fresh_vhost("amqp://guest:guest@127.0.0.1:5672/") as url:   # a vhost of its own, deleted afterwards
        ...
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from stepflow_tui.core.definitions import WorkflowDefinition, definition_from_dict
from stepflow_tui.core.engine import Engine
from stepflow_tui.store import Store

IDENTIFIER = "bench_noop"


def input_path(index: int) -> str:
    """The input path of job ``index``: every benchmark message carries the same bytes."""
    return f"/bench/in/file-{index:07d}.dat"


def noop_definition(jobs: int, job_type: str = "noop") -> WorkflowDefinition:
    """A workflow of one ``one_for_one`` step with ``jobs`` jobs of ``job_type`` (one per input path)."""
    raw: dict[str, Any] = {
        "identifier": IDENTIFIER,
        "label": f"Benchmark: {jobs} {job_type} jobs",
        "steps": [{
            "id": 1,
            "name": job_type,
            "label": f"{jobs} {job_type} jobs",
            "parameters": [{"id": "source_paths", "type": "array_of_strings",
                            "value": [input_path(i) for i in range(jobs)]}],
        }],
    }
    return definition_from_dict(raw, "bench")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a process started by a big
    # parent (scale's restarts, history's measures) would report the parent's peak.
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.001) -> None:
    """Poll ``condition`` until it holds; raise TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@contextmanager
def work_folder(given: Path | None, prefix: str) -> Iterator[Path]:
    """``given`` (made if missing, kept afterwards), else a temporary folder removed on exit."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        folder = given or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")


@contextmanager
def fresh_vhost(base_url: str) -> Iterator[str]:
    """``base_url`` pointed at a new vhost (created with rabbitmqctl, deleted on exit), so durable queues left
    by other runs cannot interfere. Without rabbitmqctl on PATH the URL is used as given."""
    if shutil.which("rabbitmqctl") is None:
        yield base_url
        return
    parts = urlsplit(base_url)
    vhost = f"stepflow-bench-{uuid.uuid4().hex[:10]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
        yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def build_state(db_path: Path, jobs: int) -> int:
    """A state with one paused workflow of ``jobs`` queued jobs (paused: nothing is dispatched)."""
    store = Store(db_path)
    state = store.open()
    engine = Engine(state)
    workflow = engine.start_workflow(noop_definition(jobs), {})
    engine.pause(workflow.id)
    store.flush(state)
    store.close()
    return workflow.id
