"""Templates: substitution only, literal braces, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from stepflow_tui.core.templates import (
    TemplateError,
    find_variables,
    render,
    render_value,
    template_variables,
)


@pytest.mark.parametrize(("template", "expected"), [
    ("{a}", "1"),
    ("x/{a}/{b}.txt", "x/1/two.txt"),
    ("{a}{a}", "11"),
    ("no placeholders", "no placeholders"),
    ("", ""),
    ("{{a}}", "{a}"),
    ("{{{a}}}", "{1}"),
    ("}}", "}"),
    ("{paths}", '["/a","/b c"]'),
    ("{none}", ""),
    ("{flag}", "true"),
    ("{ratio}", "0.5"),
    ("{_private9}", "p"),
    ("{unicode}", "été"),
])
def test_render(template: str, expected: str) -> None:
    variables = {"a": 1, "b": "two", "paths": ["/a", "/b c"], "none": None, "flag": True, "ratio": 0.5,
                 "_private9": "p", "unicode": "été"}
    assert render(template, variables) == expected


def test_unknown_variable() -> None:
    with pytest.raises(TemplateError) as caught:
        render("/out/{nmae}.txt", {"name": "a"})
    assert str(caught.value).startswith("unknown template variable 'nmae' in '/out/{nmae}.txt'")
    assert "name" in str(caught.value)


@pytest.mark.parametrize("template", ["{", "}", "{a", "{a b}", "{1a}", "{a.__class__}", "{a[0]}", "{}",
                                      "{a!r}", "{a:>10}"])
def test_malformed(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, {"a": "x"})


def test_never_evaluates() -> None:
    class Spy:
        def __format__(self, spec: str) -> str:
            raise AssertionError("format was called")

        def __str__(self) -> str:
            return "spy"

    # Attribute access and indexing are not syntax here, and the value is only turned into text.
    assert render("{obj}", {"obj": Spy()}) == "spy"
    with pytest.raises(TemplateError):
        render("{obj.__class__}", {"obj": Spy()})
    assert render("{code}", {"code": "__import__('os').system('false')"}) == "__import__('os').system('false')"


def test_find_variables() -> None:
    assert find_variables("{b}/{a}/{b}{{c}}") == ["b", "a"]
    assert find_variables("plain") == []
    with pytest.raises(TemplateError):
        find_variables("{bad")


def test_render_value() -> None:
    variables = {"x": "1"}
    assert render_value("{x}", variables) == "1"
    assert render_value(["{x}", ["a{x}"]], variables) == ["1", ["a1"]]
    assert render_value(("{x}",), variables) == ["1"]
    for unchanged in (3, 2.5, True, None, {"ends_with": ["{x}"]}):
        assert render_value(unchanged, variables) == unchanged
    with pytest.raises(TemplateError):
        render_value(["ok", "{y}"], variables)


@pytest.mark.parametrize(("path", "filename", "extension", "name"), [
    ("/data/movie.mp4", "movie.mp4", ".mp4", "movie"),
    ("/data/archive.tar.gz", "archive.tar.gz", ".gz", "archive.tar"),
    ("relative/README", "README", "", "README"),
    ("/data/.hidden", ".hidden", "", ".hidden"),
    ("/data/folder/", "folder", "", "folder"),
    ("", "", "", ""),
])
def test_path_variables(path: str, filename: str, extension: str, name: str) -> None:
    variables = template_variables(path)
    assert (variables["source_path"], variables["filename"], variables["extension"], variables["name"]) == \
        (path, filename, extension, name)


def test_template_variables_precedence() -> None:
    variables: dict[str, Any] = template_variables(
        "/in/a.txt", source_paths=["/in/a.txt"], workflow_id=4, workflow_identifier="wf", step_id=2,
        step_name="checksum", job_id=9, start_parameters={"source_dir": "/in", "name": "start"},
        variables={"sha256": "abc", "source_dir": "/override"})
    assert variables == {
        "source_dir": "/override", "sha256": "abc", "name": "a", "workflow_id": 4, "workflow_identifier": "wf",
        "step_id": 2, "step_name": "checksum", "job_id": 9, "source_paths": ["/in/a.txt"],
        "source_path": "/in/a.txt", "filename": "a.txt", "extension": ".txt",
    }
    assert render("{source_dir}/{name}{extension}.sha256 #{job_id}", variables) == "/override/a.txt.sha256 #9"


def test_template_variables_without_input_keep_start_parameters() -> None:
    variables = template_variables(None, start_parameters={"source_path": "/given"}, workflow_id=1)
    assert variables == {"source_path": "/given", "workflow_id": 1}
    assert "filename" not in variables
