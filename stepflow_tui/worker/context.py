"""What a worker implementation receives (`JobContext`) and returns (`JobResult`).

A worker implementation is a plain callable ``implementation(ctx: JobContext) -> result``. It reads its
parameters from the context, reports progress, checks for cancellation, logs through ``ctx.logger`` and writes
scratch files under ``ctx.work_dir``. It returns ``None``, a list of destination paths, a dict
``{"destination_paths": [...], "outputs": {...}}`` or a `JobResult`; `normalize_result` turns any of those into a
`JobResult`. It raises to fail the job (the message becomes the job's error) or raises `JobCancelled` when it
noticed the job was cancelled.

This module imports neither textual nor pika: the headless worker and the plugins depend on it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobResult",
    "WorkerImplementation",
    "normalize_result",
]

#: Folders file job types may read and write (``os.pathsep``-separated); unset: anywhere the worker's user may.
ALLOW_PATHS_ENV = "STEPFLOW_ALLOW_PATHS"


def allowed_roots() -> list[str]:
    """The folders of ``$STEPFLOW_ALLOW_PATHS``, resolved (empty: no restriction)."""
    return [os.path.realpath(os.path.expanduser(root))
            for root in os.environ.get(ALLOW_PATHS_ENV, "").split(os.pathsep) if root]


#: Minimum seconds between two progress reports (0 and 100 always go through): at most ~5 per second.
PROGRESS_MIN_INTERVAL = 0.2


class JobCancelled(Exception):
    """Raised inside a job when it was cancelled (by `JobContext.check_cancelled` or an implementation)."""


@dataclass
class JobResult:
    """What a finished job reports: the paths it produced (the next step's inputs) and named outputs."""

    destination_paths: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # [{"id", "type", "value"}]


class JobContext:
    """Everything a worker implementation may use while it runs one job.

    The worker runner builds one per job::

        JobContext(job_id=12, job_type="checksum", raw_parameters=order.parameters, work_dir=Path(...),
                   progress_callback=report, logger=logging.getLogger(...))

    ``progress_callback(percent: int)`` is called from the job's thread; it must be thread-safe.
    ``cancelled`` is set by the runner (from any thread) when the job must stop.
    """

    def __init__(
        self,
        *,
        job_id: int,
        job_type: str,
        raw_parameters: list[dict[str, Any]] | None = None,
        work_dir: Path | str | None = None,
        progress_callback: Callable[[int], Any] | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        cancelled: threading.Event | None = None,
    ) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.raw_parameters: list[dict[str, Any]] = list(raw_parameters or [])
        self.parameters: dict[str, Any] = _parameters_by_id(self.raw_parameters)
        # Made a Path when first used (most jobs never ask: a Path per job costs a noop job ~5 % of its time).
        self._work_dir_given = work_dir
        self._progress_callback = progress_callback
        self.logger = logger if logger is not None else logging.getLogger(f"stepflow_tui.job.{job_type}")
        self.cancelled = cancelled if cancelled is not None else threading.Event()
        # Monotonic clock used for progress rate limiting; a test may replace it on the instance.
        self.clock: Callable[[], float] = time.monotonic
        self._progress_lock = threading.Lock()
        self._last_progress: int | None = None
        self._last_progress_at: float | None = None

    def __repr__(self) -> str:
        return f"JobContext(job_id={self.job_id!r}, job_type={self.job_type!r})"

    # -- parameters -------------------------------------------------------------------------------------------
    def param(self, parameter_id: str, default: Any = None) -> Any:
        """The value of parameter ``parameter_id``, or ``default`` when absent or null."""
        value = self.parameters.get(parameter_id)
        return default if value is None else value

    def require(self, parameter_id: str) -> Any:
        """The value of parameter ``parameter_id``; `ValueError` naming it when absent, null or empty."""
        value = self.parameters.get(parameter_id)
        if value is None or value == "" or value == []:
            raise ValueError(
                f"job {self.job_id} ({self.job_type}): missing required parameter {parameter_id!r}"
            )
        return value

    def allowed_path(self, path: str) -> str:
        """``path`` if it lies under a root file jobs may use (``$STEPFLOW_ALLOW_PATHS``, set by
        ``stepflow worker --allow-path``; every path when none is set), symlinks resolved first; else
        `PermissionError` naming it. File job types check each path they read or write."""
        roots = allowed_roots()
        if not roots:
            return path
        real = os.path.realpath(path)
        if any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
            return path
        raise PermissionError(f"{self.job_type}: {path!r} is outside the allowed folders "
                              f"({', '.join(roots)}; --allow-path / ${ALLOW_PATHS_ENV})")

    def credential(self, parameter_id: str) -> str:
        """The secret that credential parameter ``parameter_id`` names (``store`` ``ENV``: the environment;
        ``BACKEND``: the service's API — see `worker.credentials`). Resolved when asked, kept in memory only:
        never put it in outputs, paths or logs. Raises `CredentialUnavailable` (a one-line reason)."""
        from stepflow_tui.worker.credentials import CredentialUnavailable, is_reference, resolve

        for parameter in self.raw_parameters:
            if parameter.get("id") == parameter_id:
                if not is_reference(parameter):
                    raise CredentialUnavailable(f"parameter {parameter_id!r} is not a credential reference")
                return resolve(parameter)
        raise CredentialUnavailable(f"job {self.job_id} ({self.job_type}): no parameter {parameter_id!r}")

    # -- work directory ---------------------------------------------------------------------------------------
    @property
    def work_dir(self) -> Path:
        """A scratch directory for this job, created the first time it is asked for."""
        given = self._work_dir_given
        # No runner-given directory (a test or a script): a per-job folder in the system temp dir.
        folder = Path(given if given is not None else os.path.join(tempfile.gettempdir(), "stepflow-work",
                                                                   f"job-{self.job_id}"))
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- progress ---------------------------------------------------------------------------------------------
    def progress(self, percent: float) -> None:
        """Report progress (0..100, clamped). Rate-limited to ~5 reports per second; 0 and 100 always go out.

        A report equal to the previous one is dropped: it would tell the backend nothing new.
        """
        try:
            value = int(max(0.0, min(100.0, float(percent))))
        except (TypeError, ValueError):
            raise ValueError(f"job {self.job_id}: progress must be a number, got {percent!r}") from None
        with self._progress_lock:
            if value == self._last_progress:
                return
            now = self.clock()
            if (
                value not in (0, 100)
                and self._last_progress_at is not None
                and now - self._last_progress_at < PROGRESS_MIN_INTERVAL
            ):
                return
            self._last_progress = value
            self._last_progress_at = now
        if self._progress_callback is not None:
            self._progress_callback(value)

    # -- cancellation -----------------------------------------------------------------------------------------
    @property
    def is_cancelled(self) -> bool:
        """True once the job has been asked to stop."""
        return self.cancelled.is_set()

    def check_cancelled(self) -> None:
        """Raise `JobCancelled` if the job has been asked to stop; call it between units of work."""
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} ({self.job_type}) was cancelled")

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once (with `JobCancelled`) if the job is cancelled."""
        if self.cancelled.wait(max(0.0, seconds)):
            raise JobCancelled(f"job {self.job_id} ({self.job_type}) was cancelled")


#: A worker implementation: called with the job's context, returns what `normalize_result` accepts.
WorkerImplementation = Callable[[JobContext], Any]


def _parameters_by_id(raw: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"id": value}`` from an order's parameter list; a missing or null value falls back to ``default``."""
    parameters: dict[str, Any] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue  # the protocol decoder rejects these; a hand-built list should not crash the context
        value = item.get("value")
        if value is None:
            value = item.get("default")
        parameters[item["id"]] = value
    return parameters


def _output_type(value: Any) -> str:
    """The StepFlow parameter type that describes ``value``."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) or value is None:
        return "string"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "array_of_strings"
    return "extended"  # StepFlow's type for any other JSON value


def _path_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str | os.PathLike):
        raise TypeError(f"{where} must be a list of paths, not a single path {os.fspath(value)!r}")
    if not isinstance(value, list | tuple):
        raise TypeError(f"{where} must be a list of paths, got {type(value).__name__}")
    paths = []
    for item in value:
        if not isinstance(item, str | os.PathLike):
            raise TypeError(f"{where} must contain path strings, got {type(item).__name__} {item!r}")
        paths.append(os.fspath(item))
    return paths


def _outputs_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [{"id": str(key), "type": _output_type(item), "value": item} for key, item in value.items()]
    if isinstance(value, list | tuple):
        outputs = []
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str) or "value" not in item:
                raise TypeError(f"each output must be a dict with 'id' and 'value', got {item!r}")
            outputs.append({"id": item["id"], "type": item.get("type") or _output_type(item["value"]),
                            "value": item["value"]})
        return outputs
    raise TypeError(f"'outputs' must be a dict {{id: value}} or a list of {{id, type, value}}, "
                    f"got {type(value).__name__}")


def normalize_result(value: Any) -> JobResult:
    """Turn what a worker implementation returned into a `JobResult`.

    Accepts ``None``, a `JobResult`, a list of path strings, or a dict with optional keys
    ``destination_paths`` (list of paths) and ``outputs`` (``{id: value}`` or ``[{"id", "type", "value"}]``).
    Anything else raises `TypeError` saying what was returned and what is accepted.
    """
    if value is None:
        return JobResult()
    if isinstance(value, JobResult):
        return JobResult(destination_paths=_path_list(value.destination_paths, "JobResult.destination_paths"),
                         outputs=_outputs_list(value.outputs))
    if isinstance(value, list | tuple):
        return JobResult(destination_paths=_path_list(value, "the returned list"))
    if isinstance(value, str | os.PathLike):
        # A common slip: returning one path instead of a list of one.
        raise TypeError(f"a worker implementation must return a list of paths, not a single path "
                        f"{os.fspath(value)!r}")
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"destination_paths", "outputs"})
        if unknown:
            raise TypeError(f"a worker result dict may only have 'destination_paths' and 'outputs', "
                            f"got unknown key(s) {', '.join(map(repr, unknown))}")
        return JobResult(
            destination_paths=_path_list(value.get("destination_paths") or [], "'destination_paths'"),
            outputs=_outputs_list(value.get("outputs") or []),
        )
    raise TypeError(
        f"a worker implementation must return None, a list of paths, a dict with 'destination_paths' / "
        f"'outputs', or a JobResult; got {type(value).__name__} {value!r:.80}"
    )
