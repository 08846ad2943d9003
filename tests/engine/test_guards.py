"""Tests for engine.guards: the safe guard expression language."""

from __future__ import annotations

import ast
import copy
import operator
import pickle
import string
import sys
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.guards import (
    Guard,
    GuardError,
    GuardSyntaxError,
    GuardTypeError,
    MissingField,
    compile_guard,
)

GUARDS_SOURCE = Path(__file__).resolve().parents[2] / "engine" / "guards.py"


def ev(text: str, data: dict[str, Any] | None = None, local: dict[str, Any] | None = None) -> Any:
    return compile_guard(text)(data if data is not None else {}, local)


def syntax_error(text: str, **kwargs: Any) -> GuardSyntaxError:
    with pytest.raises(GuardSyntaxError) as info:
        compile_guard(text, **kwargs)
    return info.value


def type_error(text: str, data: dict[str, Any] | None = None) -> GuardTypeError:
    guard = compile_guard(text)
    with pytest.raises(GuardTypeError) as info:
        guard(data or {})
    return info.value


# --------------------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("0", 0),
        ("2.5", 2.5),
        ("1e6", 1e6),
        ("1E-3", 1e-3),
        ("2.5e+2", 250.0),
        ("250_000", 250000),
        ("1_0.5_0", 10.5),
        ("'abc'", "abc"),
        ('"abc"', "abc"),
        ("''", ""),
        (r"'it\'s'", "it's"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'a\\b'", "a\\b"),
        (r"'a\nb\tc'", "a\nb\tc"),
        ("'\"'", '"'),
        ("'é ✓'", "é ✓"),
        ("true", True),
        ("false", False),
        ("null", None),
        ("True", True),
        ("False", False),
        ("None", None),
        ("[]", []),
        ("[1, 2, 'x']", [1, 2, "x"]),
        ("[1, [2, 3], []]", [1, [2, 3], []]),
        ("[1, 2,]", [1, 2]),
        ("  1  ", 1),
        ("\t1\n", 1),
    ],
)
def test_literals(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


def test_list_literal_with_fields() -> None:
    assert ev("[x, x + 1, 'k']", {"x": 1}) == [1, 2, "k"]


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # arithmetic
        ("7 + 3", 10),
        ("7 - 3", 4),
        ("7 * 3", 21),
        ("7 / 2", 3.5),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7.5 % 2", 1.5),
        ("-3", -3),
        ("+3", 3),
        ("- -3", 3),
        ("-(2 - 5)", 3),
        ("'ab' + 'cd'", "abcd"),
        ("[1] + [2]", [1, 2]),
        ("true + 1", 2),
        ("1 + 2.5", 3.5),
        # comparisons
        ("1 == 1", True),
        ("1 == 2", False),
        ("1 != 2", True),
        ("1 != 1", False),
        ("1 < 2", True),
        ("2 < 1", False),
        ("1 <= 1", True),
        ("2 <= 1", False),
        ("2 > 1", True),
        ("1 > 2", False),
        ("1 >= 1", True),
        ("1 >= 2", False),
        ("'a' < 'b'", True),
        ("1 < 1.5", True),
        ("false < 1", True),
        ("1 == '1'", False),
        ("null == null", True),
        ("null == false", False),
        ("[1, 2] == [1, 2]", True),
        ("1 == 1.0", True),
        # membership
        ("1 in [1, 2]", True),
        ("3 in [1, 2]", False),
        ("3 not in [1, 2]", True),
        ("1 not in [1, 2]", False),
        ("'ell' in 'hello'", True),
        ("'ELL' in 'hello'", False),
        ("'x' not in 'hello'", True),
        ("[1] in [[1], 2]", True),
        ("[] in []", False),
        # boolean
        ("true and true", True),
        ("true and false", False),
        ("false or true", True),
        ("false or false", False),
        ("not true", False),
        ("not false", True),
        ("not not 1", True),
        ("not 0", True),
        ("not ''", True),
        ("1 and 'x'", True),
        ("0 or ''", False),
        ("[] or [1]", True),
    ],
)
def test_operators_on_constants(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a + b", 10),
        ("a - b", 4),
        ("a * b", 21),
        ("a / b", 7 / 3),
        ("a % b", 1),
        ("-a", -7),
        ("+a", 7),
        ("a == 7", True),
        ("a != b", True),
        ("a < b", False),
        ("a <= 7", True),
        ("a > b", True),
        ("b >= 3", True),
        ("a in items", True),
        ("b in items", False),
        ("b not in items", True),
        ("a in [7, 8]", True),
        ("a not in [7, 8]", False),
        ("name in 'the quick fox'", True),
        ("'q' in m", True),
        ("'z' in m", False),
        ("items == [7, 'x']", True),
        ("a and b", True),
        ("zero or a", True),
        ("zero and a", False),
        ("not zero", True),
        ("a > b and b > zero", True),
        ("a < b or b < zero", False),
        ("a + b + a - b - b", 11),
        ("a * b / b % 4", 3.0),
    ],
)
def test_operators_on_fields(text: str, expected: Any) -> None:
    data = {"a": 7, "b": 3, "zero": 0, "items": [7, "x"], "name": "quick", "m": {"q": 1}}
    result = ev(text, data)
    assert result == expected
    assert type(result) is type(expected)


def test_in_constant_list_handles_unhashable_values() -> None:
    guard = compile_guard("x in [1, 'a', [2]]")
    assert guard({"x": [2]}) is True
    assert guard({"x": {"k": 1}}) is False
    assert guard({"x": "a"}) is True
    guard = compile_guard("x not in [1, 2]")
    assert guard({"x": [1]}) is True
    assert guard({"x": 2}) is False


# --------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("2 * 3 + 1", 7),
        ("2 * (3 + 1)", 8),
        ("10 - 3 - 2", 5),  # left-associative
        ("10 - (3 - 2)", 9),
        ("100 / 10 / 5", 2.0),
        ("100 / (10 / 5)", 50.0),
        ("7 % 4 % 2", 1),
        ("2 * 3 % 4", 2),  # (2 * 3) % 4, same level, left to right
        ("2 + 3 % 2", 3),
        ("-2 * 3", -6),
        ("-2 + 3", 1),
        ("-(2 + 3)", -5),
        ("2 - -3", 5),
        ("- 2 * - 3", 6),
        ("1 + 2 < 4", True),  # arithmetic binds tighter than comparison
        ("1 < 2 + 3", True),
        ("1 + 1 == 2", True),
        ("1 in [1, 2] and 2 in [1]", False),
        ("not 1 == 2", True),  # not (1 == 2)
        ("not 1 < 2", False),
        ("not true and false", False),  # (not true) and false
        ("not (true and false)", True),
        ("true or true and false", True),  # true or (true and false)
        ("(true or true) and false", False),
        ("false and false or true", True),  # (false and false) or true
        ("false and (false or true)", False),
        ("not false or false", True),
        ("1 == 1 and 2 == 2", True),
        ("(1 < 2) == true", True),
        ("(1 == 1) == (2 == 2)", True),
    ],
)
def test_precedence_and_associativity(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("a < b < c", 6),
        ("a == b != c", 7),
        ("a in b in c", 7),
        ("a < b in c", 6),
        ("a not in b == c", 11),
        ("x == 1 + 2 == 3", 11),
    ],
)
def test_comparisons_are_non_associative(text: str, position: int) -> None:
    exc = syntax_error(text)
    assert exc.position == position
    assert "chained" in exc.problem


def test_parenthesized_comparisons_may_be_compared() -> None:
    assert ev("(a < b) == (b < c)", {"a": 1, "b": 2, "c": 3}) is True


@pytest.mark.parametrize(
    ("text", "fixed", "expected"),
    [
        ("a == not b", "a == (not b)", True),
        ("-not a", "-(not a)", 0),
        ("1 + not a", "1 + (not a)", 1),
        ("a < not b", "a < (not b)", False),
    ],
)
def test_not_inside_an_operand_needs_parentheses(text: str, fixed: str, expected: Any) -> None:
    assert syntax_error(text).found == "unexpected 'not'"
    assert ev(fixed, {"a": 1, "b": 0}) == expected


# --------------------------------------------------------------------------- short-circuit


def test_or_short_circuits() -> None:
    guard = compile_guard("x == 1 or missing_field")
    assert guard({"x": 1}) is True
    with pytest.raises(MissingField):
        guard({"x": 2})


def test_and_short_circuits() -> None:
    guard = compile_guard("x == 2 and missing_field > 0")
    assert guard({"x": 1}) is False
    with pytest.raises(MissingField):
        guard({"x": 2})


def test_short_circuit_skips_type_errors() -> None:
    guard = compile_guard("x == 0 or 10 / x > 1")
    assert guard({"x": 0}) is True
    assert guard({"x": 5}) is True
    assert guard({"x": 50}) is False
    assert compile_guard("x != null and x + 1 > 2")({"x": None}) is False


def test_constant_operands_short_circuit_at_compile_time() -> None:
    assert ev("true or missing") is True
    assert ev("false and missing") is False
    assert ev("false or false or x", {"x": 3}) is True
    assert ev("true and true and x", {"x": 0}) is False


def test_operands_before_a_deciding_constant_still_run() -> None:
    # evaluation is left to right, so the missing field is noticed
    with pytest.raises(MissingField):
        ev("missing or true")
    with pytest.raises(MissingField):
        ev("missing and false")
    assert ev("x or true", {"x": 0}) is True
    assert ev("x and false", {"x": 1}) is False


def test_long_boolean_chains() -> None:
    guard = compile_guard(" or ".join(f"x == {i}" for i in range(100)))
    assert guard({"x": 99}) is True
    assert guard({"x": 100}) is False
    guard = compile_guard(" and ".join(f"x != {i}" for i in range(100)))
    assert guard({"x": 99}) is False
    assert guard({"x": 100}) is True


def test_and_or_return_bools() -> None:
    assert ev("x or y", {"x": 0, "y": "yes"}) is True
    assert ev("x and y", {"x": [1], "y": 2}) is True
    assert ev("x or y", {"x": "", "y": []}) is False


# --------------------------------------------------------------------------- names


def test_dotted_access_into_nested_mappings() -> None:
    data = {"deal": {"acv": 300000, "owner": {"region": "emea"}}}
    assert ev("deal.acv", data) == 300000
    assert ev("deal.owner.region == 'emea'", data) is True
    assert ev("deal . owner . region", data) == "emea"
    assert ev("deal.owner", data) == {"region": "emea"}


def test_dotted_access_through_other_mapping_types() -> None:
    data = MappingProxyType({"a": MappingProxyType({"b": 1})})
    assert compile_guard("a.b + 1")(data) == 2


def test_keywords_are_fine_after_a_dot() -> None:
    assert ev("a.in + a.true", {"a": {"in": 1, "true": 2}}) == 3


@pytest.mark.parametrize(
    ("text", "data", "field"),
    [
        ("x", {}, "x"),
        ("x > 1", {}, "x"),
        ("1 < x", {}, "x"),
        ("deal.acv", {}, "deal.acv"),
        ("deal.acv", {"deal": {}}, "deal.acv"),
        ("deal.owner.region", {"deal": {"owner": {}}}, "deal.owner.region"),
        ("deal.owner.region", {"deal": {}}, "deal.owner.region"),
        ("deal.acv", {"deal": 5}, "deal.acv"),
        ("deal.acv", {"deal": None}, "deal.acv"),
        ("deal.acv", {"deal": "text"}, "deal.acv"),
        ("deal.acv", {"deal": [1, 2]}, "deal.acv"),
        ("deal.acv.x", {"deal": {"acv": 1}}, "deal.acv.x"),
        ("x.__class__", {"x": 1}, "x.__class__"),
        ("len(x)", {}, "x"),
        ("[1, x]", {}, "x"),
    ],
)
def test_missing_field(text: str, data: dict[str, Any], field: str) -> None:
    guard = compile_guard(text)
    with pytest.raises(MissingField) as info:
        guard(data)
    assert info.value.field == field
    assert str(info.value) == f"missing field {field!r}"


def test_present_null_is_not_missing() -> None:
    assert ev("x == null", {"x": None}) is True
    assert ev("x.y == null", {"x": {"y": None}}) is True


def test_locals_shadow_data() -> None:
    guard = compile_guard("x + y")
    assert guard({"x": 1, "y": 2}) == 3
    assert guard({"x": 1, "y": 2}, {"x": 10}) == 12
    assert guard({"x": 1, "y": 2}, local={"x": 10, "y": 20}) == 30
    assert guard({"y": 2}, {"x": 10}) == 12
    assert guard({"x": 1, "y": 2}, {}) == 3
    assert guard({"x": 1, "y": 2}, None) == 3
    with pytest.raises(MissingField):
        guard({"y": 2}, {"z": 1})


def test_locals_shadow_comparisons_against_constants() -> None:
    guard = compile_guard("x > 5")
    assert guard({"x": 10}) is True
    assert guard({"x": 10}, {"x": 1}) is False
    assert guard({}, {"x": 10}) is True


def test_locals_shadow_the_head_of_a_dotted_name() -> None:
    guard = compile_guard("item.amount > 10")
    data = {"item": {"amount": 5}}
    assert guard(data) is False
    assert guard(data, {"item": {"amount": 50}}) is True
    # no fallback to data below a shadowed head
    with pytest.raises(MissingField) as info:
        guard(data, {"item": {}})
    assert info.value.field == "item.amount"


def test_fields() -> None:
    guard = compile_guard("deal_acv > 250000 or customer.size == 'large' and len(tags) > x.y.z")
    assert guard.fields == frozenset({"deal_acv", "customer.size", "tags", "x.y.z"})
    assert isinstance(guard.fields, frozenset)
    # names in short-circuited or constant-folded parts still count
    assert compile_guard("true or a").fields == {"a"}
    assert compile_guard("1 + 2").fields == frozenset()
    assert compile_guard("a . b").fields == {"a.b"}
    # function names are not fields, but a name like a function is
    assert compile_guard("len + lower(s)").fields == {"len", "s"}


# --------------------------------------------------------------------------- functions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("len('abc')", 3),
        ("len('')", 0),
        ("len([1, 2])", 2),
        ("len(m)", 1),
        ("len(items)", 3),
        ("abs(-3)", 3),
        ("abs(2.5)", 2.5),
        ("abs(n)", 4),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("min(1, 2.5)", 1),
        ("max(1, 2.5)", 2.5),
        ("min([5, 4])", 4),
        ("max(items)", 3),
        ("min(n, 10)", -4),
        ("max('a', 'b')", "b"),
        ("max([7])", 7),
        ("lower('AbC')", "abc"),
        ("upper('AbC')", "ABC"),
        ("lower(s) == 'hello world'", True),
        ("contains('Hello World', 'o w')", True),
        ("contains(s, 'WORLD')", True),
        ("contains(s, 'xyz')", False),
        ("contains(items, 2)", True),
        ("contains(items, 9)", False),
        ("contains(['A'], 'a')", False),  # list membership is exact
        ("contains(m, 'k')", True),
        ("contains(m, 'K')", False),
    ],
)
def test_functions(text: str, expected: Any) -> None:
    data = {"m": {"k": 1}, "items": [1, 2, 3], "n": -4, "s": "Hello World"}
    result = ev(text, data)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "found_fragment"),
    [
        ("len()", "len() takes exactly 1 argument, got 0"),
        ("len(1, 2)", "len() takes exactly 1 argument, got 2"),
        ("abs()", "abs() takes exactly 1 argument, got 0"),
        ("lower('a', 'b')", "lower() takes exactly 1 argument, got 2"),
        ("upper()", "upper() takes exactly 1 argument, got 0"),
        ("contains('a')", "contains() takes exactly 2 arguments, got 1"),
        ("contains('a', 'b', 'c')", "contains() takes exactly 2 arguments, got 3"),
        ("min()", "min() takes at least 1 argument, got 0"),
        ("max()", "max() takes at least 1 argument, got 0"),
    ],
)
def test_wrong_arity_is_a_syntax_error(text: str, found_fragment: str) -> None:
    exc = syntax_error(text)
    assert exc.found == "wrong number of arguments"
    assert exc.position == 0
    assert found_fragment in exc.problem


@pytest.mark.parametrize(
    ("text", "name", "position"),
    [
        ("foo(1)", "foo", 0),
        ("x > bar()", "bar", 4),
        ("__import__('os')", "__import__", 0),
        ("eval('1 + 1')", "eval", 0),
        ("exec('import os')", "exec", 0),
        ("getattr(x, 'y')", "getattr", 0),
        ("os.system('ls')", "os.system", 0),
        ("s.lower()", "s.lower", 0),
        ("Len('a')", "Len", 0),
    ],
)
def test_unknown_function_is_a_syntax_error(text: str, name: str, position: int) -> None:
    exc = syntax_error(text)
    assert exc.found == f"unknown function {name!r}"
    assert exc.position == position
    assert "len" in exc.problem  # lists what is allowed


# --------------------------------------------------------------------------- no eval


@pytest.mark.parametrize(
    "text",
    [
        "().__class__",
        "[].__class__",
        "''.join(['a'])",
        "x[0]",
        "x['a']",
        "lambda: 1",
        "x if y else z",
        "x = 1",
        "import os",
        "x; y",
        "`id`",
        "f'{x}'",
        "x ** 2",
        "x // 2",
        "{'a': 1}",
        "(x)(y)",
        "len.__globals__()",
    ],
)
def test_python_syntax_outside_the_language_is_rejected(text: str) -> None:
    with pytest.raises(GuardSyntaxError):
        compile_guard(text)


def test_attribute_names_only_read_mapping_keys() -> None:
    guard = compile_guard("x.__class__.__name__")
    with pytest.raises(MissingField):
        guard({"x": 1})
    # a key that looks like an attribute is an ordinary key
    assert guard({"x": {"__class__": {"__name__": "ok"}}}) == "ok"


def _module_tree() -> ast.Module:
    return ast.parse(GUARDS_SOURCE.read_text(encoding="utf-8"))


def test_module_never_calls_eval_exec_or_compile() -> None:
    builtins = {"eval", "exec", "compile", "__import__", "getattr", "setattr", "globals", "vars"}
    for node in ast.walk(_module_tree()):
        if isinstance(node, ast.Name):
            assert node.id not in builtins, f"line {node.lineno} uses {node.id}"
        elif isinstance(node, ast.Attribute):
            assert node.attr != "literal_eval", f"line {node.lineno} uses literal_eval"
            if node.attr == "compile":  # only re.compile, on our own pattern
                assert isinstance(node.value, ast.Name)
                assert node.value.id == "re", f"line {node.lineno}"


def test_module_imports_only_the_standard_library() -> None:
    roots = set()
    for node in ast.walk(_module_tree()):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "guards.py must not import from the project"
            assert node.module is not None
            roots.add(node.module.split(".")[0])
    assert roots <= set(sys.stdlib_module_names), roots - set(sys.stdlib_module_names)
    assert not roots & {"asyncio", "io", "os", "subprocess", "socket", "pathlib", "ast"}


# --------------------------------------------------------------------------- syntax errors


def test_syntax_error_message_format() -> None:
    exc = syntax_error("(deal_acv + )")
    assert exc.position == 12
    assert exc.problem == "expected an expression"
    assert exc.text == "(deal_acv + )"
    assert str(exc) == "unexpected ')' at 12: expected an expression"


@pytest.mark.parametrize(
    ("text", "position", "found"),
    [
        ("", 0, "empty guard"),
        ("   ", 0, "empty guard"),
        ("a b", 2, "unexpected 'b'"),
        ("1 2", 2, "unexpected '2'"),
        ("x == 1 )", 7, "unexpected ')'"),
        ("x not y", 2, "unexpected 'not'"),
        ("'abc", 0, "unterminated string"),
        ('x == "abc', 5, "unterminated string"),
        ("'abc\\'", 0, "unterminated string"),
        ("'abc\\", 0, "unterminated string"),
        ("'a\\qb'", 2, "unknown escape '\\\\q'"),
        ("x $ y", 2, "unexpected character '$'"),
        ("x = 1", 2, "unexpected character '='"),
        ("x && y", 2, "unexpected character '&'"),
        ("x || y", 2, "unexpected character '|'"),
        ("!x", 0, "unexpected character '!'"),
        ("x == é", 5, "unexpected character 'é'"),
        ("1 +", 3, "unexpected end of guard"),
        ("(1 + 2", 6, "unexpected end of guard"),
        ("[1, 2", 5, "unexpected end of guard"),
        ("[1 2]", 3, "unexpected '2'"),
        ("len(1", 5, "unexpected end of guard"),
        ("min(1 2)", 6, "unexpected '2'"),
        ("min(,)", 4, "unexpected ','"),
        ("[,]", 1, "unexpected ','"),
        ("and", 0, "unexpected 'and'"),
        ("x and or y", 6, "unexpected 'or'"),
        ("in x", 0, "unexpected 'in'"),
        ("a.", 2, "unexpected end of guard"),
        ("a.1", 2, "unexpected '1'"),
        ("a.'b'", 2, "unexpected \"'b'\""),
        (".5", 0, "unexpected '.'"),
        ("x.y.", 4, "unexpected end of guard"),
        ("1.", 0, "invalid number '1.'"),
        ("1.e5", 0, "invalid number '1.e5'"),
        ("1e", 0, "invalid number '1e'"),
        ("1_", 0, "invalid number '1_'"),
        ("1__0", 0, "invalid number '1__0'"),
        ("x > 12abc", 4, "invalid number '12abc'"),
        ("0x10", 0, "invalid number '0x10'"),
        ("1.2.3", 0, "invalid number '1.2.3'"),
        ("1e999", 0, "invalid number '1e999'"),
    ],
)
def test_syntax_errors_have_positions(text: str, position: int, found: str) -> None:
    exc = syntax_error(text)
    assert exc.position == position
    assert exc.found == found
    assert exc.text == text
    assert str(exc) == f"{found} at {position}: {exc.problem}"
    assert exc.problem


def test_huge_integer_literal_is_a_syntax_error() -> None:
    text = "9" * 5000
    exc = syntax_error(text, max_length=10_000)
    assert exc.position == 0
    assert "too large" in exc.problem


def test_too_long() -> None:
    text = "x + " * 500 + "x"  # 2001 characters
    exc = syntax_error(text)
    assert exc.found == "guard too long"
    assert exc.position == 2000
    assert "2001" in exc.problem
    assert compile_guard(text, max_length=2001)({"x": 1}) == 501
    assert compile_guard("x" * 2000).fields == {"x" * 2000}
    assert syntax_error("1 + 1", max_length=4).position == 4


@pytest.mark.parametrize(
    ("opener", "closer", "offset"),
    [("(", ")", 0), ("[", "]", 0), ("len(", ")", 3), ("-", "", 0), ("not ", "", 0)],
)
def test_too_deep(opener: str, closer: str, offset: int) -> None:
    ok = opener * 64 + "1" + closer * 64
    compile_guard(ok)
    bad = opener * 65 + "1" + closer * 65
    exc = syntax_error(bad)
    assert exc.found == "nesting too deep"
    assert exc.position == len(opener) * 64 + offset  # the 65th opener
    assert "64" in exc.problem
    compile_guard(bad, max_depth=65)
    exc = syntax_error(opener * 3 + "1" + closer * 3, max_depth=2)
    assert exc.position == len(opener) * 2 + offset


def test_deep_nesting_with_raised_limits_never_overflows_the_stack() -> None:
    text = "(" * 5000 + "1" + ")" * 5000
    exc = syntax_error(text, max_length=100_000, max_depth=100_000)
    assert exc.found == "nesting too deep"


def test_long_flat_expressions_do_not_nest() -> None:
    text = " + ".join(["x"] * 600)
    assert compile_guard(text, max_length=10_000)({"x": 1}) == 600
    text = " - ".join(["1"] * 600)
    assert compile_guard(text, max_length=10_000)({}) == 1 - 599


def test_compile_guard_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        compile_guard(b"x > 1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- type errors


@pytest.mark.parametrize(
    ("text", "data", "fragment", "position"),
    [
        ("'a' < 1", {}, "cannot compare string with int using '<'", 4),
        ("x >= 1", {"x": "a"}, "cannot compare string with int using '>='", 2),
        ("x > 1", {"x": None}, "cannot compare null with int", 2),
        ("1 <= x", {"x": [1]}, "cannot compare int with list", 2),
        ("null + 1", {}, "unsupported operand types for '+': null and int", 5),
        ("x + 1", {"x": None}, "unsupported operand types for '+': null and int", 2),
        ("'a' + 1", {}, "string and int", 4),
        ("x - y", {"x": "a", "y": "b"}, "unsupported operand types for '-'", 2),
        ("1 / 0", {}, "division by zero in '/'", 2),
        ("x / y", {"x": 1, "y": 0.0}, "division by zero in '/'", 2),
        ("x % 0", {"x": 5}, "division by zero in '%'", 2),
        ("1 + 2 + x / 0", {"x": 1}, "division by zero", 10),
        ("'a' * 3", {}, "unsupported operand types for '*': string and int", 4),
        ("x * 1000000000", {"x": [1]}, "list and int", 2),
        ("'%s' % x", {"x": 1}, "unsupported operand types for '%'", 5),
        ("-x", {"x": "a"}, "unary '-' needs a number, got string", 0),
        ("+x", {"x": None}, "unary '+' needs a number, got null", 0),
        ("1 in 5", {}, "cannot test int 'in' int", 2),
        ("1 in 'abc'", {}, "cannot test int 'in' string", 2),
        ("x not in y", {"x": [1], "y": {"a": 1}}, "cannot test list 'not in' mapping", 2),
        ("x in null", {"x": 1}, "cannot test int 'in' null", 2),
        ("len(5)", {}, "len() needs a string, list or mapping, got int", 0),
        ("len(x)", {"x": None}, "got null", 0),
        ("abs('a')", {}, "abs() needs a number, got string", 0),
        ("abs(x)", {"x": [1]}, "got list", 0),
        ("lower(1)", {}, "lower() needs a string, got int", 0),
        ("upper(x)", {"x": None}, "upper() needs a string, got null", 0),
        ("min(1, 'a')", {}, "min() cannot compare int and string", 0),
        ("max(x)", {"x": [1, None]}, "max() cannot compare int and null", 0),
        ("min(5)", {}, "min() of one argument needs a list, got int", 0),
        ("max('abc')", {}, "max() of one argument needs a list, got string", 0),
        ("min([])", {}, "min() of an empty list", 0),
        ("contains(5, 1)", {}, "contains() needs a string, list or mapping to search", 0),
        ("contains('abc', 1)", {}, "contains() in a string needs a string to look for", 0),
        ("contains(m, [1])", {"m": {"a": 1}}, "cannot look for a list in a mapping", 0),
        ("x == 1 or 1 / 0 > 1", {"x": 2}, "division by zero", 12),
    ],
)
def test_type_errors(text: str, data: dict[str, Any], fragment: str, position: int) -> None:
    exc = type_error(text, data)
    assert fragment in exc.problem
    assert exc.position == position
    assert str(exc) == f"{exc.problem} (at {position})"


def test_failing_constants_are_left_for_evaluation() -> None:
    guard = compile_guard("1 / 0")  # compiles: the error is raised only if reached
    with pytest.raises(GuardTypeError):
        guard({})
    guard = compile_guard("x or 1 / 0 > 1")
    assert guard({"x": 1}) is True
    with pytest.raises(GuardTypeError):
        guard({"x": 0})


def test_overflow_is_a_type_error() -> None:
    guard = compile_guard("x / 2", max_length=10_000)
    with pytest.raises(GuardTypeError) as info:
        guard({"x": 10**400})
    assert "too large" in info.value.problem


def test_errors_are_guard_errors_and_pickle() -> None:
    assert issubclass(GuardSyntaxError, GuardError)
    assert issubclass(MissingField, GuardError)
    assert issubclass(GuardTypeError, GuardError)
    for exc in (
        GuardSyntaxError("a b", 2, "expected an operator", "unexpected 'b'"),
        MissingField("deal.acv"),
        GuardTypeError("division by zero in '/'", 3),
        GuardTypeError("something"),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc)
        assert str(back) == str(exc)
        assert vars(back) == vars(exc)
    assert str(GuardTypeError("something")) == "something"


# --------------------------------------------------------------------------- the Guard object


def test_guard_object() -> None:
    guard = compile_guard("deal_acv > 250000 or discount_percent > 0.15")
    assert isinstance(guard, Guard)
    assert guard.text == "deal_acv > 250000 or discount_percent > 0.15"
    assert guard.fields == {"deal_acv", "discount_percent"}
    assert repr(guard) == "Guard('deal_acv > 250000 or discount_percent > 0.15')"
    assert guard({"deal_acv": 300000, "discount_percent": 0}) is True
    assert guard({"deal_acv": 1, "discount_percent": 0.2}) is True
    assert guard({"deal_acv": 1, "discount_percent": 0.1}) is False
    assert guard(data={"deal_acv": 1}, local={"discount_percent": 0.5}) is True
    assert "__slots__" in Guard.__dict__


def test_test_returns_a_bool() -> None:
    guard = compile_guard("x")
    assert guard({"x": [1]}) == [1]
    assert guard.test({"x": [1]}) is True
    assert guard.test({"x": []}) is False
    assert guard.test({"x": 0}, {"x": 3}) is True
    assert guard.test({}, local={"x": "y"}) is True
    with pytest.raises(MissingField):
        guard.test({})


def test_guards_are_immutable_values() -> None:
    guard = compile_guard("x > 1")
    assert copy.copy(guard) is guard
    assert copy.deepcopy({"g": guard})["g"] is guard
    back = pickle.loads(pickle.dumps(guard))
    assert back.text == guard.text
    assert back.fields == guard.fields
    assert back({"x": 2}) is True


def test_guards_are_reusable_and_do_not_leak_state() -> None:
    guard = compile_guard("a.b + x > 3")
    for i in range(5):
        assert guard({"a": {"b": i}, "x": 1}) is (i + 1 > 3)


# --------------------------------------------------------------------------- properties

ARITH_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "%": lambda a, b: a % b,
}
COMPARE_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
NAMES = ("x", "y", "z")

leaves = st.integers(-50, 50) | st.sampled_from(NAMES)
trees = st.recursive(
    leaves,
    lambda kids: st.one_of(
        st.tuples(st.sampled_from([*ARITH_OPS, *COMPARE_OPS, "and", "or"]), kids, kids),
        st.tuples(st.sampled_from(["not", "neg"]), kids),
    ),
    max_leaves=24,
)


class Undefined(Exception):
    """The reference evaluator hit a division by zero or an overflow."""


def to_text(tree: Any) -> str:
    if isinstance(tree, int):
        return str(tree) if tree >= 0 else f"({tree})"
    if isinstance(tree, str):
        return tree
    if len(tree) == 2:
        op, operand = tree
        return f"(not {to_text(operand)})" if op == "not" else f"(-{to_text(operand)})"
    op, left, right = tree
    return f"({to_text(left)} {op} {to_text(right)})"


def reference(tree: Any, env: dict[str, int]) -> Any:
    if isinstance(tree, int):
        return tree
    if isinstance(tree, str):
        return env[tree]
    if len(tree) == 2:
        op, operand = tree
        value = reference(operand, env)
        return (not value) if op == "not" else -value
    op, left, right = tree
    if op == "and":
        return bool(reference(left, env)) and bool(reference(right, env))
    if op == "or":
        return bool(reference(left, env)) or bool(reference(right, env))
    a, b = reference(left, env), reference(right, env)
    if op in COMPARE_OPS:
        return COMPARE_OPS[op](a, b)
    try:
        return ARITH_OPS[op](a, b)
    except (ZeroDivisionError, OverflowError):
        raise Undefined from None


def names_in(tree: Any) -> set[str]:
    if isinstance(tree, str):
        return {tree}
    if isinstance(tree, int):
        return set()
    return set().union(*(names_in(child) for child in tree[1:]))


@settings(max_examples=400, deadline=None)
@given(
    tree=trees,
    env=st.fixed_dictionaries({name: st.integers(-30, 30) for name in NAMES}),
)
def test_matches_reference_evaluator(tree: Any, env: dict[str, int]) -> None:
    text = to_text(tree)
    guard = compile_guard(text, max_length=100_000, max_depth=500)
    assert guard.fields == names_in(tree)
    try:
        expected = reference(tree, env)
    except Undefined:
        with pytest.raises(GuardTypeError):
            guard(env)
        with pytest.raises(GuardTypeError):
            guard({}, env)
        return
    for result in (guard(env), guard({}, env), guard({n: "shadowed" for n in NAMES}, env)):
        assert result == expected
        assert type(result) is type(expected)
    assert guard.test(env) is bool(expected)


VOCABULARY = [
    "x", "y", "s", "m", "items", "none", "m.k", "m.k.j", "x.y",
    "1", "0", "2.5", "1e3", "-", "+", "*", "/", "%",
    "==", "!=", "<", "<=", ">", ">=", "in", "not", "and", "or",
    "(", ")", "[", "]", ",", ".", "'abc'", '"A"', "''", "true", "null",
    "len(", "abs(", "min(", "max(", "lower(", "upper(", "contains(",
]  # fmt: skip

SAMPLE_DATA = {
    "x": 3,
    "y": 0.5,
    "s": "Hello",
    "m": {"k": {"j": 1}},
    "items": [1, "a", None, [2]],
    "none": None,
}


def _only_guard_errors(text: str) -> None:
    try:
        guard = compile_guard(text)
    except GuardError:
        return
    for data, local in ((SAMPLE_DATA, None), ({}, None), (SAMPLE_DATA, {"x": "str"})):
        try:
            guard(data, local)
            guard.test(data, local)
        except GuardError:
            pass


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=string.printable, max_size=120))
def test_random_printable_text_raises_only_guard_errors(text: str) -> None:
    _only_guard_errors(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_unicode_text_raises_only_guard_errors(text: str) -> None:
    _only_guard_errors(text)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=25).map(" ".join))
def test_random_token_soup_raises_only_guard_errors(text: str) -> None:
    _only_guard_errors(text)
