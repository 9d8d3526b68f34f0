"""Built-in job types for demos, tests and benchmarks: ``noop``, ``sleep`` and ``fail``.

All three pass their input through: ``destination_paths`` is ``[source_path]`` (a ``one_for_one`` job),
``source_paths`` (a ``one_for_many`` job) or ``[]``, so they can sit anywhere in a workflow.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import stepflow_tui
from stepflow_tui import hookimpl
from stepflow_tui.plugins import JobType
from stepflow_tui.worker.context import JobContext, WorkerImplementation

#: Seconds between two progress reports of ``sleep`` (the context rate-limits anyway).
SLEEP_TICK = 0.1

_PASS_THROUGH = {
    "source_path": {"type": "string", "description": "input path of a one_for_one job, passed through"},
    "source_paths": {"type": "array", "items": {"type": "string"},
                     "description": "input paths of a one_for_many job, passed through"},
}


def _schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": {**properties, **_PASS_THROUGH}, "required": required or []}


def passthrough_paths(ctx: JobContext) -> list[str]:
    """The job's input paths: ``[source_path]`` if given, else ``source_paths`` if given, else ``[]``."""
    source_path = ctx.param("source_path")
    if source_path:
        return [str(source_path)]
    source_paths = ctx.param("source_paths")
    if isinstance(source_paths, str):  # a hand-written order may give one path as a plain string
        return [source_paths] if source_paths else []
    if source_paths:
        return [str(path) for path in source_paths]
    return []


def noop(ctx: JobContext) -> dict[str, Any]:
    """Do nothing; pass the input paths through."""
    return {"destination_paths": passthrough_paths(ctx)}


def sleep(ctx: JobContext) -> dict[str, Any]:
    """Wait ``seconds`` (reporting progress, stopping at once if cancelled); pass the input paths through."""
    raw = ctx.param("seconds", 1)
    try:
        seconds = float(raw)  # template parameters arrive rendered, as strings
    except (TypeError, ValueError):
        raise ValueError(f"sleep: parameter 'seconds' must be a number, got {raw!r}") from None
    if not seconds >= 0:  # also refuses NaN
        raise ValueError(f"sleep: parameter 'seconds' must be >= 0, got {raw!r}")
    ctx.progress(0)
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        ctx.progress(100 * elapsed / seconds)
        # Waiting on the event (not time.sleep) makes cancellation immediate.
        ctx.wait(min(SLEEP_TICK, seconds - elapsed))
    ctx.check_cancelled()
    ctx.progress(100)
    return {"destination_paths": passthrough_paths(ctx)}


def fail(ctx: JobContext) -> dict[str, Any]:
    """Raise ``RuntimeError(message)`` unless the path ``unless_exists`` exists (then behave like noop)."""
    unless_exists = ctx.param("unless_exists")
    if unless_exists and os.path.exists(str(unless_exists)):
        ctx.logger.info("fail: %s exists, so this job succeeds", unless_exists)
        return noop(ctx)
    raise RuntimeError(str(ctx.param("message", "this job fails on purpose")))


JOB_TYPES: list[tuple[JobType, Callable[[JobContext], Any]]] = [
    (JobType(name="noop", label="No operation",
             description="Does nothing; passes its input paths through.",
             parameters=_schema({})), noop),
    (JobType(name="sleep", label="Sleep",
             description="Waits a number of seconds, reporting progress; cancellable.",
             parameters=_schema({"seconds": {"type": "number", "default": 1, "minimum": 0,
                                             "description": "how long to wait"}})), sleep),
    (JobType(name="fail", label="Fail",
             description="Fails with a message, unless the path `unless_exists` exists (fix it, then retry).",
             parameters=_schema({
                 "message": {"type": "string", "default": "this job fails on purpose",
                             "description": "the error message"},
                 "unless_exists": {"type": "string",
                                   "description": "succeed instead when this path exists"},
             })), fail),
]


@hookimpl
def register_job_types(register: Callable[[JobType], None]) -> None:
    """Register noop, sleep and fail."""
    for job_type, _implementation in JOB_TYPES:
        register(JobType(name=job_type.name, label=job_type.label, description=job_type.description,
                         parameters=job_type.parameters, version=stepflow_tui.__version__))


@hookimpl
def register_workers(register: Callable[[str, WorkerImplementation], None]) -> None:
    """Register the implementations of noop, sleep and fail."""
    for job_type, implementation in JOB_TYPES:
        register(job_type.name, implementation)
