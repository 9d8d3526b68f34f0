"""A safe evaluator for StepFlow's expressions: ``<%= … %>`` in templates and step ``condition``s.

StepFlow evaluates them as Elixir (EEx). We never evaluate code: the Elixir-ish text is translated to Python
syntax (``&&`` → ``and``, ``<>`` → ``+``, ``String.contains?`` → ``contains``, ``nil`` → ``None`` …), parsed
with `ast` and walked by a whitelist — literals, variables, arithmetic, comparisons, boolean logic, indexing
and a small allow-list of functions. No attribute access, no imports, no ``**``, and every intermediate value
is bounded in size, so ``"a" * 10**9`` or a huge integer is an `ExpressionError`, never a hang.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Longest expression text accepted, and most AST nodes in one expression.
MAX_EXPRESSION_LENGTH = 1000
MAX_NODES = 200
#: Largest string or list an evaluation may build, and the largest integer magnitude.
MAX_SIZE = 100_000
MAX_INT = 2**256


class ExpressionError(ValueError):
    """An expression is outside the supported subset, or failed to evaluate (one-line message)."""


# --- translation from the Elixir spelling ----------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
#: Elixir module functions the examples and StepFlow's helpers use, and our names for them.
_QUALIFIED = {
    "String.length": "length", "String.upcase": "upcase", "String.downcase": "downcase", "String.trim": "trim",
    "String.contains?": "contains", "String.starts_with?": "starts_with", "String.ends_with?": "ends_with",
    "Enum.count": "length", "Enum.member?": "member", "Enum.at": "at", "Enum.join": "join",
    "Kernel.div": "div", "Kernel.rem": "rem",
}
_CODE_RULES = [
    (re.compile(r"\b(String|Enum|Kernel)\.([a-z_]+\??)"), lambda m: _QUALIFIED.get(m.group(0), m.group(0))),
    (re.compile(r"&&"), lambda m: " and "),
    (re.compile(r"\|\|"), lambda m: " or "),
    (re.compile(r"<>"), lambda m: " + "),
    (re.compile(r"\+\+"), lambda m: " + "),
    (re.compile(r"!(?!=)"), lambda m: " not "),
    (re.compile(r"\bnil\b"), lambda m: "None"),
    (re.compile(r"\btrue\b"), lambda m: "True"),
    (re.compile(r"\bfalse\b"), lambda m: "False"),
]


#: Elixir constructs outside the subset, named in the refusal (Python's parser would only say "invalid").
_ELIXIR_REFUSED = {"=~": "regex match '=~'", "|>": "the pipe '|>'", "~r": "regex sigils", "%{": "maps",
                   "->": "anonymous functions", "===": "strict equality '==='", "!==": "strict equality '!=='",
                   "#{": "string interpolation"}


def _refused_construct(text: str) -> str | None:
    """The first Elixir construct of ``text`` (outside string literals) that is not supported, if any."""
    code = _STRING.sub('""', text)
    found = [(code.find(token), name) for token, name in _ELIXIR_REFUSED.items() if token in code]
    if "#{" in text:
        found.append((text.find("#{"), _ELIXIR_REFUSED["#{"]))
    return min(found)[1] if found else None


def _translate_code(code: str) -> str:
    for pattern, replacement in _CODE_RULES:
        code = pattern.sub(replacement, code)
    return code


def translate(text: str) -> str:
    """The Python spelling of an Elixir-ish expression; string literals are kept as they are."""
    parts: list[str] = []
    position = 0
    for match in _STRING.finditer(text):
        parts.append(_translate_code(text[position:match.start()]))
        parts.append(match.group(0))
        position = match.end()
    parts.append(_translate_code(text[position:]))
    return "".join(parts)


# --- the allow-list ----------------------------------------------------------------------------------------------

def _length(value: Any) -> int:
    if not isinstance(value, str | list):
        raise TypeError(f"length takes a string or a list, not {type(value).__name__}")
    return len(value)


def _strings(*values: Any) -> None:
    if not all(isinstance(value, str) for value in values):
        raise TypeError("expects strings")


def _str_call(function: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        _strings(*args)
        return function(*args)
    return call


def _div(a: Any, b: Any) -> int:
    if not (_is_int(a) and _is_int(b)):
        raise TypeError("div takes integers")
    quotient = abs(a) // abs(b)  # Elixir truncates toward zero, Python's // floors
    return quotient if (a >= 0) == (b >= 0) else -quotient


def _rem(a: Any, b: Any) -> int:
    if not (_is_int(a) and _is_int(b)):
        raise TypeError("rem takes integers")
    remainder = abs(a) % abs(b)  # the sign of the dividend, as Elixir's rem
    return remainder if a >= 0 else -remainder


def _at(items: Any, index: Any) -> Any:
    if not isinstance(items, list) or not _is_int(index):
        raise TypeError("at takes a list and an integer")
    return items[index] if -len(items) <= index < len(items) else None


def _join(items: Any, separator: Any = "") -> str:
    if not isinstance(items, list) or not isinstance(separator, str):
        raise TypeError("join takes a list and a string")
    pieces = [_to_string(item) for item in items]
    if sum(map(len, pieces)) + len(separator) * len(pieces) > MAX_SIZE:  # checked before it is built
        raise ExpressionError(f"result longer than {MAX_SIZE}")
    return separator.join(pieces)


def _to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise TypeError(f"to_string takes a scalar, not {type(value).__name__}")


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expects a number")
    return value


def _min_max(pick: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not values:
            raise ValueError("of nothing")
        return pick(values)
    return call


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "length": _length,
    "upcase": _str_call(str.upper), "downcase": _str_call(str.lower), "trim": _str_call(str.strip),
    "contains": _str_call(operator.contains), "starts_with": _str_call(str.startswith),
    "ends_with": _str_call(str.endswith),
    "member": lambda items, item: item in items if isinstance(items, list) else _type_error("member"),
    "at": _at, "join": _join, "to_string": _to_string,
    "abs": lambda value: abs(_number(value)), "round": lambda value: round(_number(value)),
    "trunc": lambda value: math.trunc(_number(value)), "div": _div, "rem": _rem,
    "min": _min_max(min), "max": _min_max(max),
}


def _type_error(name: str) -> Any:
    raise TypeError(f"bad arguments to {name}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.BinOp, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
            ast.Compare, ast.Constant, ast.Name, ast.Load, ast.List, ast.Subscript, ast.Call,
            *_BINARY, *_COMPARE)
_SPELLING = {ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%", ast.BitAnd: "&", ast.BitOr: "|",
             ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>", ast.Attribute: "attribute access ('.')",
             ast.Lambda: "fn", ast.Slice: "slices", ast.IfExp: "if", ast.Dict: "maps", ast.Tuple: "tuples",
             ast.Is: "is", ast.IsNot: "is not", ast.Invert: "~"}


# --- checking and evaluating -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expression:
    """A checked expression: its text as written and the variable names it reads."""

    text: str
    tree: ast.Expression
    names: tuple[str, ...]

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The value of the expression over ``variables``; any failure is an `ExpressionError`."""
        try:
            return _bounded(_eval(self.tree.body, variables))
        except ExpressionError as error:
            raise ExpressionError(f"{error} in expression {self.text!r}") from None
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError,
                RecursionError, MemoryError) as error:
            raise ExpressionError(f"cannot evaluate {self.text!r}: {error}") from None


def compile_expression(text: str) -> Expression:
    """Check ``text`` against the supported subset and return it compiled; raise `ExpressionError` naming
    the expression and the construct that is not supported."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise ExpressionError("empty expression")
    if len(stripped) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    refused = _refused_construct(stripped)
    if refused:
        raise ExpressionError(f"expression {stripped!r} is not supported: {refused} is not allowed")
    try:
        tree = ast.parse(translate(stripped).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise ExpressionError(f"expression {stripped!r} is not supported: not a valid expression") from None
    names: list[str] = []
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"expression {stripped!r} is too long ({len(nodes)} > {MAX_NODES} parts)")
    for node in nodes:
        _check_node(node, stripped, names)
    return Expression(stripped, tree, tuple(names))


def _check_node(node: ast.AST, text: str, names: list[str]) -> None:
    if not isinstance(node, _ALLOWED):
        what = _SPELLING.get(type(node), type(node).__name__)
        raise ExpressionError(f"expression {text!r} is not supported: {what} is not allowed")
    if isinstance(node, ast.Constant) and not isinstance(node.value, str | int | float | bool | type(None)):
        raise ExpressionError(f"expression {text!r} is not supported: constant {node.value!r}")
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            raise ExpressionError(f"expression {text!r} is not supported: name {node.id!r}")
        if node.id not in names and node.id not in FUNCTIONS:
            names.append(node.id)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(f"expression {text!r} is not supported: function {called!r} "
                                  f"(allowed: {', '.join(sorted(FUNCTIONS))})")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ExpressionError(f"expression {text!r} is not supported: '*' arguments")


def evaluate(text: str, variables: Mapping[str, Any]) -> Any:
    """Compile and evaluate ``text`` over ``variables`` (a convenience for one-off evaluations)."""
    return compile_expression(text).evaluate(variables)


def evaluate_condition(text: str, variables: Mapping[str, Any]) -> bool:
    """A step condition's truth: it must give true or false (Elixir has no truthiness for other values)."""
    value = evaluate(text, variables)
    if not isinstance(value, bool):
        raise ExpressionError(f"condition {text!r} gave {value!r}, not true or false")
    return value


def _weight(value: Any) -> int:
    """The size of a value counting what its lists hold (a list of long strings weighs their lengths)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return len(value) + sum(_weight(item) for item in value)
    if isinstance(value, dict):
        return len(value) + sum(_weight(item) for item in value.values())
    return 1


def _bounded(value: Any) -> Any:
    # Bounding the weight, not just the length, keeps later comparisons and joins cheap too.
    if isinstance(value, str | list) and (len(value) > MAX_SIZE or _weight(value) > MAX_SIZE):
        raise ExpressionError(f"result longer than {MAX_SIZE}")
    if _is_int(value) and abs(value) > MAX_INT:
        raise ExpressionError("integer too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError("number out of range")
    return value


def _multiply(left: Any, right: Any) -> Any:
    # Repetition is checked before it is built: "a" * 10**9 must not allocate.
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list) and isinstance(count, int):
            if isinstance(count, bool) or max(_weight(sequence), 1) * max(count, 0) > MAX_SIZE:
                raise ExpressionError(f"repetition longer than {MAX_SIZE}")
    return left * right


def _eval(node: ast.AST, variables: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise ExpressionError(f"unknown variable {node.id!r} (known: {known})")
        return variables[node.id]
    if isinstance(node, ast.BoolOp):
        result = True if isinstance(node.op, ast.And) else False
        for operand in node.values:
            result = _eval(operand, variables)
            if isinstance(node.op, ast.And) != bool(result):
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, variables)
        if isinstance(node.op, ast.Not):
            return not operand
        value = _number(operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, variables), _eval(node.right, variables)
        if isinstance(node.op, ast.Mult):
            return _bounded(_multiply(left, right))
        return _bounded(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, variables)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, variables)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.List):
        return _bounded([_eval(item, variables) for item in node.elts])
    if isinstance(node, ast.Subscript):
        container, index = _eval(node.value, variables), _eval(node.slice, variables)
        if not isinstance(container, str | list | dict) or isinstance(index, bool):
            raise TypeError(f"cannot index a {type(container).__name__}")
        return container[index]
    if isinstance(node, ast.Call):
        args = [_eval(arg, variables) for arg in node.args]
        return _bounded(FUNCTIONS[node.func.id](*args))  # type: ignore[attr-defined]
    raise ExpressionError(f"unsupported construct {type(node).__name__}")
