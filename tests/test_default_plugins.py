"""The built-in job types noop, sleep and fail, run through the registry like any plugin's workers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from stepflow_tui.default_plugins import builtin
from stepflow_tui.plugins import get_plugin_manager, load_registry
from stepflow_tui.worker.context import JobCancelled, JobContext, normalize_result


@pytest.fixture(scope="module")
def workers() -> dict[str, Any]:
    # Only the built-ins: an installed third-party plugin must not change these tests.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEPFLOW_LOAD_PLUGINS", "")
        return load_registry(get_plugin_manager()).workers


def context(tmp_path: Path, job_type: str, progress: list[int] | None = None, **parameters: Any) -> JobContext:
    raw = [{"id": key, "type": "string", "value": value} for key, value in parameters.items()]
    callback = progress.append if progress is not None else None
    return JobContext(job_id=1, job_type=job_type, raw_parameters=raw, work_dir=tmp_path / "work",
                      progress_callback=callback)


def run(workers: dict[str, Any], ctx: JobContext) -> list[str]:
    return normalize_result(workers[ctx.job_type](ctx)).destination_paths


def test_builtins_are_registered_through_the_hooks(workers: dict[str, Any]) -> None:
    assert workers["noop"] is builtin.noop
    assert workers["sleep"] is builtin.sleep
    assert workers["fail"] is builtin.fail


@pytest.mark.parametrize("parameters, expected", [
    ({"source_path": "/data/a.txt"}, ["/data/a.txt"]),
    ({"source_paths": ["/data/a", "/data/b"]}, ["/data/a", "/data/b"]),
    ({"source_path": "/data/a", "source_paths": ["/data/b"]}, ["/data/a"]),
    ({}, []),
])
def test_noop_passes_its_inputs_through(workers: dict[str, Any], tmp_path: Path,
                                        parameters: dict[str, Any], expected: list[str]) -> None:
    assert run(workers, context(tmp_path, "noop", **parameters)) == expected


def test_sleep_reports_progress_and_passes_through(workers: dict[str, Any], tmp_path: Path) -> None:
    progress: list[int] = []
    ctx = context(tmp_path, "sleep", progress, seconds="0.3", source_path="/data/a")
    assert run(workers, ctx) == ["/data/a"]
    assert progress[0] == 0
    assert progress[-1] == 100
    assert progress == sorted(progress)


def test_sleep_zero_seconds_completes(workers: dict[str, Any], tmp_path: Path) -> None:
    progress: list[int] = []
    assert run(workers, context(tmp_path, "sleep", progress, seconds=0)) == []
    assert progress == [0, 100]


@pytest.mark.parametrize("seconds", ["soon", -1, float("nan")])
def test_sleep_refuses_a_bad_duration(workers: dict[str, Any], tmp_path: Path, seconds: Any) -> None:
    with pytest.raises(ValueError, match="'seconds'"):
        run(workers, context(tmp_path, "sleep", seconds=seconds))


def test_sleep_stops_at_once_when_cancelled(workers: dict[str, Any], tmp_path: Path) -> None:
    started = threading.Event()
    ctx = JobContext(job_id=7, job_type="sleep", raw_parameters=[{"id": "seconds", "value": 3600}],
                     work_dir=tmp_path, progress_callback=lambda percent: started.set())
    outcome: list[BaseException | object] = []

    def target() -> None:
        try:
            outcome.append(workers["sleep"](ctx))
        except BaseException as error:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    assert started.wait(10), "sleep never reported its first progress"
    ctx.cancelled.set()
    thread.join(10)
    assert not thread.is_alive(), "sleep did not stop after cancellation"
    assert len(outcome) == 1 and isinstance(outcome[0], JobCancelled)


def test_fail_raises_its_message(workers: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="^this job fails on purpose$"):
        run(workers, context(tmp_path, "fail"))
    with pytest.raises(RuntimeError, match="^disk on fire$"):
        run(workers, context(tmp_path, "fail", message="disk on fire"))


def test_fail_succeeds_once_the_cause_is_fixed(workers: dict[str, Any], tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    ctx = context(tmp_path, "fail", unless_exists=str(marker), source_path="/data/a")
    with pytest.raises(RuntimeError):
        run(workers, ctx)
    marker.touch()  # the operator fixes the cause, then retries
    assert run(workers, ctx) == ["/data/a"]


def test_job_types_describe_their_parameters() -> None:
    registry = load_registry(get_plugin_manager())
    sleep = registry.job_types["sleep"]
    assert sleep.plugin == "builtin"
    assert sleep.parameters["properties"]["seconds"]["default"] == 1
    assert "unless_exists" in registry.job_types["fail"].parameters["properties"]
    assert registry.job_types["noop"].queue == "job_noop"



def test_slow_demo_runs_with_the_builtin_job_types(start_backend, workers: dict[str, Any]) -> None:
    """The demo whose jobs take seconds (time to try pause, cancel and abort), in the repository's
    workflows.json beside failing_demo; quick here with seconds=0.01."""
    import json

    from helpers import REPO_WORKFLOWS, wait_for

    (slow,) = [w for w in json.loads(REPO_WORKFLOWS.read_text())["workflows"] if w["identifier"] == "slow_demo"]
    harness = start_backend([slow], {"sleep": workers["sleep"], "noop": workers["noop"]})
    workflow_id = harness.backend.start_workflow("slow_demo", {"seconds": "0.01"}).result(timeout=10)
    wait_for(lambda: harness.status(workflow_id) == "completed", 30, "slow_demo to complete")
    view = harness.backend.workflow(workflow_id)
    assert view is not None and [s.job_count for s in view.steps] == [1, 12, 1]
