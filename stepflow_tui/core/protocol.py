"""The wire messages (JSON bodies), exactly as DESIGN.md gives them, compatible with StepFlow workers.

Each message is a small dataclass with ``encode() -> bytes``; ``decode_*`` functions parse bytes and raise
`ProtocolError` (one line: what was wrong) on anything malformed. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ProtocolError(ValueError):
    """A message body is not valid JSON or not of the expected shape."""


@dataclass
class JobOrder:
    """backend -> worker, through ``job_submit`` with routing key ``job_<type>``."""

    job_id: int
    parameters: list[dict[str, Any]]  # [{"id", "type", "value", "default"?}]

    def parameter(self, parameter_id: str, default: Any = None) -> Any:
        for parameter in self.parameters:
            if parameter.get("id") == parameter_id:
                return parameter.get("value", parameter.get("default", default))
        return default

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass
class JobCompleted:
    """worker -> backend, ``job_response`` / ``job_completed``."""

    job_id: int
    execution_duration: float = 0.0
    destination_paths: list[str] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)  # outputs: [{"id", "type", "value"}]
    instance_id: str | None = None  # our extension; StepFlow workers omit it

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass
class JobFailed:
    """worker -> backend, ``job_response`` / ``job_error``. On the wire: status "error" and a ``message``
    parameter (``{"job_id", "error": "..."}`` is accepted too)."""

    job_id: int
    message: str
    traceback: str | None = None  # our extension: parameter id "traceback"
    execution_duration: float = 0.0
    instance_id: str | None = None
    stopped: bool = False  # our extension: the job was cancelled, not failed (status "stopped")

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass
class JobProgression:
    """worker -> backend, ``job_response`` / ``job_progression``."""

    job_id: int
    progression: int  # 0..100
    datetime: str = ""  # ISO-8601 UTC, "…Z"
    instance_id: str | None = None

    def encode(self) -> bytes:
        raise NotImplementedError


@dataclass
class WorkerStatus:
    """worker -> backend, ``worker_response`` / ``worker_discovery`` (announce, ``kind="discovery"``) and
    ``worker_status`` (every few seconds, ``kind="status"``)."""

    instance_id: str
    queue_name: str  # the job queue it consumes (first one if several)
    label: str
    version: str
    kind: str = "status"  # "discovery" | "status" | "terminated"
    job_types: list[str] = field(default_factory=list)
    activity: str = "Idle"  # Idle | Busy | Suspended | Terminated
    current_jobs: list[int] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON schema of parameters (discovery)
    hostname: str = ""
    pid: int = 0
    concurrency: int = 1
    interval: float = 5.0  # seconds between status messages
    datetime: str = ""
    direct_messaging_queue_name: str = ""

    def encode(self) -> bytes:
        raise NotImplementedError


def decode_order(body: bytes) -> JobOrder:
    raise NotImplementedError


def decode_response(queue: str, body: bytes) -> JobCompleted | JobFailed | JobProgression:
    """Decode a message from ``job_completed`` / ``job_error`` / ``job_progression`` (by queue name)."""
    raise NotImplementedError


def decode_worker_status(body: bytes) -> WorkerStatus:
    raise NotImplementedError


def decode_not_found(body: bytes) -> int:
    """A message that reached ``job_queue_not_found`` is a JobOrder: return its job id."""
    raise NotImplementedError
