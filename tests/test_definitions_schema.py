"""StepFlow's whole definition format: the JSON Schema, the semantic checks, and fuzzed files."""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepflow_tui.core.definitions import (
    DefinitionError,
    definition_from_dict,
    load_definitions,
    parse_definitions,
    resolve_start_parameters,
)
from stepflow_tui.core.definitions.schema import workflow_schema

DATA = Path(__file__).parent / "data"
FULL = DATA / "stepflow_full.json"
SOURCE = "defs.json"


def full() -> dict[str, Any]:
    """The workflow of stepflow_full.json that uses every construct."""
    return copy.deepcopy(json.loads(FULL.read_text())["workflows"][0])


def test_every_construct_loads() -> None:
    definitions = {d.identifier: d for d in load_definitions(FULL)}
    segment = definitions["segment_encode"]
    assert (segment.schema_version, segment.icon, segment.reference) == ("1.13", "movie_filter",
                                                                          "8f1c-segment-encode")
    assert [p["id"] for p in segment.parameters] == ["film", "segments", "segment_length"]
    assert segment.notification_hooks[0]["endpoint"] == "http://127.0.0.1:9/hook"
    encode = segment.step(30)
    assert encode.multiple_jobs == "segments"
    assert encode.skip_destination_path and encode.icon == "music_video"
    assert segment.step(40).allow_failure and segment.step(40).condition.startswith("profile ==")
    assert segment.step(10).work_dir == "/scratch/fetch"
    stored = {p["id"]: p for p in segment.step(10).parameters}
    assert stored["secret_key"]["store"] == "BACKEND"
    assert stored["access_key"]["type"] == "credential"
    profile = segment.start_parameters[1]
    assert profile.items == ("sd", "hd") and profile.item_labels == ("Standard", "High definition")
    assert resolve_start_parameters(segment, {"film": "/f.mov", "profile": "sd"})["profile"] == "sd"
    assert definitions["plain_ours"].start_parameters[0].items == ("low", 3)


def test_required_stepflow_fields_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="stepflow_tui.definitions")
    load_definitions(FULL)
    for quiet in ("'schema_version'", "'icon'", "'parameters'", "'reference'", "'notification_hooks'",
                  "'steps[0].icon'", "'steps[1].parameters[2]'", "'start_parameters[0].accept'"):
        assert quiet not in caplog.text, quiet


def test_round_trip_keeps_every_construct() -> None:
    for definition in load_definitions(FULL):
        again = definition_from_dict(json.loads(json.dumps(definition.raw)), definition.source)
        assert again == definition
        assert again.raw == definition.raw


def test_schema_is_a_valid_draft7_schema() -> None:
    import jsonschema

    jsonschema.Draft7Validator.check_schema(workflow_schema())


def at(path: str, value: Any) -> Callable[[], dict[str, Any]]:
    """The full workflow with the field at ``path`` (``steps[2].condition``) set to ``value``."""
    def build() -> dict[str, Any]:
        data = full()
        parts = path.replace("]", "").replace("[", ".").split(".")
        owner: Any = data
        for part in parts[:-1]:
            owner = owner[int(part)] if part.isdigit() else owner[part]
        last = parts[-1]
        owner[int(last) if last.isdigit() else last] = value
        return data
    return build


BAD: list[tuple[str, Callable[[], Any], str, str]] = [
    ("schema_version unknown", at("schema_version", "2.0"), "schema_version", "is not one of"),
    ("schema_version number", at("schema_version", 1.13), "schema_version", "must be a string"),
    ("icon not a name", at("icon", "Movie Filter"), "icon", "does not match"),
    ("step icon", at("steps[0].icon", 3), "steps[0].icon", "must be a string"),
    ("is_live", at("is_live", True), "is_live", "live workflows are not supported"),
    ("is_live not a bool", at("is_live", "no"), "is_live", "is not of type 'boolean'"),
    ("reference", at("reference", 12), "reference", "must be a string"),
    ("rights shape", at("rights[0]", {"groups": []}), "rights[0].action", "action is required"),
    ("rights action", at("rights[0].action", "steal"), "rights[0].action", "is not one of"),
    ("hook without endpoint", at("notification_hooks[0]", {"label": "x", "conditions": {}}),
     "notification_hooks[0].endpoint", "endpoint is required"),
    ("hook conditions", at("notification_hooks[0].conditions", []), "notification_hooks[0].conditions",
     "is not of type 'object'"),
    ("workflow parameter without type", at("parameters[0]", {"id": "film"}), "parameters[0].type",
     "type is required"),
    ("workflow parameter duplicate", at("parameters[1].id", "film"), "parameters[1].id", "duplicate"),
    ("segments shape", at("parameters[1].value", [{"start": 0}]), "parameters[1].value[0].end",
     "end is required"),
    ("segments not a list", at("steps[4].parameters[0].default", {"start": 0, "end": 1}),
     "steps[4].parameters[0].default", "is not of type 'array'"),
    ("credential not a key", at("steps[0].parameters[1].value", "my secret"), "steps[0].parameters[1].value",
     "does not match"),
    ("store lower case", at("steps[0].parameters[2].store", "backend"), "steps[0].parameters[2].store",
     "does not match"),
    ("store value not a key", at("steps[0].parameters[2].value", "s3 secret"), "steps[0].parameters[2].value",
     "does not match"),
    ("requirements shape", at("steps[1].parameters[2].value", {"paths": "/x"}), "steps[1].parameters[2].value.paths",
     "is not of type 'array'"),
    ("select_input shape", at("steps[3].parameters[1].value", {"ends_with": ".mkv"}),
     "steps[3].parameters[1].value.ends_with", "is not of type 'array'"),
    ("extended scalar", at("steps[2].parameters[4].value", "h264"), "steps[2].parameters[4].value",
     "is not of type"),
    ("choice item without id", at("start_parameters[1].items[0]", {"label": "Standard"}),
     "start_parameters[1].items[0].id", "string"),
    ("choice default not an id", at("start_parameters[1].default", "High definition"),
     "start_parameters[1].default", "is not one of the items"),
    ("start parameter accept", at("start_parameters[0].accept", [".mov"]), "start_parameters[0].accept",
     "is not of type 'string'"),
    ("condition attribute", at("steps[3].condition", "film.size > 1"), "steps[3].condition",
     "attribute access"),
    ("condition call", at("steps[3].condition", 'File.exists?("/x")'), "steps[3].condition", "not supported"),
    ("condition regex", at("steps[3].condition", 'film =~ "mov"'), "steps[3].condition", "regex match"),
    ("condition not a string", at("steps[3].condition", True), "steps[3].condition", "must be a string"),
    ("expression in template", at("steps[2].parameters[0].value", "<%= sdk_start_index ** 2 %>"),
     "steps[2].parameters[0].value", "** is not allowed"),
    ("expression in template list", at("steps[2].parameters[3].value", ["<%= open(film) %>"]),
     "steps[2].parameters[3].value[0]", "function 'open'"),
    ("EEx statement", at("steps[2].parameters[0].value", "<% for x <- paths do %>"),
     "steps[2].parameters[0].value", "EEx statement"),
    ("EEx in a string parameter", at("steps[1].parameters[1].value", "<%= 1 %>"),
     "steps[1].parameters[1].value", "only evaluated in template parameters"),
    ("EEx in the label", at("label", "Encode <%= film %>"), "label", "only evaluated"),
    ("segment variable without multiple_jobs", at("steps[2].multiple_jobs", ""), "steps[2]",
     "only set for a step with multiple_jobs"),
    ("multiple_jobs not a string", at("steps[2].multiple_jobs", ["segments"]), "steps[2].multiple_jobs",
     "must be a string"),
    ("allow_failure not a bool", at("steps[3].allow_failure", "yes"), "steps[3].allow_failure",
     "true or false"),
    ("skip_destination_path not a bool", at("steps[2].skip_destination_path", 1),
     "steps[2].skip_destination_path", "true or false"),
    ("work_dir not a string", at("steps[0].work_dir", ["/tmp"]), "steps[0].work_dir", "must be a string"),
    ("mode sub-workflow", at("steps[1].mode", "workflow_one_for_many"), "steps[1].mode", "not supported"),
    # notification steps run (issue 13); a misspelt mode is still refused.
    ("mode notifications", at("steps[1].mode", "notifications"), "steps[1].mode", "unknown mode"),
    ("parent unknown", at("steps[1].parent_ids", [11]), "steps[1].parent_ids", "step 11 does not exist"),
    ("required unknown", at("steps[4].required_to_start", [99]), "steps[4].required_to_start",
     "step 99 does not exist"),
    ("cycle", at("steps[0].parent_ids", [50]), "steps", "cycle"),
    ("duplicate step id", at("steps[4].id", 10), "steps[4].id", "duplicate step id 10"),
    ("version not an integer", at("version_minor", "2"), "version_minor", ">= 0"),
]


@pytest.mark.parametrize(("data", "field", "words"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_construct_names_file_workflow_and_field(data: Callable[[], Any], field: str, words: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definitions([data()], SOURCE)
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: workflow 'segment_encode': field {field!r}: "), message
    assert caught.value.field_path == field
    assert words in message, message
    assert "\n" not in message


# --- fuzzed files -----------------------------------------------------------------------------------------------

_JUNK: list[Any] = [None, True, 0, -1, 2.5, 10**30, "", "x", "<%= x.y %>", "<%= 1 %>", "{oops", "job_",
                    [], [1], ["a"], {}, {"id": 1}, {"ends_with": 1}, [{"start": "0"}], "A" * 300]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(rng: random.Random, data: dict[str, Any]) -> Any:
    """Change one to three places of ``data``: replace with junk, delete, or duplicate a list item."""
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(data)[1:])
        owner: Any = data
        for part in path[:-1]:
            owner = owner[part]
        action = rng.random()
        if action < 0.6:
            owner[path[-1]] = copy.deepcopy(rng.choice(_JUNK))
        elif action < 0.85:
            del owner[path[-1]]
        elif isinstance(owner, list):
            owner.append(copy.deepcopy(owner[path[-1]]))
        else:
            owner[f"extra_{rng.randint(0, 9)}"] = rng.choice(_JUNK)
    return data


def fuzzed_definitions(count: int, seed: int) -> list[Any]:
    rng = random.Random(seed)
    return [_mutate(rng, full()) for _ in range(count)]


def test_fuzzed_definitions_give_one_clean_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    refused = 0
    for data in fuzzed_definitions(400, seed=13):
        try:
            parse_definitions({"workflows": [data]}, SOURCE)
        except DefinitionError as error:
            refused += 1
            message = str(error)
            assert message.startswith(f"{SOURCE}: "), message
            assert "\n" not in message and len(message) < 1000, message
            if error.workflow is not None:
                assert f"workflow {error.workflow!r}" in message
    assert refused > 100  # most mutations break something


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stepflow_tui", "validate", str(path)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_cli_validate_exits_2_with_one_line(tmp_path: Path) -> None:
    samples = [at("steps[3].condition", "film.__class__")(), at("steps[0].parent_ids", [50])(),
               at("schema_version", "0.1")()]
    rng = random.Random(7)
    while len(samples) < 8:
        data = _mutate(rng, full())
        try:
            parse_definitions([data], SOURCE)
        except DefinitionError:
            samples.append(data)
    for index, data in enumerate(samples):
        path = tmp_path / f"bad{index}.json"
        path.write_text(json.dumps({"workflows": [data]}))
        result = _validate(path)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("stepflow: ")]
        assert len(errors) == 1 and str(path) in errors[0], result.stderr
    good = _validate(FULL)
    assert good.returncode == 0 and "2 valid workflow definition(s)" in good.stdout


def test_null_counts_as_absent() -> None:
    data = full()
    data["steps"][2]["timeout"] = None
    data["icon"] = None
    (definition,) = parse_definitions([data], SOURCE)
    assert definition.step(30).timeout is None and definition.icon is None


_EXAMPLES = os.environ.get("STEPFLOW_WORKFLOW_EXAMPLES")


@pytest.mark.skipif(not _EXAMPLES, reason="set STEPFLOW_WORKFLOW_EXAMPLES to a checkout of "
                                          "media-cloud-ai/workflow-examples (not shipped here)")
def test_public_examples_load() -> None:
    files = sorted(Path(_EXAMPLES or ".").glob("*.json"))
    assert files
    for path in files:
        assert load_definitions(path), path
