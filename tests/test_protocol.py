"""Wire protocol: encode / decode round trips, StepFlow forms, malformed bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepflow_tui.core.protocol import (
    JobCompleted,
    JobFailed,
    JobOrder,
    JobProgression,
    ProtocolError,
    WorkerStatus,
    decode_not_found,
    decode_order,
    decode_response,
    decode_worker_status,
)


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_order_round_trip_and_wire_form() -> None:
    order = JobOrder(job_id=12, parameters=[
        {"id": "path", "type": "string", "value": "/data/é.txt"},
        {"id": "n", "type": "integer", "value": 3, "default": 1}])
    encoded = order.encode()
    assert encoded.startswith(b'{"job_id":12,"parameters":[{"id":"path","type":"string","value":"/data/\xc3\xa9')
    assert b": " not in encoded and b", " not in encoded  # compact separators
    assert decode_order(encoded) == order
    assert decode_order(encoded).parameter("n") == 3


def test_order_ignores_extra_keys() -> None:
    order = decode_order(body({"job_id": 1, "type": "job", "parameters": []}))
    assert order == JobOrder(1, [])


@pytest.mark.parametrize(("raw", "words"), [
    (b"not json", "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "JSON object, not an array"),
    (b'"text"', "JSON object, not a string"),
    (body({"parameters": []}), "no job_id"),
    (body({"job_id": "12", "parameters": []}), "job_id must be an integer, not a string"),
    (body({"job_id": True, "parameters": []}), "not a boolean"),
    (body({"job_id": 1.5, "parameters": []}), "not a number"),
    (body({"job_id": None, "parameters": []}), "not null"),
    (body({"job_id": 1}), "no parameters"),
    (body({"job_id": 1, "parameters": {"id": "a"}}), "parameters must be an array"),
    (body({"job_id": 1, "parameters": ["a"]}), "parameters[0] must be an object"),
    (body({"job_id": 1, "parameters": [{"type": "string"}]}), "parameters[0] needs a string 'id'"),
    (body({"job_id": 1, "parameters": [{"id": "a", "value": 1}]}), "parameters[0] needs a string 'type'"),
])
def test_malformed_orders(raw: bytes, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_order(raw)
    assert words in str(caught.value)


def test_completed_round_trip() -> None:
    completed = JobCompleted(job_id=3, execution_duration=0.4, destination_paths=["/out/a"],
                             parameters=[{"id": "sha256", "type": "string", "value": "ab"}], instance_id="w1")
    data = json.loads(completed.encode())
    assert data == {"job_id": 3, "status": "completed", "execution_duration": 0.4,
                    "destination_paths": ["/out/a"], "parameters": [{"id": "sha256", "type": "string",
                                                                      "value": "ab"}], "instance_id": "w1"}
    assert decode_response("job_completed", completed.encode()) == completed
    without_instance = JobCompleted(job_id=3)
    assert "instance_id" not in json.loads(without_instance.encode())
    assert decode_response("job_completed", without_instance.encode()) == without_instance


def test_completed_stepflow_minimal() -> None:
    decoded = decode_response("job_completed", body({"job_id": 7, "status": "completed",
                                                     "destination_paths": None, "execution_duration": 2}))
    assert decoded == JobCompleted(job_id=7, execution_duration=2.0)


def test_failed_round_trip() -> None:
    failed = JobFailed(job_id=4, message="boom", traceback="Traceback…", execution_duration=1.0,
                       instance_id="w2")
    data = json.loads(failed.encode())
    assert data["status"] == "error"
    assert data["parameters"] == [{"id": "message", "type": "string", "value": "boom"},
                                  {"id": "traceback", "type": "string", "value": "Traceback…"}]
    assert decode_response("job_error", failed.encode()) == failed
    stopped = JobFailed(job_id=4, message="cancelled", stopped=True)
    assert json.loads(stopped.encode())["status"] == "stopped"
    assert json.loads(stopped.encode())["parameters"] == [{"id": "message", "type": "string",
                                                           "value": "cancelled"}]
    assert decode_response("job_error", stopped.encode()) == stopped


def test_failed_stepflow_forms() -> None:
    assert decode_response("job_error", body({"job_id": 5, "error": "no such file"})) == \
        JobFailed(job_id=5, message="no such file")
    # A StepFlow worker publishing its error on job_completed: still an error, not a success.
    wrong_queue = body({"job_id": 5, "status": "error",
                        "parameters": [{"id": "message", "type": "string", "value": "bad"}]})
    assert decode_response("job_completed", wrong_queue) == JobFailed(job_id=5, message="bad")
    assert decode_response("job_completed", body({"job_id": 5, "error": "x"})) == JobFailed(5, "x")
    without_message = decode_response("job_error", body({"job_id": 5, "status": "error"}))
    assert isinstance(without_message, JobFailed) and "without a message" in without_message.message
    structured = decode_response("job_error", body({"job_id": 5, "error": {"code": 3}}))
    assert isinstance(structured, JobFailed) and structured.message == '{"code": 3}'


def test_progression_round_trip_and_clamping() -> None:
    progression = JobProgression(job_id=6, progression=40, datetime="2026-01-01T00:00:00Z", instance_id="w")
    assert json.loads(progression.encode()) == {"job_id": 6, "progression": 40,
                                                "datetime": "2026-01-01T00:00:00Z", "instance_id": "w",
                                                "docker_container_id": "w"}  # StepFlow's name for it
    assert decode_response("job_progression", progression.encode()) == progression
    assert json.loads(JobProgression(6, 250).encode())["progression"] == 100
    assert json.loads(JobProgression(6, -3).encode())["progression"] == 0
    decoded = decode_response("job_progression", body({"job_id": 6, "progression": 42.7,
                                                       "docker_container_id": "c1"}))
    assert decoded == JobProgression(job_id=6, progression=42, instance_id="c1")


@pytest.mark.parametrize(("queue", "data", "words"), [
    ("job_completed", {"status": "completed"}, "no job_id"),
    ("job_error", {"job_id": "5", "error": "x"}, "job_id must be an integer"),
    ("job_completed", {"job_id": 1, "status": "weird"}, "unknown status 'weird'"),
    ("job_completed", {"job_id": 1, "status": 3}, "status must be a string"),
    ("job_completed", {"job_id": 1, "destination_paths": "/a"}, "destination_paths must be an array"),
    ("job_completed", {"job_id": 1, "destination_paths": [1]}, "destination_paths must be an array"),
    ("job_completed", {"job_id": 1, "execution_duration": "1s"}, "execution_duration must be a number"),
    ("job_completed", {"job_id": 1, "parameters": [{"id": "a"}]}, "needs a string 'type'"),
    ("job_completed", {"job_id": 1, "instance_id": 4}, "instance_id must be a string"),
    ("job_progression", {"job_id": 1}, "progression must be a number"),
    ("job_progression", {"job_id": 1, "progression": "40"}, "progression must be a number"),
    ("job_progression", {"job_id": 1, "progression": True}, "progression must be a number"),
    ("job_cancelled", {"job_id": 1}, "no response messages on queue 'job_cancelled'"),
])
def test_malformed_responses(queue: str, data: dict[str, Any], words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_response(queue, body(data))
    assert words in str(caught.value)


@pytest.mark.parametrize("raw", [b"", b"{", b"null", b"42"])
def test_response_not_an_object(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_response("job_completed", raw)


def test_worker_status_round_trip() -> None:
    status = WorkerStatus(
        instance_id="host-1-abc", queue_name="job_checksum", label="Checksum", version="1.2.0",
        kind="discovery", job_types=["checksum", "list_files"], activity="Busy", current_jobs=[4, 5],
        parameters={"type": "object"}, hostname="host", pid=42, concurrency=4, interval=2.5,
        datetime="2026-01-01T00:00:00Z", direct_messaging_queue_name="direct_messaging_host-1-abc")
    assert decode_worker_status(status.encode()) == status
    assert set(json.loads(status.encode())) == set(status.__dict__)


def test_worker_status_stepflow_discovery() -> None:
    # A Media Cloud AI worker's discovery: extra keys ignored, missing ones defaulted.
    decoded = decode_worker_status(body({
        "instance_id": "1a2b", "queue_name": "job_ffmpeg", "label": "FFmpeg", "version": "0.11.0",
        "sdk_version": "1.0", "short_description": "...", "description": "...",
        "parameters": {"$schema": "x"}, "direct_messaging_queue_name": "direct_messaging_1a2b"}))
    assert decoded == WorkerStatus(instance_id="1a2b", queue_name="job_ffmpeg", label="FFmpeg",
                                   version="0.11.0", parameters={"$schema": "x"},
                                   direct_messaging_queue_name="direct_messaging_1a2b")
    assert decoded.kind == "status" and decoded.activity == "Idle" and decoded.interval == 5.0


@pytest.mark.parametrize(("data", "words"), [
    ({"queue_name": "job_x"}, "instance_id"),
    ({"instance_id": ""}, "instance_id"),
    ({"instance_id": "a", "current_jobs": ["1"]}, "current_jobs must be an array of job ids"),
    ({"instance_id": "a", "pid": "12"}, "pid must be an integer"),
    ({"instance_id": "a", "interval": "fast"}, "interval must be a number"),
    ({"instance_id": "a", "parameters": []}, "parameters must be an object"),
    ({"instance_id": "a", "job_types": "x"}, "job_types must be an array of strings"),
])
def test_malformed_worker_status(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_worker_status(body(data))
    assert words in str(caught.value)


def test_decode_not_found() -> None:
    assert decode_not_found(JobOrder(31, [{"id": "a", "type": "string", "value": "x"}]).encode()) == 31
    with pytest.raises(ProtocolError, match="no job_id"):
        decode_not_found(body({"parameters": []}))
    with pytest.raises(ProtocolError):
        decode_not_found(b"garbage")
