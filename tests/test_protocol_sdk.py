"""Everything Media Cloud AI's SDK (mcai-worker-sdk 2.1.1, Rust core 2.2.1) sends decodes, and our direct
messages are in its variants. The bodies are the SDK's own, captured on RabbitMQ (system_info shortened)."""

from __future__ import annotations

import json

import pytest

from stepflow_tui.core.protocol import (
    ADD_TO_BLACK_LIST,
    DELETE_FROM_BLACK_LIST,
    RESUME_CONSUMING_JOBS,
    STATUS_REQUEST,
    STOP_CONSUMING_JOBS,
    STOP_PROCESS,
    STOP_WORKER,
    STOPPED_REASON,
    DirectMessage,
    JobCompleted,
    JobFailed,
    JobProgression,
    ProtocolError,
    WorkerNotice,
    black_list,
    decode_direct,
    decode_response,
    decode_worker_status,
)

ID = "8c0562e9-236d-47f6-a6b0-22ef60628177"
DESCRIPTION = {
    "description": "probe worker", "direct_messaging_queue_name": f"direct_messaging_{ID}", "instance_id": ID,
    "label": "sdk_probe", "license": "MIT", "name": "sdk_probe",
    "parameters": {"$schema": "https://json-schema.org/draft/2020-12/schema", "additionalProperties": False,
                   "properties": {"sleep": {"type": "integer"}, "source_path": {"type": "string"}},
                   "type": "object"},
    "queue_name": "job_probe", "sdk_version": "2.2.1", "version": "1.2.3",
}
SYSTEM_INFO = {"cores": [{"name": "cpu0", "usage": 100}], "gpus": [], "memory": 630113,
               "load_average": {"fifteen_minute": 7.4, "five_minute": 5.96, "one_minute": 4.03}}
BUSY = {
    "job": {"cpu_time": 0.049, "datetime": "2026-11-30T16:52:24.030989713Z", "destination_paths": [],
            "execution_duration": 2.9, "gpu_time": 0.0, "job_id": 14, "parameters": [], "status": "processing"},
    "type": "status",
    "worker": {"activity": "Busy", **DESCRIPTION, "system_info": SYSTEM_INFO},
}


def body(data: object) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize(("routing_key", "kind", "activity"), [
    ("worker_discovery", "discovery", "Idle"),  # on job_response
    ("worker_created", "discovery", "Idle"),  # on worker_response
    ("worker_terminated", "terminated", "Terminated"),
])
def test_the_sdks_description_by_route(routing_key: str, kind: str, activity: str) -> None:
    status = decode_worker_status(body(DESCRIPTION), routing_key)
    assert (status.instance_id, status.kind, status.activity) == (ID, kind, activity)
    assert status.served_types == ["probe"] and status.label == "sdk_probe" and status.version == "1.2.3"
    assert status.direct_messaging_queue_name == f"direct_messaging_{ID}"
    assert status.parameters["additionalProperties"] is False


def test_the_sdks_nested_status_reply() -> None:
    busy = decode_worker_status(body(BUSY), "worker_status")
    assert (busy.instance_id, busy.kind, busy.activity, busy.current_jobs) == (ID, "status", "Busy", [14])
    assert busy.served_types == ["probe"]
    idle = decode_worker_status(body({**BUSY, "job": None, "worker": {**BUSY["worker"], "activity": "Idle"}}))
    assert (idle.activity, idle.current_jobs) == ("Idle", [])


def test_ours_keeps_its_kind_whatever_the_route() -> None:
    ours = decode_worker_status(body({"instance_id": "w", "kind": "status", "job_types": ["a", "b"]}),
                                "worker_discovery")
    assert ours.kind == "status" and ours.served_types == ["a", "b"]


def test_progression_with_docker_container_id_and_system_info() -> None:
    message = decode_response("job_progression", body({
        "datetime": "2026-11-30T16:52:20.941131212Z", "docker_container_id": ID, "job_id": 11,
        "progression": 50, "system_info": SYSTEM_INFO}))
    assert message == JobProgression(11, 50, "2026-11-30T16:52:20.941131212Z", instance_id=ID)


def test_the_sdks_error_completed_and_stopped() -> None:
    error = decode_response("job_error", body({
        "cpu_time": 0.00009, "datetime": "2026-11-30T16:52:20.979953825Z", "destination_paths": [],
        "execution_duration": 0.5, "gpu_time": 0.0, "job_id": 11, "status": "error",
        "parameters": [{"default": None, "id": "message", "store": None, "type": "string",
                        "value": "AttributeError: type object 'Params' has no attribute 'sleep'"}]}))
    assert isinstance(error, JobFailed) and not error.stopped and error.job_id == 11
    assert error.message == "AttributeError: type object 'Params' has no attribute 'sleep'"
    completed = decode_response("job_completed", body({
        "cpu_time": 0.1, "datetime": "2026-11-30T16:52:21Z", "destination_paths": ["/tmp/a.txt.out"],
        "execution_duration": 0.2, "gpu_time": 0.0, "job_id": 12, "parameters": [], "status": "completed"}))
    assert completed == JobCompleted(12, 0.2, ["/tmp/a.txt.out"])
    stopped = decode_response("job_stopped", body({
        "cpu_time": 0.07, "datetime": "2026-11-30T16:52:25.293203280Z", "destination_paths": [],
        "execution_duration": 4.17, "gpu_time": 0.0, "job_id": 14, "parameters": [], "status": "completed"}))
    assert stopped == JobFailed(14, STOPPED_REASON, execution_duration=4.17, stopped=True)


@pytest.mark.parametrize("message", [
    "unknown variant `drop_jobs`, expected one of `job`, `init_process`, `start_process`, `stop_process`",
    "missing field `job_id`",
])
def test_an_error_without_job_id_is_a_worker_notice(message: str) -> None:
    assert decode_response("job_error", body({"message": message, "status": "error"})) == WorkerNotice(message)


def test_a_body_without_job_id_that_is_no_error_is_still_refused() -> None:
    with pytest.raises(ProtocolError, match="no job_id"):
        decode_response("job_error", body({"status": "completed"}))
    with pytest.raises(ProtocolError, match="no job_id"):
        decode_response("job_progression", body({"message": "x", "status": "error"}))


def test_our_direct_messages_are_the_sdks_variants() -> None:
    assert json.loads(DirectMessage(STOP_PROCESS, job_id=14).encode()) == {
        "type": "stop_process", "job_id": 14, "parameters": []}
    assert [json.loads(m.encode()) for m in black_list(ADD_TO_BLACK_LIST, [13, 15])] == [
        {"type": "add_to_black_list", "job_id": 13}, {"type": "add_to_black_list", "job_id": 15}]
    assert json.loads(black_list(DELETE_FROM_BLACK_LIST, [13])[0].encode()) == {
        "type": "delete_from_black_list", "job_id": 13}
    # Several ids (to a new worker of ours): the SDK reads the first, ours all.
    assert json.loads(DirectMessage(ADD_TO_BLACK_LIST, job_ids=[3, 4]).encode()) == {
        "type": "add_to_black_list", "job_id": 3, "job_ids": [3, 4]}
    for kind in (STATUS_REQUEST, STOP_CONSUMING_JOBS, RESUME_CONSUMING_JOBS, STOP_WORKER):
        assert json.loads(DirectMessage(kind).encode()) == {"type": kind}


def test_our_worker_reads_the_sdks_variants_and_our_old_names() -> None:
    assert decode_direct(b'{"type": "stop_process", "job_id": 3, "parameters": []}') == DirectMessage(
        STOP_PROCESS, job_id=3)
    assert decode_direct(b'{"type": "add_to_black_list", "job_id": 4}').job_ids == [4]
    assert decode_direct(b'{"type": "delete_from_black_list", "job_id": 4}').type == DELETE_FROM_BLACK_LIST
    old = decode_direct(b'{"type": "drop_jobs", "job_ids": [1, "x", 2]}')
    assert (old.type, old.job_ids) == (ADD_TO_BLACK_LIST, [1, 2])
    assert decode_direct(b'{"type": "undrop_jobs", "job_ids": [1]}').type == DELETE_FROM_BLACK_LIST
    assert decode_direct(b'{"type": "stop_job", "job_id": 9}') == DirectMessage(STOP_PROCESS, job_id=9)
    assert decode_direct(b'{"type": "stop_consuming_jobs"}').type == STOP_CONSUMING_JOBS
    with pytest.raises(ProtocolError, match="needs a job_id"):
        decode_direct(b'{"type": "add_to_black_list"}')
