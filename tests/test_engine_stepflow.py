"""StepFlow's step features in the engine, pure: workflow parameters from job outputs, multiple_jobs segment
fan-out, expressions, conditions, template variables, destination paths, allow_failure, credential references,
notification steps and hooks (the engine only emits them)."""

from __future__ import annotations

import itertools
import json

from stepflow_tui.core.definitions import parse_definitions
from stepflow_tui.core.engine import Engine
from stepflow_tui.core.launch import dates
from stepflow_tui.core.model import JobStatus, State, StepStatus, Workflow, WorkflowStatus
from stepflow_tui.core.protocol import JobCompleted, JobFailed

SEGMENTS = [{"start": 0, "end": 99}, {"start": 100, "end": 249}]


def make_engine() -> Engine:
    ticks = itertools.count()
    return Engine(State(), clock=lambda: f"2026-03-04T05:06:{next(ticks) % 60:02d}Z", monotonic=lambda: 0.0)


def segment_workflow(**extra):
    """Detect scenes (outputs media_segments), encode each segment of each input, gather, notify."""
    raw = {
        "schema_version": "1.13", "identifier": "scenes", "label": "Scenes", "icon": "movie",
        "reference": "ref-7",
        "parameters": [{"id": "media_segments", "type": "array_of_media_segments"},
                       {"id": "codec", "type": "string", "value": "h264"}],
        "start_parameters": [{"id": "source", "type": "file", "required": True},
                             {"id": "quality", "type": "choice", "items": [{"id": "hq", "label": "High"}],
                              "default": "hq"}],
        "steps": [
            {"id": 1, "name": "detect", "parameters": [
                {"id": "source_paths", "type": "array_of_templates", "value": ["{source}"]}]},
            {"id": 2, "name": "encode", "parent_ids": [1], "multiple_jobs": "media_segments",
             "work_dir": "/work",
             "parameters": [
                 {"id": "frames", "type": "template", "value": "<%= sdk_stop_index - sdk_start_index + 1 %>"},
                 {"id": "label", "type": "template",
                  "value": "{name}-<%= sdk_start_index %>-{codec}-{quality}-{workflow_reference}-{date}"},
                 {"id": "key", "type": "credential", "value": "S3_KEY"},
                 {"id": "secret", "type": "string", "value": "S3_SECRET", "store": "ENV"}]},
            {"id": 3, "name": "gather", "parent_ids": [2], "mode": "one_for_many"},
        ],
    }
    raw.update(extra)
    return parse_definitions(raw, "test.json")[0]


def complete(engine, job, paths=(), outputs=()):
    return engine.on_completed(JobCompleted(job.id, 0.1, list(paths), parameters=list(outputs)))


def test_segment_fan_out_with_indexes_expressions_and_variables():
    engine = make_engine()
    wf = engine.start_workflow(segment_workflow(), {"source": "/in/a.mov"})
    (detect,) = engine.take_outbox(10)
    assert detect.parameter("source_path") == "/in/a.mov"  # the root's source_paths, rendered
    complete(engine, detect, ["/in/a.mov", "/in/b.mov"],
             [{"id": "media_segments", "type": "array_of_media_segments", "value": SEGMENTS}])
    assert wf.variables["media_segments"] == SEGMENTS  # the workflow's runtime parameter
    encodes = engine.take_outbox(10)
    # One job per segment and per input, StepFlow's order (segments outer, inputs inner).
    got = [(j.parameter("source_path"), j.parameter("sdk_start_index"), j.parameter("sdk_stop_index"))
           for j in encodes]
    assert got == [("/in/a.mov", 0, 99), ("/in/b.mov", 0, 99), ("/in/a.mov", 100, 249), ("/in/b.mov", 100, 249)]
    assert [j.parameter("frames") for j in encodes] == ["100", "100", "150", "150"]
    assert encodes[2].parameter("label") == "a-100-h264-hq-ref-7-2026_03_04"
    assert encodes[0].parameter("destination_path") == f"/work/{wf.id}/a.mov"
    # Credentials travel as references: the key's name and its store, never a value.
    key = next(p for p in encodes[0].parameters if p["id"] == "key")
    secret = next(p for p in encodes[0].parameters if p["id"] == "secret")
    assert key == {"id": "key", "type": "credential", "value": "S3_KEY"}
    assert secret == {"id": "secret", "type": "string", "value": "S3_SECRET", "store": "ENV"}
    for job in encodes:
        complete(engine, job, [job.parameter("destination_path")])
    (gather,) = engine.take_outbox(10)
    assert gather.parameter("source_paths") == [f"/work/{wf.id}/a.mov", f"/work/{wf.id}/b.mov"]
    complete(engine, gather)
    assert wf.status == WorkflowStatus.COMPLETED


def test_multiple_jobs_without_segments_launches_as_usual():
    engine = make_engine()
    engine.start_workflow(segment_workflow(), {"source": "/in/a.mov"})
    (detect,) = engine.take_outbox(10)
    complete(engine, detect, ["/in/a.mov"])
    wf = next(iter(engine.state.workflows.values()))
    (encode,) = [engine.state.jobs[i] for i in wf.step(2).job_ids]  # one job, as StepFlow
    assert encode.parameter("sdk_start_index") is None
    # Its templates read the segment indexes, which only a segment sets: the job fails, naming the variable.
    assert encode.status == JobStatus.ERROR and "sdk_stop_index" in encode.error


def test_bad_segments_fail_the_job_with_a_reason():
    engine = make_engine()
    wf = engine.start_workflow(segment_workflow(), {"source": "/in/a.mov"})
    (detect,) = engine.take_outbox(10)
    complete(engine, detect, ["/in/a.mov"], [{"id": "media_segments", "value": [{"start": "0"}]}])
    (job,) = [engine.state.jobs[i] for i in wf.step(2).job_ids]
    assert job.status == JobStatus.ERROR and "media_segments[0]" in job.error


def conditional(condition_1: str, condition_2: str):
    return parse_definitions({"identifier": "cond", "label": "C", "start_parameters": [
        {"id": "level", "type": "number", "default": 3}], "steps": [
        {"id": 1, "name": "a", "condition": condition_1},
        {"id": 2, "name": "b", "parent_ids": [1]},
        {"id": 3, "name": "c", "required_to_start": [], "condition": condition_2},
    ]}, "test.json")[0]


def test_a_false_condition_skips_the_step_and_its_children():
    engine = make_engine()
    wf = engine.start_workflow(conditional("level > 5", "<%= level * 2 == 6 %>"), {})
    (job_c,) = engine.take_outbox(10)
    assert job_c.job_type == "c"
    assert wf.step(1).status == StepStatus.SKIPPED and wf.step(2).status == StepStatus.SKIPPED
    (skipped,) = [engine.state.jobs[i] for i in wf.step(1).job_ids]
    assert skipped.status == JobStatus.SKIPPED and "condition is false" in skipped.history[-1][2]
    complete(engine, job_c)
    assert wf.status == WorkflowStatus.COMPLETED


def test_a_condition_that_is_not_a_boolean_fails_the_step():
    engine = make_engine()
    wf = engine.start_workflow(conditional("level + 1", "false"), {})
    assert wf.step(1).status == StepStatus.ERROR
    assert "not true or false" in engine.state.jobs[wf.step(1).job_ids[0]].error
    assert wf.status == WorkflowStatus.ERROR


def test_allow_failure_lets_the_next_steps_run_on_what_exists():
    engine = make_engine()
    definition = parse_definitions({"identifier": "af", "label": "AF", "steps": [
        {"id": 1, "name": "split", "parameters": [
            {"id": "source_paths", "type": "array_of_strings", "value": ["/a", "/b"]}]},
        {"id": 2, "name": "merge", "parent_ids": [1], "mode": "one_for_many"},
        {"id": 3, "name": "strict", "required_to_start": [], "allow_failure": False},
    ]}, "test.json")[0]
    definition_allowed = parse_definitions({**definition.raw, "identifier": "af2", "steps": [
        {**definition.raw["steps"][0], "allow_failure": True}, *definition.raw["steps"][1:]]}, "t.json")[0]
    for allowed, expected in ((definition_allowed, WorkflowStatus.COMPLETED),):
        wf = engine.start_workflow(allowed, {})
        first, second, strict = engine.take_outbox(10)
        complete(engine, first, ["/a.out"])
        engine.on_failed(JobFailed(second.id, "broken", None, 0.1))
        assert wf.step(1).status == StepStatus.ERROR
        (merge,) = engine.take_outbox(10)
        assert merge.parameter("source_paths") == ["/a.out"]
        complete(engine, merge)
        complete(engine, strict)
        assert wf.status == expected
    wf = engine.start_workflow(definition, {})
    first, second, strict = engine.take_outbox(10)
    engine.on_failed(JobFailed(first.id, "broken", None, 0.1))
    complete(engine, second, ["/b.out"])
    complete(engine, strict)
    assert engine.take_outbox(10) == []
    assert wf.status == WorkflowStatus.ERROR


def test_skip_destination_path_and_destination_filename():
    engine = make_engine()
    definition = parse_definitions({"identifier": "d", "label": "D", "steps": [
        {"id": 1, "name": "a", "parameters": [
            {"id": "source_paths", "type": "array_of_strings", "value": ["/x/m.mp4"]},
            {"id": "destination_filename", "type": "template", "value": "{name}_<%= 1 + 1 %>.wav"}]},
        {"id": 2, "name": "b", "work_dir": "/w", "skip_destination_path": True, "parameters": [
            {"id": "source_paths", "type": "array_of_strings", "value": ["/x/m.mp4"]}]},
    ]}, "test.json")[0]
    wf = engine.start_workflow(definition, {})
    a, b = engine.take_outbox(10)
    assert a.parameter("destination_path") == f"/{wf.id}/m_2.wav"
    assert b.parameter("destination_path") is None


def test_workflow_variables_survive_the_state_documents():
    engine = make_engine()
    wf = engine.start_workflow(segment_workflow(), {"source": "/in/a.mov"})
    (detect,) = engine.take_outbox(10)
    complete(engine, detect, ["/in/a.mov"], [{"id": "media_segments", "value": SEGMENTS}])
    again = Workflow.from_dict(json.loads(json.dumps(wf.to_dict())))
    assert again.variables == {"media_segments": SEGMENTS}


def notifying(hooks=()):
    return parse_definitions({"identifier": "n", "label": "N", "notification_hooks": list(hooks), "steps": [
        {"id": 1, "name": "work"},
        {"id": 2, "name": "tell", "mode": "notification", "parent_ids": [1], "parameters": [
            {"id": "url", "type": "template", "value": "http://hooks.example/{workflow_id}"},
            {"id": "body", "type": "template", "value": "done: {source_paths}"}]},
    ]}, "test.json")[0]


def test_notification_step_is_a_call_not_an_order():
    engine = make_engine()
    wf = engine.start_workflow(notifying(), {})
    (work,) = engine.take_outbox(10)
    complete(engine, work, ["/o/1"])
    assert engine.take_outbox(10) == []  # nothing for the broker
    (call,) = engine.take_notifications()
    assert (call.url, call.body, call.method) == (f"http://hooks.example/{wf.id}", 'done: ["/o/1"]', "POST")
    assert engine.take_notifications() == []
    engine.on_notification_sent(call.job_id, None)
    assert wf.status == WorkflowStatus.COMPLETED


def test_a_failed_notification_step_fails_its_job_without_retries():
    engine = make_engine()
    wf = engine.start_workflow(notifying(), {})
    (work,) = engine.take_outbox(10)
    complete(engine, work, ["/o/1"])
    (call,) = engine.take_notifications()
    engine.on_notification_sent(call.job_id, "HTTP 500 after 3 attempts")
    assert engine.state.jobs[call.job_id].status == JobStatus.ERROR
    assert wf.status == WorkflowStatus.ERROR
    engine.retry_job(call.job_id)  # an operator retry calls again
    (again,) = engine.take_notifications()
    assert again.job_id == call.job_id and engine.take_outbox(10) == []


def test_hooks_fire_on_the_events_their_conditions_name():
    hooks = [{"label": "ops", "endpoint": "http://ops/", "conditions": {"job_error": True,
                                                                       "workflow_completed": True}},
             {"label": "off", "endpoint": "http://off/", "conditions": {"job_completed": False}}]
    engine = make_engine()
    wf = engine.start_workflow(notifying(hooks), {})
    (work,) = engine.take_outbox(10)
    engine.on_failed(JobFailed(work.id, "bad input", None, 0.1))
    (error_hook,) = engine.take_notifications()
    body = json.loads(error_hook.body)
    assert error_hook.url == "http://ops/" and body["event"] == "job_error"
    assert (body["job_id"], body["error"], body["workflow_id"]) == (work.id, "bad input", wf.id)
    engine.retry_job(work.id)
    (work,) = engine.take_outbox(10)
    complete(engine, work, ["/o"])
    (call,) = engine.take_notifications()
    engine.on_notification_sent(call.job_id, None)
    (done,) = engine.take_notifications()
    assert json.loads(done.body)["event"] == "workflow_completed"


def test_dates_as_stepflow_formats_them():
    assert dates("2026-03-04T05:06:07.123456Z") == {"date_time": "2026_03_04__05_06_07", "date": "2026_03_04"}


def test_a_notification_step_not_answered_is_called_again_after_a_restart():
    engine = make_engine()
    wf = engine.start_workflow(notifying(), {})
    (work,) = engine.take_outbox(10)
    complete(engine, work, ["/o/1"])
    (call,) = engine.take_notifications()
    # The backend stopped before the call's result: a new engine over the same (reloaded) state.
    state = State(workflows={wf.id: Workflow.from_dict(wf.to_dict())},
                  jobs={j.id: type(j).from_dict(j.to_dict()) for j in engine.state.jobs.values()},
                  next_workflow_id=engine.state.next_workflow_id, next_job_id=engine.state.next_job_id)
    again = Engine(state, clock=lambda: "2026-03-04T06:00:00Z", monotonic=lambda: 0.0)
    assert again.resume_unfinished(orders_survived=True) == 1
    assert again.take_outbox(10) == []  # never an order to a broker queue
    (resent,) = again.take_notifications()
    assert (resent.job_id, resent.url) == (call.job_id, call.url)


def split_encoding():
    """The public split-encoding example's shape: a transfer and a splitter that report no paths (their orders'
    generated destination_path is their output), segments as an output parameter, float expressions."""
    return parse_definitions({"identifier": "split", "label": "Split", "schema_version": "1.8",
                              "parameters": [{"id": "source_file", "type": "string"}],
                              "start_parameters": [{"id": "source_file", "type": "file"}], "steps": [
        {"id": 0, "name": "job_transfer", "parameters": [
            {"id": "source_paths", "type": "array_of_templates", "value": ["{source_file}"]},
            {"id": "secret", "type": "string", "store": "BACKEND", "value": "S3_SECRET"}]},
        {"id": 1, "name": "job_splitter", "parent_ids": [0], "required_to_start": [0]},
        {"id": 2, "name": "job_ffmpeg", "parent_ids": [1], "required_to_start": [1],
         "multiple_jobs": "media_segments", "parameters": [
            {"id": "command", "type": "string", "value": "ffmpeg -i {source_path} -ss {start} {output}"},
            {"id": "start", "type": "template", "value": "<%= sdk_start_index / 1000.0 %>"},
            {"id": "stop", "type": "template", "value": "<%= (sdk_stop_index + 1) / 1000.0 %>"},
            {"id": "destination_path", "type": "template",
             "value": "{work_directory}/{workflow_id}/part-{sdk_start_index}.wav"}]},
        {"id": 3, "name": "job_transfer", "parent_ids": [2], "required_to_start": [2], "parameters": [
            {"id": "input_filter", "type": "filter", "value": {"ends_with": [".wav"]}}]},
    ]}, "test.json")[0]


def test_a_job_that_reports_no_paths_produced_its_generated_destination():
    ticks = itertools.count()
    engine = Engine(State(), clock=lambda: f"2026-03-04T05:06:{next(ticks) % 60:02d}Z", monotonic=lambda: 0.0,
                    work_directory="/data/work")
    wf = engine.start_workflow(split_encoding(), {"source_file": "s3://bucket/in.mp4"})
    (transfer,) = engine.take_outbox(10)
    assert transfer.parameter("source_path") == "s3://bucket/in.mp4"
    assert transfer.parameter("destination_path") == f"/data/work/{wf.id}/in.mp4"
    complete(engine, transfer)  # a Media Cloud AI transfer reports no destination_paths
    (splitter,) = engine.take_outbox(10)
    assert splitter.parameter("source_path") == f"/data/work/{wf.id}/in.mp4"
    complete(engine, splitter, outputs=[{"id": "media_segments", "type": "array_of_media_segments",
                                         "value": [{"start": 0, "end": 999}, {"start": 1000, "end": 1999}]}])
    parts = engine.take_outbox(10)
    assert [(j.parameter("start"), j.parameter("stop")) for j in parts] == [("0.0", "1.0"), ("1.0", "2.0")]
    assert parts[0].parameter("command") == "ffmpeg -i {source_path} -ss {start} {output}"  # strings as given
    assert [j.parameter("destination_path") for j in parts] == [
        f"/data/work/{wf.id}/part-0.wav", f"/data/work/{wf.id}/part-1000.wav"]
    for job in parts:
        complete(engine, job)
    uploads = engine.take_outbox(10)
    assert [j.parameter("source_path") for j in uploads] == [f"/data/work/{wf.id}/part-0.wav",
                                                             f"/data/work/{wf.id}/part-1000.wav"]
    for job in uploads:
        complete(engine, job)
    assert wf.status == WorkflowStatus.COMPLETED


def test_a_job_that_reports_paths_is_believed():
    engine = make_engine()
    wf = engine.start_workflow(split_encoding(), {"source_file": "/in/a.mp4"})
    (transfer,) = engine.take_outbox(10)
    assert transfer.parameter("destination_path") == f"/{wf.id}/a.mp4"  # StepFlow's base without a work dir
    complete(engine, transfer, ["/elsewhere/a.mp4"])
    (splitter,) = engine.take_outbox(10)
    assert splitter.parameter("source_path") == "/elsewhere/a.mp4"
