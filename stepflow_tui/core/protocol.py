"""The wire messages (JSON bodies), exactly as DESIGN.md gives them, compatible with StepFlow workers.

Each message is a small dataclass with ``encode() -> bytes``; ``decode_*`` functions parse bytes and raise
`ProtocolError` (one line: what was wrong) on anything malformed. No I/O here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from stepflow_tui.core import jsontext

COMPLETED_QUEUE = "job_completed"
ERROR_QUEUE = "job_error"
PROGRESSION_QUEUE = "job_progression"
STOPPED_QUEUE = "job_stopped"  # the SDK's answer to stop_process: a job_completed body, status "completed"

#: Routing keys of worker messages on ``worker_response`` / ``job_response``, and the kind each one means.
WORKER_MESSAGE_KINDS = {"worker_discovery": "discovery", "worker_created": "discovery",
                        "worker_status": "status", "worker_terminated": "terminated"}

#: AMQP header of a job order: the step's timeout in seconds (the JSON body stays StepFlow's).
TIMEOUT_HEADER = "x-stepflow-timeout"
#: Direct message types (``direct_messaging``), the SDK's variants: cancel one running job (with ``job_id`` and
#: ``parameters``), ask for a status now, never run / run again these job ids (aborted workflows, retried
#: jobs), pause / resume taking orders, stop the worker.
STOP_PROCESS = "stop_process"
STATUS_REQUEST = "status"
ADD_TO_BLACK_LIST = "add_to_black_list"
DELETE_FROM_BLACK_LIST = "delete_from_black_list"
STOP_CONSUMING_JOBS = "stop_consuming_jobs"
RESUME_CONSUMING_JOBS = "resume_consuming_jobs"
STOP_WORKER = "stop_worker"
#: Our words for the black-list variants (what a drop of a job id means here).
DROP_JOBS = ADD_TO_BLACK_LIST
UNDROP_JOBS = DELETE_FROM_BLACK_LIST
#: Names this project sent before it spoke the SDK's variants, still read.
LEGACY_DIRECT_TYPES = {"drop_jobs": ADD_TO_BLACK_LIST, "undrop_jobs": DELETE_FROM_BLACK_LIST,
                       "stop_job": STOP_PROCESS}
_BLACK_LIST_TYPES = (ADD_TO_BLACK_LIST, DELETE_FROM_BLACK_LIST)
#: The answer of a worker to an order it dropped (reported as stopped).
DROPPED_REASON = "dropped: workflow aborted"
#: What a job stopped by an SDK worker (job_stopped) says.
STOPPED_REASON = "stopped by the worker"
#: The SDK's job_error for an order that reached it while it finished the previous job (a race inside the SDK):
#: the job did not run, it is no failure.
SDK_BUSY_REFUSAL = "Cannot initialize this job, an another job is already in progress."


class ProtocolError(ValueError):
    """A message body is not valid JSON or not of the expected shape."""


def _dumps(data: dict[str, Any]) -> bytes:
    """UTF-8 JSON, compact separators (what StepFlow's Jason and the Rust SDK's serde accept); lone surrogates
    are escaped (see jsontext)."""
    return jsontext.dumps_bytes(data)


def _loads(body: bytes | str) -> dict[str, Any]:
    """Parse a body that must be a JSON object."""
    if isinstance(body, bytes | bytearray | memoryview | str):
        try:
            data = orjson.loads(body)  # the fast path (4x json.loads)
        except orjson.JSONDecodeError:
            pass  # the standard library says what is wrong (and accepts NaN, lone surrogates, big integers)
        else:
            if isinstance(data, dict):
                return data
    try:
        text = body.decode("utf-8") if isinstance(body, bytes | bytearray | memoryview) else body
    except UnicodeDecodeError as error:
        raise ProtocolError(f"body is not UTF-8 ({error.reason} at byte {error.start})") from None
    if not isinstance(text, str):
        raise ProtocolError(f"body must be bytes or str, not {type(body).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        preview = text[:60] + ("…" if len(text) > 60 else "")
        raise ProtocolError(f"body is not JSON ({error.msg} at line {error.lineno}, column {error.colno}): "
                            f"{preview!r}") from None
    except (ValueError, RecursionError) as error:  # an integer of 4,300+ digits, nesting deeper than the stack
        raise ProtocolError(f"body cannot be read ({type(error).__name__}: {str(error)[:120]})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"body must be a JSON object, not {_kind(data)}")
    return data


_KINDS = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array"),
          (dict, "an object"))


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    return next((name for kind, name in _KINDS if isinstance(value, kind)), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _job_id(data: dict[str, Any]) -> int:
    """The ``job_id`` of a message: required, an integer (never guessed from anything else)."""
    if "job_id" not in data:
        raise ProtocolError("message has no job_id")
    job_id = data["job_id"]
    if not _is_int(job_id):
        raise ProtocolError(f"job_id must be an integer, not {_kind(job_id)} ({job_id!r})")
    return job_id


def _parameters(data: dict[str, Any], *, required: bool) -> list[dict[str, Any]]:
    """A ``parameters`` list: objects, each with a string ``id`` and ``type``. null counts as absent."""
    value = data.get("parameters")
    if value is None:
        if required:
            raise ProtocolError("message has no parameters list")
        return []
    if not isinstance(value, list):
        raise ProtocolError(f"parameters must be an array, not {_kind(value)}")
    for index, parameter in enumerate(value):
        if not isinstance(parameter, dict):
            raise ProtocolError(f"parameters[{index}] must be an object, not {_kind(parameter)}")
        for key in ("id", "type"):
            if not isinstance(parameter.get(key), str):
                raise ProtocolError(f"parameters[{index}] needs a string {key!r}, "
                                    f"got {_kind(parameter.get(key))}")
    return value


def _duration(data: dict[str, Any]) -> float:
    value = data.get("execution_duration")
    if value is None:
        return 0.0
    if not _is_number(value):
        raise ProtocolError(f"execution_duration must be a number, not {_kind(value)}")
    return float(value)


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string, not {_kind(value)}")
    return value


#: What a result may carry of its job's log (our extension): the last lines, each cut.
MAX_LOG_LINES = 200
MAX_LOG_LINE = 1000


def _string_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(f"{key} must be an array of strings, not {value!r:.80}")
    return value


def clamp_progression(value: float) -> int:
    """A progression as an int in 0..100."""
    return max(0, min(100, int(value)))


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
        return _dumps({"job_id": self.job_id, "parameters": self.parameters})


@dataclass
class JobCompleted:
    """worker -> backend, ``job_response`` / ``job_completed``."""

    job_id: int
    execution_duration: float = 0.0
    destination_paths: list[str] = field(default_factory=list)
    parameters: list[dict[str, Any]] = field(default_factory=list)  # outputs: [{"id", "type", "value"}]
    instance_id: str | None = None  # our extension; StepFlow workers omit it
    logs: list[str] = field(default_factory=list)  # our extension: the last lines the job logged

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "status": "completed",
            "execution_duration": self.execution_duration,
            "destination_paths": self.destination_paths,
            "parameters": self.parameters,
        }
        if self.instance_id is not None:
            data["instance_id"] = self.instance_id
        if self.logs:
            data["logs"] = self.logs
        return _dumps(data)


@dataclass
class JobFailed:
    """worker -> backend, ``job_response`` / ``job_error``. On the wire: status "error", a ``message``
    parameter and ``error`` (StepFlow's backend matches either; ``{"job_id", "error": "..."}`` is read too)."""

    job_id: int
    message: str
    traceback: str | None = None  # our extension: parameter id "traceback"
    execution_duration: float = 0.0
    instance_id: str | None = None
    stopped: bool = False  # our extension: the job was cancelled, not failed (status "stopped")
    logs: list[str] = field(default_factory=list)  # our extension: the last lines the job logged

    def encode(self) -> bytes:
        parameters = [{"id": "message", "type": "string", "value": self.message}]
        if self.traceback is not None:
            parameters.append({"id": "traceback", "type": "string", "value": self.traceback})
        data: dict[str, Any] = {
            "job_id": self.job_id,
            "error": self.message,  # StepFlow's backend reads it whatever the parameters hold
            "status": "stopped" if self.stopped else "error",
            "execution_duration": self.execution_duration,
            "parameters": parameters,
        }
        if self.instance_id is not None:
            data["instance_id"] = self.instance_id
        if self.logs:
            data["logs"] = self.logs
        return _dumps(data)


@dataclass
class WorkerNotice:
    """worker -> backend, ``job_error`` without a ``job_id``: what the SDK sends about a direct message it could
    not read (``{"status": "error", "message": ...}``). About a worker, not a job."""

    message: str
    instance_id: str | None = None


@dataclass
class JobProgression:
    """worker -> backend, ``job_response`` / ``job_progression``."""

    job_id: int
    progression: int  # 0..100
    datetime: str = ""  # ISO-8601 UTC, "…Z"
    instance_id: str | None = None

    def encode(self) -> bytes:
        return _dumps({
            "job_id": self.job_id,
            "progression": clamp_progression(self.progression),
            "datetime": self.datetime,
            "instance_id": self.instance_id,
            "docker_container_id": self.instance_id,  # what StepFlow's backend reads
        })


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

    @property
    def served_types(self) -> list[str]:
        """The job types it serves: ``job_types``, or (an SDK worker sends none) the one of ``queue_name``."""
        if self.job_types or not self.queue_name.startswith("job_"):
            return self.job_types
        return [self.queue_name[len("job_"):]]

    def encode(self) -> bytes:
        return _dumps({f.name: getattr(self, f.name) for f in fields(self)})


def decode_order(body: bytes) -> JobOrder:
    """Parse an order: ``job_id`` an integer, ``parameters`` an array of objects with ``id`` and ``type``.
    Other keys (StepFlow 1.x's ``type`` envelope, for instance) are ignored."""
    data = _loads(body)
    job_id = _job_id(data)
    return JobOrder(job_id=job_id, parameters=_parameters(data, required=True))


def _decode_completed(data: dict[str, Any], job_id: int) -> JobCompleted:
    return JobCompleted(
        job_id=job_id,
        execution_duration=_duration(data),
        destination_paths=_string_list(data, "destination_paths"),
        parameters=_parameters(data, required=False),
        instance_id=_optional_str(data, "instance_id"),
        logs=_logs(data),
    )


def _decode_failed(data: dict[str, Any], job_id: int, status: str | None) -> JobFailed:
    parameters = _parameters(data, required=False)
    values = {parameter["id"]: parameter.get("value") for parameter in parameters}
    message = data.get("error")
    if message is None:
        message = values.get("message")
    if message is None:
        message = data.get("message")  # some SDK versions put it at the top level
    traceback = values.get("traceback")
    return JobFailed(
        job_id=job_id,
        # A worker's error text may be a structure: keep it readable rather than refuse the whole message.
        message=(message if isinstance(message, str) else json.dumps(message))
        if message is not None else "the worker reported an error without a message",
        traceback=traceback if traceback is None or isinstance(traceback, str) else json.dumps(traceback),
        execution_duration=_duration(data),
        instance_id=_optional_str(data, "instance_id"),
        stopped=status == "stopped",
        logs=_logs(data),
    )


def _logs(data: dict[str, Any]) -> list[str]:
    """The ``logs`` lines of a result (our extension), at most `MAX_LOG_LINES` of `MAX_LOG_LINE` characters.
    Malformed ones are dropped, not refused: the result they came with still counts."""
    value = data.get("logs")
    if not isinstance(value, list):
        return []
    return [str(line)[:MAX_LOG_LINE] for line in value[-MAX_LOG_LINES:]]


def _decode_progression(data: dict[str, Any], job_id: int) -> JobProgression:
    value = data.get("progression")
    if not _is_number(value):
        raise ProtocolError(f"progression must be a number, not {_kind(value)}")
    # StepFlow workers send docker_container_id where ours send instance_id.
    instance_id = _optional_str(data, "instance_id")
    if instance_id is None:
        instance_id = _optional_str(data, "docker_container_id")
    return JobProgression(job_id=job_id, progression=clamp_progression(value),
                          datetime=_optional_str(data, "datetime") or "", instance_id=instance_id)


def decode_response(queue: str, body: bytes) -> JobCompleted | JobFailed | JobProgression | WorkerNotice:
    """Decode a message from ``job_completed`` / ``job_error`` / ``job_progression`` / ``job_stopped`` (by
    queue name).

    Liberal in what it accepts: a ``status`` of "error" / "stopped" decodes as `JobFailed` whatever the
    queue, ``{"job_id", "error": "..."}`` is an error, anything on ``job_stopped`` a stopped job, and an error
    without a ``job_id`` a `WorkerNotice`. Never liberal about a job id that is there.
    """
    data = _loads(body)
    if "job_id" not in data and queue in (ERROR_QUEUE, COMPLETED_QUEUE):
        return _decode_notice(data)
    job_id = _job_id(data)
    if queue == PROGRESSION_QUEUE:
        return _decode_progression(data, job_id)
    if queue == STOPPED_QUEUE:
        return JobFailed(job_id, STOPPED_REASON, execution_duration=_duration(data),
                         instance_id=_optional_str(data, "instance_id"), stopped=True)
    if queue not in (COMPLETED_QUEUE, ERROR_QUEUE):
        raise ProtocolError(f"no response messages on queue {queue!r}")
    status = data.get("status")
    if status is not None and not isinstance(status, str):
        raise ProtocolError(f"status must be a string, not {_kind(status)}")
    if status in ("error", "stopped") or (status is None and (queue == ERROR_QUEUE or "error" in data)):
        return _decode_failed(data, job_id, status)
    if status in ("completed", None):
        return _decode_completed(data, job_id)
    raise ProtocolError(f"unknown status {status!r} (expected completed, error or stopped)")


def _decode_notice(data: dict[str, Any]) -> WorkerNotice:
    """An error about no job: its text (``message`` or ``error``), else it is not a message of ours at all."""
    message = data.get("message", data.get("error"))
    if data.get("status") != "error" or message is None:
        raise ProtocolError("message has no job_id")
    return WorkerNotice(message if isinstance(message, str) else json.dumps(message),
                        _optional_str(data, "instance_id"))


def _field(data: dict[str, Any], key: str, default: Any, check: Any, expected: str) -> Any:
    value = data.get(key)
    if value is None:
        return default
    if not check(value):
        raise ProtocolError(f"{key} must be {expected}, not {_kind(value)}")
    return value


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(item) for item in value)


def decode_worker_status(body: bytes, routing_key: str = "") -> WorkerStatus:
    """Parse a worker discovery / status / terminated message: ours (flat, with ``kind``) or the SDK's (its
    description flat on discovery and terminated, ``{"type": "status", "job", "worker": {...}}`` on status).
    Without ``kind`` the routing key says which (`WORKER_MESSAGE_KINDS`). ``instance_id`` is required; missing
    optional fields get their defaults; other keys are ignored."""
    data = _loads(body)
    job: Any = None
    if isinstance(data.get("worker"), dict):  # the SDK's status reply
        job, data = data.get("job"), {**data["worker"], "kind": "status"}
    instance_id = data.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise ProtocolError(f"worker message needs a string instance_id, got {_kind(instance_id)}")
    kind = _field(data, "kind", WORKER_MESSAGE_KINDS.get(routing_key, "status"), _is_str, "a string")
    queue_name = _field(data, "queue_name", "", _is_str, "a string")
    current_jobs = list(_field(data, "current_jobs", [], _is_int_list, "an array of job ids"))
    if isinstance(job, dict) and _is_int(job.get("job_id")) and job["job_id"] not in current_jobs:
        current_jobs.append(job["job_id"])
    return WorkerStatus(
        instance_id=instance_id,
        queue_name=queue_name,
        label=_field(data, "label", "", _is_str, "a string"),
        version=_field(data, "version", "", _is_str, "a string"),
        kind=kind,
        job_types=list(_field(data, "job_types", [], _is_str_list, "an array of strings")),
        activity=_field(data, "activity", "Terminated" if kind == "terminated" else "Idle", _is_str, "a string"),
        current_jobs=current_jobs,
        parameters=dict(_field(data, "parameters", {}, lambda value: isinstance(value, dict), "an object")),
        hostname=_field(data, "hostname", "", _is_str, "a string"),
        pid=_field(data, "pid", 0, _is_int, "an integer"),
        concurrency=_field(data, "concurrency", 1, _is_int, "an integer"),
        interval=float(_field(data, "interval", 5.0, _is_number, "a number")),
        datetime=_field(data, "datetime", "", _is_str, "a string"),
        direct_messaging_queue_name=_field(data, "direct_messaging_queue_name", "", _is_str, "a string"),
    )


def decode_not_found(body: bytes) -> int:
    """A message that reached ``job_queue_not_found`` is a JobOrder: return its job id."""
    return _job_id(_loads(body))


# Direct messages (backend -> worker) live in their own module; they are part of this vocabulary.
from stepflow_tui.core.direct_messages import DirectMessage, black_list, decode_direct  # noqa: E402, F401
