"""Definitions: loading, validation messages, normalisation, start parameters, merging."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepflow_tui.core.definitions import (
    ONE_FOR_MANY,
    DefinitionError,
    StartParameterError,
    WorkflowDefinition,
    definition_from_dict,
    load_definitions,
    merge_definitions,
    parse_definitions,
    resolve_start_parameters,
)

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
SOURCE = "test.json"


def workflow(**changes: Any) -> dict[str, Any]:
    """A valid two-step workflow; keyword arguments replace top-level keys."""
    data: dict[str, Any] = {
        "identifier": "wf",
        "label": "A workflow",
        "start_parameters": [{"id": "source_dir", "label": "Source folder", "type": "file", "required": True}],
        "steps": [
            {"id": 1, "name": "list_files", "parameters": [
                {"id": "folder", "type": "template", "value": "{source_dir}"}]},
            {"id": 2, "name": "checksum", "parent_ids": [1],
             "parameters": [{"id": "root", "type": "string", "value": "/data"}]},
        ],
    }
    data.update(changes)
    return data


def with_step(index: int, **changes: Any) -> dict[str, Any]:
    data = workflow()
    data["steps"][index].update(changes)
    return data


def with_parameter(index: int, parameter: dict[str, Any]) -> dict[str, Any]:
    data = workflow()
    data["steps"][1]["parameters"] = [parameter]
    return data


def without(key: str) -> dict[str, Any]:
    data = workflow()
    del data[key]
    return data


def step_without(index: int, key: str) -> dict[str, Any]:
    data = workflow()
    del data["steps"][index][key]
    return data


def with_start(parameter: dict[str, Any]) -> dict[str, Any]:
    return workflow(start_parameters=[parameter])


BAD: list[tuple[str, Callable[[], Any], str, str]] = [
    # (case, data, field named in the message, words of the message)
    ("identifier missing", lambda: without("identifier"), "identifier", "identifier is required"),
    ("identifier pattern", lambda: workflow(identifier="Bad-Name"), "identifier", "^[a-z0-9_]+$"),
    ("identifier not a string", lambda: workflow(identifier=3), "identifier", "must match"),
    ("label missing", lambda: without("label"), "label", "label is required"),
    ("label empty", lambda: workflow(label="  "), "label", "non-empty string"),
    ("steps missing", lambda: without("steps"), "steps", "non-empty list"),
    ("steps empty", lambda: workflow(steps=[]), "steps", "non-empty list"),
    ("step not an object", lambda: workflow(steps=["noop"]), "steps[0]", "must be an object"),
    ("step id missing", lambda: step_without(0, "id"), "steps[0].id", "integer"),
    ("step id bool", lambda: with_step(0, id=True), "steps[0].id", "integer"),
    ("step id duplicate", lambda: with_step(1, id=1), "steps[1].id", "duplicate step id 1"),
    ("step name missing", lambda: step_without(1, "name"), "steps[1].name", "name is required"),
    ("step name empty", lambda: with_step(1, name=""), "steps[1].name", "non-empty string"),
    ("step name only prefix", lambda: with_step(1, name="job_"), "steps[1].name", "empty"),
    ("step name spaces", lambda: with_step(1, name="check sum"), "steps[1].name", "letters, digits"),
    ("parent unknown", lambda: with_step(1, parent_ids=[7]), "steps[1].parent_ids", "step 7 does not exist"),
    ("parent not a list", lambda: with_step(1, parent_ids=1), "steps[1].parent_ids", "list of step ids"),
    ("required unknown", lambda: with_step(1, required_to_start=[9]), "steps[1].required_to_start",
     "step 9 does not exist"),
    ("cycle", lambda: with_step(0, parent_ids=[2]), "steps", "cycle"),
    ("self cycle", lambda: with_step(0, required_to_start=[1]), "steps", "cycle: 1 -> 1"),
    ("mode unknown", lambda: with_step(1, mode="fan_out"), "steps[1].mode",
     "unknown mode 'fan_out' (allowed: one_for_one, one_for_many, notification)"),
    ("mode workflow_one_for_one", lambda: with_step(1, mode="workflow_one_for_one"), "steps[1].mode",
     "not supported"),
    ("mode workflow_one_for_many", lambda: with_step(1, mode="workflow_one_for_many"), "steps[1].mode",
     "one_for_one, one_for_many, notification"),
    ("condition", lambda: with_step(1, condition="source_path =~ \"mp4\""), "steps[1].condition",
     "not supported"),
    # multiple_jobs is run (issue 13); still invalid: a value that does not name a workflow parameter.
    ("multiple_jobs not a name", lambda: with_step(1, multiple_jobs=3), "steps[1].multiple_jobs",
     "must be a string"),
    ("parameters not a list", lambda: with_step(1, parameters={"a": 1}), "steps[1].parameters", "list"),
    ("parameter not an object", lambda: with_step(1, parameters=["x"]), "steps[1].parameters[0]", "object"),
    ("parameter without id", lambda: with_parameter(1, {"type": "string", "value": "x"}),
     "steps[1].parameters[0].id", "id is required"),
    ("parameter without type", lambda: with_parameter(1, {"id": "x", "value": "x"}),
     "steps[1].parameters[0].type", "type is required"),
    ("parameter duplicate", lambda: with_step(1, parameters=[{"id": "a", "type": "string", "value": "1"},
                                                             {"id": "a", "type": "string", "value": "2"}]),
     "steps[1].parameters[1].id", "duplicate parameter id 'a'"),
    # Credentials are references (issue 13); still invalid: a value that is not a secret's name, a bad store.
    ("credential not a key", lambda: with_parameter(1, {"id": "key", "type": "credential", "value": "s3 key"}),
     "steps[1].parameters[0].value", "does not match"),
    ("credential store not a name", lambda: with_parameter(1, {"id": "key", "type": "string", "value": "K",
                                                               "store": "backend"}),
     "steps[1].parameters[0].store", "does not match"),
    ("credential store value is a secret", lambda: with_parameter(1, {"id": "key", "type": "string",
                                                                      "value": "my secret", "store": "ENV"}),
     "steps[1].parameters[0].value", "does not match"),
    ("integer value", lambda: with_parameter(1, {"id": "n", "type": "integer", "value": "3"}),
     "steps[1].parameters[0].value", "integer"),
    ("filter value", lambda: with_parameter(1, {"id": "input_filter", "type": "filter", "value": [".mp4"]}),
     "steps[1].parameters[0].value", "ends_with"),
    ("array_of_strings value", lambda: with_parameter(1, {"id": "p", "type": "array_of_strings", "value": [1]}),
     "steps[1].parameters[0].value", "list of strings"),
    ("bad template", lambda: with_parameter(1, {"id": "p", "type": "template", "value": "{source dir}"}),
     "steps[1].parameters[0].value", "malformed placeholder"),
    ("bad template in list", lambda: with_parameter(1, {"id": "p", "type": "array_of_templates",
                                                        "value": ["ok", "{oops"]}),
     "steps[1].parameters[0].value[1]", "malformed placeholder"),
    ("eex in a parameter", lambda: with_parameter(1, {"id": "p", "type": "string", "value": "<%= 1 + 1 %>"}),
     "steps[1].parameters[0].value", "EEx"),
    ("eex in a label", lambda: workflow(label="Run <%= name %>"), "label", "EEx"),
    ("max_retries negative", lambda: with_step(1, max_retries=-1), "steps[1].max_retries", ">= 0"),
    ("max_retries float", lambda: with_step(1, max_retries=1.5), "steps[1].max_retries", "integer"),
    ("retry_delay negative", lambda: with_step(1, retry_delay=-2), "steps[1].retry_delay", ">= 0"),
    ("retry_delay string", lambda: with_step(1, retry_delay="5s"), "steps[1].retry_delay", "number"),
    ("timeout zero", lambda: with_step(1, timeout=0), "steps[1].timeout", "> 0"),
    ("timeout string", lambda: with_step(1, timeout="1h"), "steps[1].timeout", "> 0"),
    ("version negative", lambda: workflow(version_major=-1), "version_major", ">= 0"),
    ("tags not strings", lambda: workflow(tags=[1]), "tags", "list of strings"),
    ("start parameters not a list", lambda: workflow(start_parameters={}), "start_parameters", "list"),
    ("start parameter without id", lambda: with_start({"type": "string"}), "start_parameters[0].id",
     "id is required"),
    ("start parameter id not a name", lambda: with_start({"id": "source-dir"}), "start_parameters[0].id",
     "template variable"),
    ("start parameter type", lambda: with_start({"id": "x", "type": "date"}), "start_parameters[0].type",
     "string, number, choice, file"),
    ("start parameter required", lambda: with_start({"id": "x", "required": "yes"}),
     "start_parameters[0].required", "true or false"),
    ("choice without items", lambda: with_start({"id": "x", "type": "choice"}), "start_parameters[0].items",
     "non-empty list"),
    ("choice default not an item", lambda: with_start({"id": "x", "type": "choice", "items": ["a"],
                                                       "default": "b"}), "start_parameters[0].default", "items"),
    ("number default", lambda: with_start({"id": "x", "type": "number", "default": "3"}),
     "start_parameters[0].default", "number"),
    ("start parameter duplicate", lambda: workflow(start_parameters=[{"id": "x"}, {"id": "x"}]),
     "start_parameters[1].id", "duplicate"),
]


@pytest.mark.parametrize(("data", "field", "words"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_definition_names_file_workflow_and_field(data: Callable[[], Any], field: str, words: str) -> None:
    raw = data()
    with pytest.raises(DefinitionError) as caught:
        parse_definitions([raw], SOURCE)
    message = str(caught.value)
    # The workflow is named by its identifier as written, or by its position when it has none.
    name = raw["identifier"] if isinstance(raw.get("identifier"), str) else "workflows[0]"
    assert message.startswith(f"{SOURCE}: workflow {name!r}: ")
    assert f"field {field!r}" in message
    assert words in message
    assert caught.value.field_path == field
    assert caught.value.source == SOURCE
    assert "\n" not in message


def test_missing_identifier_names_the_workflow_by_position() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions([workflow(identifier="a"), without("identifier")], SOURCE)
    assert caught.value.workflow == "workflows[1]"


def test_cycle_names_its_steps() -> None:
    data = workflow()
    data["steps"].append({"id": 3, "name": "noop", "parent_ids": [2]})
    data["steps"][1]["parent_ids"] = [1, 3]
    with pytest.raises(DefinitionError, match=r"cycle: (2 -> 3 -> 2|3 -> 2 -> 3)"):
        parse_definitions(data, SOURCE)


def test_duplicate_identifier_in_one_source() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions({"workflows": [workflow(), workflow(label="again")]}, SOURCE)
    assert "duplicate workflow identifier" in str(caught.value)
    assert caught.value.workflow == "wf"
    assert caught.value.field_path == "workflows[1].identifier"


@pytest.mark.parametrize("data", [3, "text", None, {"workflows": {"wf": {}}}, ["not a workflow"]])
def test_bad_top_level_shapes(data: Any) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions(data, SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")


def test_three_top_level_shapes_give_the_same_definition() -> None:
    single = parse_definitions(workflow(), SOURCE)
    listed = parse_definitions([workflow()], SOURCE)
    wrapped = parse_definitions({"workflows": [workflow()]}, SOURCE)
    assert single == listed == wrapped
    assert len(single) == 1


def test_defaults_and_normalisation() -> None:
    data = workflow()
    data["steps"][0]["name"] = "job_list_files"
    (definition,) = parse_definitions([data], SOURCE)
    first, second = definition.steps
    assert first.name == "list_files"
    assert first.queue == "job_list_files"
    assert first.label == "list_files"
    assert first.mode == "one_for_one"
    assert (first.max_retries, first.retry_delay, first.timeout) == (0, 0.0, None)
    assert definition.version == "0.0.1"
    assert definition.source == SOURCE
    # Decision — gating: absent required_to_start means "wait for the parents".
    assert second.required_to_start == (1,)
    assert definition.raw["steps"][1]["required_to_start"] == [1]
    assert definition.raw["steps"][0]["name"] == "list_files"
    assert definition.start_parameters[0].label == "Source folder"


def test_explicit_empty_required_to_start_means_start_at_once() -> None:
    (definition,) = parse_definitions([with_step(1, required_to_start=[])], SOURCE)
    assert definition.step(2).parent_ids == (1,)
    assert definition.step(2).required_to_start == ()


def test_round_trip_through_raw() -> None:
    for definition in load_definitions(DATA / "stepflow_style.json") + load_definitions(REPO / "workflows.json"):
        again = definition_from_dict(definition.raw, definition.source)
        assert again == definition
        assert again.raw == definition.raw
        # The snapshot is plain JSON: it survives the store.
        assert definition_from_dict(json.loads(json.dumps(definition.raw)), "store") == \
            WorkflowDefinition(**{**definition.__dict__, "source": "store"})


def test_raw_is_a_copy_of_the_input() -> None:
    data = workflow()
    (definition,) = parse_definitions([data], SOURCE)
    data["steps"][0]["parameters"][0]["value"] = "changed"
    assert definition.steps[0].parameters[0]["value"] == "{source_dir}"
    assert definition.raw["steps"][0]["parameters"][0]["value"] == "{source_dir}"


def test_stepflow_definition_keeps_its_fields_and_warns_only_about_rights(caplog: pytest.LogCaptureFixture) -> None:
    # Issue 13: icon, schema_version, reference and is_live: false are StepFlow's fields, kept without a
    # warning; work_dir and skip_destination_path are run by the engine. Only rights (not enforced) warn.
    caplog.set_level(logging.WARNING, logger="stepflow_tui.definitions")
    (definition,) = load_definitions(DATA / "stepflow_style.json")
    warned = caplog.text
    assert "'rights'" in warned and "transcode_like" in warned
    for field in ("'icon'", "'reference'", "'is_live'", "'schema_version'", "'steps[0].icon'",
                  "'steps[1].work_dir'", "'steps[1].skip_destination_path'"):
        assert field not in warned, field
    assert (definition.icon, definition.schema_version, definition.reference) == ("movie", "1.8", "abc")
    assert definition.steps[0].icon == "file_download" and definition.steps[1].work_dir == "/tmp"
    assert [step.name for step in definition.steps] == ["transfer", "ffmpeg", "transfer"]
    assert definition.steps[2].mode == ONE_FOR_MANY
    assert (definition.steps[2].max_retries, definition.steps[2].retry_delay, definition.steps[2].timeout) == \
        (2, 1.5, 600.0)
    assert definition.raw["icon"] == "movie" and definition.raw["steps"][0]["icon"] == "file_download"
    assert "rights" not in definition.raw


def test_live_workflows_are_still_refused() -> None:
    with pytest.raises(DefinitionError, match="is_live"):
        parse_definitions([workflow(is_live=True)], SOURCE)


@pytest.mark.parametrize("case", ["multiple_jobs", "credential", "credential store", "notification"])
def test_constructs_issue_13_lifted_are_accepted(case: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stepflow_tui.definitions")
    data = {
        "multiple_jobs": lambda: with_step(1, multiple_jobs="segments"),
        "credential": lambda: with_parameter(1, {"id": "key", "type": "credential", "value": "S3_KEY"}),
        "credential store": lambda: with_parameter(1, {"id": "key", "type": "string", "value": "S3_KEY",
                                                       "store": "BACKEND"}),
        "notification": lambda: with_step(1, mode="notification"),
    }[case]()
    (definition,) = parse_definitions([data], SOURCE)
    step = definition.steps[1]
    assert caplog.text == ""
    if case == "multiple_jobs":
        assert step.multiple_jobs == "segments"
    elif case == "notification":
        assert step.mode == "notification"
    else:
        assert step.parameters[0]["value"] == "S3_KEY"
        assert step.parameters[0].get("store") == ("BACKEND" if case == "credential store" else None)


def test_unknown_keys_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stepflow_tui.definitions")
    parse_definitions([with_step(1, colour="blue")], SOURCE)
    assert "field 'steps[1].colour': unknown field, ignored" in caplog.text
    assert "workflow 'wf'" in caplog.text


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(DefinitionError) as caught:
        load_definitions(path)
    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_load_bad_json_gives_line_and_column() -> None:
    path = DATA / "bad_json.json"
    with pytest.raises(DefinitionError) as caught:
        load_definitions(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "line 3, column 40" in message


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('[{"label": "caf\u00e9"}]'.encode("latin-1"))
    with pytest.raises(DefinitionError, match="not UTF-8"):
        load_definitions(path)


def test_repo_workflows_json_loads() -> None:
    definitions = {definition.identifier: definition for definition in load_definitions(REPO / "workflows.json")}
    assert {"checksum_folder", "fanout_demo", "failing_demo"} <= set(definitions)

    checksum = definitions["checksum_folder"]
    assert checksum.label == "Checksum a folder"
    assert [(p.id, p.type, p.required, p.label) for p in checksum.start_parameters] == [
        ("source_dir", "file", True, "Source folder"), ("manifest", "file", True, "Manifest file")]
    assert [(s.id, s.name, s.mode, s.parent_ids) for s in checksum.steps] == [
        (1, "list_files", "one_for_one", ()), (2, "checksum", "one_for_one", (1,)),
        (3, "write_manifest", "one_for_many", (2,))]
    assert {p["id"]: p["value"] for p in checksum.step(1).parameters} == {"folder": "{source_dir}"}
    assert {p["id"]: p["value"] for p in checksum.step(2).parameters} == {"root": "{source_dir}"}
    assert {p["id"]: p["value"] for p in checksum.step(3).parameters} == {
        "manifest": "{manifest}", "root": "{source_dir}"}

    fanout = definitions["fanout_demo"]
    paths = fanout.step(1).parameters[0]
    assert paths["id"] == "source_paths" and len(paths["value"]) == 200 and len(set(paths["value"])) == 200
    assert [(s.name, s.mode) for s in fanout.steps] == [
        ("noop", "one_for_one"), ("sleep", "one_for_one"), ("noop", "one_for_many")]
    assert resolve_start_parameters(fanout, {}) == {}

    failing = definitions["failing_demo"]
    assert [s.name for s in failing.steps] == ["noop", "fail", "noop"]
    assert resolve_start_parameters(failing, {}) == {"marker": "/tmp/stepflow-fix-me"}
    assert {p["id"]: p["value"] for p in failing.step(2).parameters}["unless_exists"] == "{marker}"


# --- start parameters ------------------------------------------------------------------------------------------

def start_definition() -> WorkflowDefinition:
    (definition,) = parse_definitions([workflow(identifier="x", start_parameters=[
        {"id": "source_dir", "label": "Source folder", "type": "file", "required": True},
        {"id": "count", "type": "number", "default": 2},
        {"id": "quality", "type": "choice", "items": ["low", "high", 3], "default": "low"},
        {"id": "note", "type": "string"},
    ])], SOURCE)
    return definition


def test_resolve_applies_defaults_and_types() -> None:
    definition = start_definition()
    assert resolve_start_parameters(definition, {"source_dir": "/data"}) == {
        "source_dir": "/data", "count": 2, "quality": "low", "note": None}
    resolved = resolve_start_parameters(definition, {"source_dir": "/d", "count": "2.5", "quality": "3",
                                                     "note": "hi"})
    assert resolved == {"source_dir": "/d", "count": 2.5, "quality": 3, "note": "hi"}
    assert isinstance(resolve_start_parameters(definition, {"source_dir": "/d", "count": " 7 "})["count"], int)


def test_resolve_missing_required() -> None:
    with pytest.raises(StartParameterError) as caught:
        resolve_start_parameters(start_definition(), {"count": "1"})
    assert str(caught.value) == "workflow 'x': missing required start parameter 'source_dir' (Source folder)"
    with pytest.raises(StartParameterError, match="missing required"):
        resolve_start_parameters(start_definition(), {"source_dir": "  "})


def test_resolve_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(StartParameterError) as caught:
        resolve_start_parameters(start_definition(), {"source_dir": "/d", "colour": "red"})
    assert str(caught.value) == ("workflow 'x': unknown start parameter 'colour' "
                                 "(known: source_dir, count, quality, note)")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("count", "many", "must be a number"), ("count", "nan", "must be a number"),
    ("quality", "medium", "must be one of low, high, 3"),
])
def test_resolve_bad_values(key: str, value: str, words: str) -> None:
    with pytest.raises(StartParameterError) as caught:
        resolve_start_parameters(start_definition(), {"source_dir": "/d", key: value})
    assert words in str(caught.value)
    assert f"'{key}'" in str(caught.value)


# --- merging ---------------------------------------------------------------------------------------------------

def test_merge_later_sources_override(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stepflow_tui.definitions")
    plugin = parse_definitions([workflow(label="From plugin"), workflow(identifier="other")], "plugin:files")
    user = parse_definitions([workflow(label="From user")], "workflows.json")
    merged = merge_definitions([plugin, user])
    assert list(merged) == ["wf", "other"]
    assert merged["wf"].label == "From user"
    assert merged["other"].source == "plugin:files"
    assert "'wf' from workflows.json overrides the one from plugin:files" in caplog.text


def test_merge_does_not_mutate_inputs() -> None:
    first = parse_definitions([workflow()], "a")
    before = copy.deepcopy(first)
    merge_definitions([first, parse_definitions([workflow(label="b")], "b")])
    assert first == before


def test_core_modules_stay_pure() -> None:
    """core/ is pure logic: importing it must not pull in the broker, the UI or the store libraries."""
    code = ("import sys; import stepflow_tui.core.definitions, stepflow_tui.core.templates, "
            "stepflow_tui.core.protocol; "
            "print(sorted(m for m in ('pika', 'textual', 'tinydb') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("given", "shown"), [
    ({"version_major": 1}, "1"),
    ({"version_major": 1, "version_minor": 2}, "1.2"),
    ({"version_major": 1, "version_minor": 2, "version_micro": 3}, "1.2.3"),
    ({"version_minor": 4}, "0.4"),
    ({}, "0.0.1"),
])
def test_version_is_shown_as_the_definition_states_it(given: dict[str, int], shown: str) -> None:
    raw = {"identifier": "v", "label": "V", "steps": [{"id": 1, "name": "a", "label": "A"}], **given}
    (definition,) = parse_definitions(raw, "v.json")
    assert definition.version == shown
    assert definition_from_dict(definition.raw, "v.json").version == shown  # the snapshot keeps it


def test_a_hook_with_credentials_warns_that_they_are_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stepflow_tui.definitions")
    hooks = [{"label": "ops", "endpoint": "http://ops/", "conditions": {"job_error": True}, "credentials": "OPS"}]
    (definition,) = parse_definitions([workflow(notification_hooks=hooks)], SOURCE)
    assert definition.notification_hooks[0]["endpoint"] == "http://ops/"
    assert "field 'notification_hooks[0].credentials': not sent by stepflow-tui" in caplog.text
