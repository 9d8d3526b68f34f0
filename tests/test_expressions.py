"""The safe expression evaluator (core/expressions.py) and ``<%= … %>`` rendering in templates."""

from __future__ import annotations

import ast
import random
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepflow_tui.core.expressions import (
    FUNCTIONS,
    MAX_SIZE,
    ExpressionError,
    compile_expression,
    evaluate,
    evaluate_condition,
)
from stepflow_tui.core.templates import (
    TemplateError,
    check_template_with_expressions,
    render_with_expressions,
    split_expressions,
)

VARIABLES: dict[str, Any] = {
    "sdk_start_index": 2000, "sdk_stop_index": 3999, "film": "/in/film.mov", "profile": "hd", "gain": 1.5,
    "paths": ["/a.mkv", "/b.mkv"], "segment": {"start": 0, "end": 999}, "flag": True, "nothing": None,
    "x": "x" * 40_000,
}

GOOD = [
    ("sdk_start_index / 1000.0", 2.0),
    ("(sdk_stop_index + 1) / 1000.0", 4.0),
    ("1 + 2 * 3 - 4", 3),
    ("-gain", -1.5),
    ("div(-7, 2)", -3),
    ("rem(-7, 2)", -1),
    ("div(7, 2) == 3 and rem(7, 2) == 1", True),
    ('profile == "hd" && gain > 1', True),
    ('profile != "hd" || !flag', False),
    ("not flag or nothing == nil", True),
    ("true and false", False),
    ("1 < 2 <= 2 < 3", True),
    ('"hd" in ["sd", "hd"]', True),
    ('"x" not in film', True),
    ('film <> ".txt"', "/in/film.mov.txt"),
    ("paths ++ [\"/c\"]", ["/a.mkv", "/b.mkv", "/c"]),
    ("length(paths)", 2),
    ("String.length(film)", 12),
    ("Enum.count(paths)", 2),
    ('String.contains?(film, "film")', True),
    ('String.starts_with?(film, "/in")', True),
    ('String.ends_with?(film, ".mov")', True),
    ("String.upcase(profile)", "HD"),
    ('String.downcase("AB")', "ab"),
    ('String.trim("  a ")', "a"),
    ("Enum.member?(paths, \"/a.mkv\")", True),
    ("Enum.at(paths, 1)", "/b.mkv"),
    ("Enum.at(paths, 5)", None),
    ('Enum.join(paths, ",")', "/a.mkv,/b.mkv"),
    ("paths[0]", "/a.mkv"),
    ('segment["end"] - segment["start"]', 999),
    ("to_string(flag)", "true"),
    ("abs(-3) + round(2.6) + trunc(-2.5)", 4),
    ("min(3, 1, 2) + max([4, 5])", 6),
    ('"a" * 3', "aaa"),
    ('"a && b"', "a && b"),  # operators inside strings are left alone
]


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=[case[0] for case in GOOD])
def test_supported_expressions(text: str, expected: Any) -> None:
    assert evaluate(text, VARIABLES) == expected


REFUSED = [
    ("film.__class__", "attribute access"),
    ("().__class__.__bases__[0].__subclasses__()", "not supported"),
    ('__import__("os")', "function '__import__'"),
    ('open("/etc/passwd")', "function 'open'"),
    ("eval(\"1\")", "function 'eval'"),
    ("System.cmd(\"ls\", [])", "function 'System.cmd'"),
    ("File.read!(\"/etc/passwd\")", "not supported"),
    ("2 ** 10", "**"),
    ("7 // 2", "//"),
    ("7 % 2", "%"),
    ("paths[0:1]", "slices"),
    ("lambda: 1", "fn"),
    ("1 if flag else 2", "if"),
    ("{1: 2}", "maps"),
    ("(1, 2)", "tuples"),
    ("[x for x in paths]", "ListComp"),
    ("_private", "name '_private'"),
    ("length(x=paths)", "function 'length'"),
    ('source_path =~ "mp4"', "regex match '=~'"),
    ("film |> String.length()", "the pipe '|>'"),
    ('%{"a" => 1}', "maps"),
    ("Enum.map(paths, fn p -> p end)", "anonymous functions"),
    ('"#{film}"', "string interpolation"),
    ("1 === 1", "strict equality"),
    ("1 +", "not a valid expression"),
    ("f\"{film}\"", "JoinedStr"),
    ("a := 1", "not a valid expression"),
    ("", "empty"),
    ("1 + " * 400 + "1", "longer than"),
    ("+".join(["1"] * 300), "too long"),
]


@pytest.mark.parametrize(("text", "words"), REFUSED, ids=[case[0][:40] for case in REFUSED])
def test_refused_expressions_name_the_construct(text: str, words: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("text", "words"), [
    ('"a" * 1000000', "repetition"),
    ("[1] * 200000", "repetition"),
    ("paths * 100000", "repetition"),
    ('[upcase("a" * 60000)] * 2', "repetition"),
    ('join([x, x, x], "")', "longer than"),
    ('[x] ++ [x] ++ [x]', "longer than"),
    ("1.0e308 * 10", "out of range"),
    ("99999999999999999999999999999999999999 * 99999999999999999999999999999999999999 * "
     "99999999999999999999999999999999999999", "too large"),
    ("1 / 0", "division by zero"),
    ("div(1, 0)", "cannot evaluate"),
    ("film + 1", "cannot evaluate"),
    ("paths[9]", "cannot evaluate"),
    ('segment["middle"]', "cannot evaluate"),
    ("unknown + 1", "unknown variable 'unknown'"),
    ("length(gain)", "cannot evaluate"),
    ("-film", "cannot evaluate"),
])
def test_evaluation_errors_are_expression_errors(text: str, words: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, VARIABLES)
    assert words in str(caught.value)


def test_names_lists_the_variables_read() -> None:
    assert compile_expression("length(paths) > sdk_start_index + length(paths)").names == \
        ("paths", "sdk_start_index")


def test_condition_must_give_a_boolean() -> None:
    assert evaluate_condition('profile == "hd"', VARIABLES) is True
    with pytest.raises(ExpressionError, match="not true or false"):
        evaluate_condition("gain", VARIABLES)


# --- templates --------------------------------------------------------------------------------------------------

def test_render_with_expressions_as_stepflow() -> None:
    template = "/out/{profile}/part-<%= sdk_start_index %>-<%= (sdk_stop_index + 1) / 1000.0 %>.wav"
    assert render_with_expressions(template, VARIABLES) == "/out/hd/part-2000-4.0.wav"
    assert render_with_expressions("<%= paths %>", VARIABLES) == '["/a.mkv","/b.mkv"]'
    assert render_with_expressions("plain {film}", VARIABLES) == "plain /in/film.mov"
    assert render_with_expressions("", VARIABLES) == ""
    # Braces inside an expression are the expression's own, not placeholders.
    assert render_with_expressions('<%= "{x}" %>', VARIABLES) == "{x}"


def test_split_and_check() -> None:
    assert split_expressions("a<%= 1 %>b") == [("text", "a"), ("expression", " 1 "), ("text", "b")]
    assert check_template_with_expressions("{film}<%= gain + sdk_start_index %>") == ["gain", "sdk_start_index"]
    for bad, words in [("<% if true do %>x<% end %>", "EEx statement"), ("a <%= 1", "unclosed"),
                       ("<%= x.y %>", "attribute access"), ("{oops <%= 1 %>", "malformed placeholder")]:
        with pytest.raises(TemplateError, match=words):
            check_template_with_expressions(bad)
    with pytest.raises(TemplateError, match="unknown variable"):
        render_with_expressions("<%= missing %>", VARIABLES)


# --- fuzz: nothing escapes --------------------------------------------------------------------------------------

_TOKENS = ["sdk_start_index", "film", "paths", "segment", "flag", "nothing", "gain", "x", "__class__",
           "__import__", "open", "eval", "exec", "getattr", "type", "os", "sys", *FUNCTIONS, "String.length",
           "Enum.at", "System.cmd", "1", "0", "-1", "10", "9" * 30, "1e308", "0.5", '"a"', '"{x}"', "'b'", "nil",
           "true", "false", "+", "-", "*", "/", "**", "//", "%", "<>", "++", "&&", "||", "!", "and", "or",
           "not", "in", "==", "!=", "<", ">", "<=", ">=", "=~", "(", ")", "[", "]", "{", "}", ",", ".", ":",
           "lambda", "if", "else", "for", "import", "@", "&", "|", "^", "~", "<<", ">>", "=", ";", "\\", "#",
           "fn", "->", "end", "do"]
#: Most time one evaluation may take (generous: the machine is shared).
_TIME_LIMIT = 0.5


def _check_safe(text: str) -> None:
    """Compile and evaluate: only ExpressionError may come out, quickly, and nothing outside the subset runs."""
    started = time.perf_counter()
    try:
        expression = compile_expression(text)
    except ExpressionError:
        return
    for node in ast.walk(expression.tree):
        assert not isinstance(node, ast.Attribute | ast.Lambda | ast.NamedExpr | ast.Starred), text
        assert not (isinstance(node, ast.Name) and node.id.startswith("__")), text
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS, text
    try:
        value = expression.evaluate(VARIABLES)
    except ExpressionError:
        value = None
    assert time.perf_counter() - started < _TIME_LIMIT, text
    if isinstance(value, str | list):
        assert len(value) <= MAX_SIZE


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=25).map(" ".join))
def test_fuzz_token_soup_never_escapes(text: str) -> None:
    _check_safe(text)


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(max_size=60))
def test_fuzz_any_text_never_escapes(text: str) -> None:
    _check_safe(text)


def _random_python(rng: random.Random, depth: int) -> str:
    """A random Python expression over every kind of node the grammar has (most of them refused)."""
    if depth <= 0 or rng.random() < 0.2:
        return rng.choice(["1", "2.5", '"s"', "film", "paths", "segment", "flag", "None", "True", "x", "()",
                           "9" * 40, "1e300"])
    a, b = _random_python(rng, depth - 1), _random_python(rng, depth - 1)
    return rng.choice([
        f"({a} + {b})", f"({a} * {b})", f"({a} - {b})", f"({a} / {b})", f"({a} ** {b})", f"({a} % {b})",
        f"({a} and {b})", f"(not {a})", f"({a} < {b})", f"({a} in {b})", f"[{a}, {b}]", f"{a}[{b}]",
        f"{a}.{rng.choice(['__class__', 'upper', 'real', '__globals__'])}", f"length({a})",
        f"{rng.choice(list(FUNCTIONS))}({a}, {b})", f"{rng.choice(['getattr', 'type', 'vars'])}({a})",
        f"({a} if {b} else {a})", f"(lambda: {a})", f"[{a} for q in {b}]", f"{{{a}: {b}}}", f"{a}[1:2]",
        f"({a} := 1)", f"(-{a})", f"({a} == {b} != {a})", f"({a} * {b} * {b} * {b})",
    ])


def test_fuzz_random_syntax_trees_never_escape() -> None:
    rng = random.Random(1313)
    for _ in range(3000):
        _check_safe(_random_python(rng, rng.randint(1, 6)))
