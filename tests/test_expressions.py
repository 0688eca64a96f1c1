"""Tests for the safe expression language (`quantlab.expressions`)."""

from __future__ import annotations

import dataclasses
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import quantlab.expressions as qe
from quantlab.expressions import MAX_DEPTH, MAX_LENGTH, Expr, ExpressionError, Gate, parse, parse_gate

NAN = float("nan")
INF = float("inf")


def ev(text: str, **env: Any) -> np.ndarray:
    return parse(text).evaluate(env)


# ------------------------------------------------------------------------------- precedence & values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2^3^2", 512.0),
        ("2**3**2", 512.0),
        ("(2^3)^2", 64.0),
        ("-2^2", -4.0),
        ("(-2)^2", 4.0),
        ("2^-1", 0.5),
        ("2^-1^2", 0.5),  # 2^(-(1^2))
        ("--2", 2.0),
        ("+-+2", -2.0),
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("100 / 10 / 5", 2.0),
        ("2 * 3 ^ 2", 18.0),
        ("-3 * 2", -6.0),
        ("2 * -3", -6.0),
        ("1 - -1", 2.0),
        ("1e-3 * 1E3", 1.0),
        (".5 + 5. + 1.e1", 15.5),
        ("abs(-3) + sign(-2) + sqrt(16) + exp(0) + log(1)", 7.0),
        ("min(3, 1, 2) + max(3, 1, 2)", 4.0),
        ("clip(5, 0, 2) + clip(-5, 0, 2) + clip(1, 0, 2)", 3.0),
        ("where(1 < 2, 10, 20) + where(not 1 < 2, 1, 2)", 12.0),
        ("abs(-(-(2)))", 2.0),
    ],
)
def test_numeric_precedence_and_associativity(text: str, expected: float) -> None:
    result = ev(text)
    assert isinstance(result, np.ndarray)
    assert result.dtype == np.float64
    assert float(result) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("not true", False),
        ("not not true", True),
        ("true or false and false", True),  # and binds tighter than or
        ("(true or false) and false", False),
        ("not false and false", False),  # not binds tighter than and
        ("not 1 > 2", True),  # not binds looser than comparison
        ("1 + 1 == 2", True),
        ("-1 < 0 and 2 ^ 2 >= 4", True),
        ("1 != 1 or 2 <= 1", False),
    ],
)
def test_boolean_precedence(text: str, expected: bool) -> None:
    expr = parse(text)
    assert expr.is_boolean
    result = expr.evaluate({})
    assert result.dtype == np.bool_
    assert bool(result) is expected


def test_vectorized_evaluation_and_broadcasting() -> None:
    expr = parse("mom_20 - 0.5 * vol_20")
    assert expr.names == frozenset({"mom_20", "vol_20"})
    out = expr.evaluate({"mom_20": np.array([1.0, 2.0, 3.0]), "vol_20": 2.0})
    np.testing.assert_array_equal(out, [0.0, 1.0, 2.0])
    # (2, 1) against (3,) broadcasts to (2, 3); lists and ints are accepted
    out = parse("a * b + max(a, b, 0)").evaluate({"a": np.array([[1.0], [-1.0]]), "b": [1, 2, 3]})
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[2.0, 4.0, 6.0], [0.0, 0.0, 0.0]])
    gate = parse("a > 0 and b <= 2").evaluate({"a": np.array([[1.0], [-1.0]]), "b": np.array([1, 2, 3])})
    np.testing.assert_array_equal(gate, [[True, True, False], [False, False, False]])
    # a constant expression is a 0-d array
    assert parse("1 + 1").evaluate({}).shape == ()


def test_nan_comparisons_are_false() -> None:
    env = {"x": np.array([NAN, 1.0]), "y": np.array([1.0, 1.0])}
    for op in ("<", "<=", ">", ">=", "==", "!="):
        np.testing.assert_array_equal(parse(f"x {op} y").evaluate(env), [False, op in ("<=", ">=", "==")])
        np.testing.assert_array_equal(parse(f"y {op} x").evaluate(env), [False, op in ("<=", ">=", "==")])
    np.testing.assert_array_equal(parse("x != x").evaluate(env), [False, False])
    np.testing.assert_array_equal(parse("not x == y").evaluate(env), [True, False])
    np.testing.assert_array_equal(parse("where(x > 0, 1, -1)").evaluate(env), [-1.0, 1.0])


def test_thresholds_at_equality() -> None:
    env = {"sharpe_mid": np.array([0.59, 0.6, 0.61]), "max_dd_long": np.array([0.25, 0.25, 0.26])}
    gate = parse("sharpe_mid >= 0.6 and max_dd_long <= 0.25")
    np.testing.assert_array_equal(gate.evaluate(env), [False, True, False])
    np.testing.assert_array_equal(parse("sharpe_mid > 0.6").evaluate(env), [False, False, True])
    np.testing.assert_array_equal(parse("sharpe_mid == 0.6").evaluate(env), [False, True, False])


def test_ieee_semantics_without_warnings() -> None:
    env = {"x": np.array([-1.0, 0.0, 1.0, NAN])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(parse("1 / x").evaluate(env), [-1.0, INF, 1.0, NAN])
        np.testing.assert_array_equal(parse("x / 0").evaluate(env), [-INF, NAN, INF, NAN])
        np.testing.assert_array_equal(parse("log(x)").evaluate(env), [NAN, -INF, 0.0, NAN])
        np.testing.assert_array_equal(parse("sqrt(x)").evaluate(env), [NAN, 0.0, 1.0, NAN])
        np.testing.assert_array_equal(parse("sign(x)").evaluate(env), [-1.0, 0.0, 1.0, NAN])
        np.testing.assert_array_equal(parse("max(x, 0)").evaluate(env), [0.0, 0.0, 1.0, NAN])
        np.testing.assert_array_equal(parse("clip(x, -0.5, 0.5)").evaluate(env), [-0.5, 0.0, 0.5, NAN])
        assert float(ev("exp(1000)")) == INF
        assert np.isnan(ev("(-8) ^ (1 / 3)"))


def test_missing_and_non_numeric_env_values() -> None:
    expr = parse("a + zeta")
    with pytest.raises(KeyError, match="zeta"):
        expr.evaluate({"a": 1.0})
    with pytest.raises(TypeError, match="'a'"):
        expr.evaluate({"a": "text", "zeta": 1.0})
    # bool arrays are numeric 0/1
    np.testing.assert_array_equal(expr.evaluate({"a": np.array([True, False]), "zeta": 1}), [2.0, 1.0])


# ------------------------------------------------------------------------------------- canonical form


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("mom_20 - 0.5 * vol_20", "(mom_20 - (0.5 * vol_20))"),
        ("  mom_20-.5*vol_20 ", "(mom_20 - (0.5 * vol_20))"),
        ("((mom_20)) - (0.50 * (vol_20))", "(mom_20 - (0.5 * vol_20))"),
        ("2**3**2", "(2 ^ (3 ^ 2))"),
        ("-2^2", "(-(2 ^ 2))"),
        ("+a", "a"),
        ("1e-3 + 1E2 + 2.0", "((0.001 + 100) + 2)"),
        ("a < b and not c >= 1 or false", "(((a < b) and (not (c >= 1))) or false)"),
        ("max(a,b,  c)", "max(a, b, c)"),
        ("where(a>b,a,-b)", "where((a > b), a, (-b))"),
        ("1e20 * 1.5e-7", "(1e+20 * 1.5e-07)"),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    expr = parse(text)
    assert expr.canonical() == canonical
    again = parse(canonical)
    assert again.canonical() == canonical
    assert again.names == expr.names and again.is_boolean == expr.is_boolean


def test_expr_is_immutable_hashable_and_picklable() -> None:
    a, b = parse("x + 1"), parse("x + 1")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert str(a) == "x + 1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.text = "y"  # type: ignore[misc]
    c = pickle.loads(pickle.dumps(a))
    assert c == a and c.canonical() == a.canonical()
    assert float(c.evaluate({"x": 2.0})) == 3.0
    assert Expr("x + 1") == a
    err = pickle.loads(pickle.dumps(ExpressionError("boom", "x y", 2, hint="h", path="p")))
    assert (err.reason, err.text, err.position, err.hint, err.path) == ("boom", "x y", 2, "h", "p")


# ------------------------------------------------------------------------------------------- errors

REJECTED = [
    # (text, position, message fragment)
    ("a.b", 1, "attribute access"),
    ("x + os.path", 6, "attribute access"),
    ("os.system('x')", 2, "attribute access"),
    ("(a).b", 3, "attribute access"),
    ("a.5", 1, "attribute access"),
    ("__import__('os')", 0, "'__'"),
    ("1 + __class__", 4, "'__'"),
    ("a[0]", 1, "subscripts"),
    ("[1, 2]", 0, "subscripts"),
    ("'x'", 0, "string literals"),
    ('a + "x"', 4, "string literals"),
    ("lambda: 1", 0, "reserved word"),
    ("lambda x: x", 0, "reserved word"),
    ("system('x')", 0, "unknown function 'system'"),
    ("1 + foo(a)", 4, "unknown function 'foo'"),
    ("a < b < c", 6, "chained comparisons"),
    ("a == b != c", 7, "chained comparisons"),
    ("a b", 2, "unexpected name 'b'"),
    ("1 2", 2, "unexpected number '2'"),
    ("(a + b", 6, "unexpected end of expression"),
    ("((a)", 4, "unexpected end of expression"),
    ("a + b)", 5, "unmatched ')'"),
    ("a)", 1, "unmatched ')'"),
    ("()", 1, "unexpected ')'"),
    ("a +", 3, "unexpected end of expression"),
    ("* a", 0, "unexpected '*'"),
    ("", 0, "empty expression"),
    ("   ", 0, "empty expression"),
    ("a; b", 1, "';'"),
    ("a = 1", 2, "'='"),
    ("a && b", 2, "'&&'"),
    ("a || b", 2, "'||'"),
    ("!a", 0, "'!'"),
    ("a % 2", 2, "'%'"),
    ("a // 2", 2, "'//'"),
    ("1(2)", 1, "only functions can be called"),
    ("(a)(1)", 3, "only functions can be called"),
    ("abs + 1", 0, "must be called"),
    ("max(a)", 0, "at least 2 arguments"),
    ("abs()", 0, "exactly 1 argument"),
    ("clip(a, 1)", 0, "exactly 3 arguments"),
    ("max(a, b,)", 9, "unexpected ')'"),
    ("max(a b)", 6, "unexpected name 'b'"),
    ("a > 1 and 1", 10, "must be boolean"),
    ("a and b > 1", 0, "must be boolean"),
    ("not a", 4, "must be boolean"),
    ("-(a > b)", 1, "must be numeric"),
    ("(a > b) + 1", 0, "must be numeric"),
    ("(a > b) == true", 0, "must be numeric"),
    ("where(a, 1, 2)", 6, "must be boolean"),
    ("where(a > 1, true, false)", 13, "must be numeric"),
    ("True", 0, "use 'true'"),
    ("None", 0, "reserved word"),
    ("a if b else c", 2, "reserved word"),
    ("a AND b", 2, "lower-case"),
    ("1x", 0, "malformed number"),
    ("1.2.3", 0, "malformed number"),
    ("1e", 0, "malformed number"),
    ("1e999", 0, "out of range"),
    ("a $ b", 2, "unexpected character"),
    ("é", 0, "unexpected character"),
    ("a @ b", 2, "unexpected character"),
    ("a\n+ b.c", 5, "attribute access"),
]


@pytest.mark.parametrize(("text", "position", "fragment"), REJECTED)
def test_rejected_constructs(text: str, position: int, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.position, err.text) == (position, text)
    assert fragment in str(err)
    assert f"at position {position}" in str(err)


def test_error_message_shows_caret() -> None:
    with pytest.raises(ExpressionError) as info:
        parse("1 + system('rm')")
    err = info.value
    assert err.reason == "unknown function 'system'"
    lines = str(err).splitlines()
    assert lines[0] == (
        "unknown function 'system' at position 4: allowed functions are "
        "abs, clip, exp, log, max, min, sign, sqrt, where"
    )
    assert lines[1] == "    1 + system('rm')"
    assert lines[2] == "    " + " " * 4 + "^"
    # long text: the caret line is windowed around the position
    text = "max(" + ", ".join(["a"] * 200) + ") c"
    with pytest.raises(ExpressionError) as info:
        parse(text)
    _, line, caret = str(info.value).splitlines()
    assert len(line) < 100 and line[len(caret) - 1] == "c"


def test_unknown_names_with_suggestions() -> None:
    metrics = ["sharpe_mid", "sharpe_long", "max_dd_long", "hit_rate_long", "ulcer_mid"]
    parse("sharpe_mid >= 0.6 and max_dd_long <= 0.25", names=metrics, boolean=True)
    with pytest.raises(ExpressionError) as info:
        parse("sharpe_mid >= 0.6 and max_dd_lng <= 0.25", names=metrics)
    assert info.value.position == 22
    assert "unknown name 'max_dd_lng'" in str(info.value) and "did you mean 'max_dd_long'" in str(info.value)
    with pytest.raises(ExpressionError, match="'sharpe_mid' or 'sharpe_long'") as info:
        parse("1 + sharpe_lid", names=metrics)
    assert info.value.position == 4
    with pytest.raises(ExpressionError, match="known names are hit_rate_long, max_dd_long") as info:
        parse("zzz + qqq", names=metrics)
    assert info.value.position == 0  # the leftmost unknown name
    with pytest.raises(ExpressionError, match="no names are available"):
        parse("x", names=[])
    # function names are not checked against names
    parse("max(sharpe_mid, 0)", names=metrics)


def test_boolean_flag() -> None:
    assert parse("a > 1", boolean=True).is_boolean
    assert not parse("a + 1", boolean=False).is_boolean
    with pytest.raises(ExpressionError, match="expected a boolean expression"):
        parse("a + 1", boolean=True)
    with pytest.raises(ExpressionError, match="expected a numeric expression"):
        parse("a > 1", boolean=False)


def test_non_string_input() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        parse(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse("a", names="a")


def test_limits() -> None:
    ok = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert parse(ok).canonical() == "a"
    with pytest.raises(ExpressionError, match="nested too deeply") as info:
        parse("(" + ok + ")")
    assert info.value.position == MAX_DEPTH
    # operator-tree depth: a chain of MAX_DEPTH operators is fine, one more is not
    chain = "+".join(["a"] * (MAX_DEPTH + 1))
    assert parse(parse(chain).canonical()).canonical() == parse(chain).canonical()
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse(chain + "+a")
    nested_calls = "abs(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert float(parse(nested_calls).evaluate({"a": -1.0})) == 1.0
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("-" * (MAX_DEPTH + 1) + "a")
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("2" + "^2" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="too long") as info:
        parse("a" * (MAX_LENGTH + 1))
    assert info.value.position == MAX_LENGTH
    parse("a" * MAX_LENGTH)


def test_source_uses_no_eval() -> None:
    source = Path(qe.__file__).read_text()
    assert not re.search(r"(?<![.\w])(eval|exec|compile)\s*\(", source)
    assert not re.search(r"^\s*(import ast|from ast)", source, re.MULTILINE)
    assert "dagster" not in source


# ---------------------------------------------------------------------------------------------- gates

METRICS = ["sharpe_mid", "max_dd_long", "hit_rate_long", "ulcer_mid", "n_trades_full"]


def test_gate_tree() -> None:
    gate = parse_gate(
        {
            "and": [
                "sharpe_mid >= 0.6",
                {"or": ["max_dd_long <= 0.25", "ulcer_mid < 0.1"]},
                {"not": "n_trades_full < 20"},
            ]
        },
        names=METRICS,
    )
    assert gate.op == "and" and len(gate.children) == 3
    assert gate.children[1].op == "or" and gate.children[2].op == "not"
    assert gate.names == frozenset({"sharpe_mid", "max_dd_long", "ulcer_mid", "n_trades_full"})
    assert [e.text for e in gate.leaves()] == [
        "sharpe_mid >= 0.6",
        "max_dd_long <= 0.25",
        "ulcer_mid < 0.1",
        "n_trades_full < 20",
    ]
    assert gate.canonical() == (
        "((sharpe_mid >= 0.6) and ((max_dd_long <= 0.25) or (ulcer_mid < 0.1))"
        " and (not (n_trades_full < 20)))"
    )
    env = {
        "sharpe_mid": np.array([0.7, 0.7, 0.5, 0.7]),
        "max_dd_long": np.array([0.3, 0.2, 0.2, 0.2]),
        "ulcer_mid": np.array([0.05, 0.5, 0.0, 0.0]),
        "n_trades_full": np.array([30, 30, 30, 10]),
    }
    result = gate.evaluate(env)
    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, [True, True, False, False])
    # the gate canonical form is itself a valid boolean expression with the same truth table
    np.testing.assert_array_equal(parse(gate.canonical()).evaluate(env), result)
    respaced = {
        "and": [
            "sharpe_mid>=.6",
            {"or": ["max_dd_long<=0.25", "(ulcer_mid)<0.1"]},
            {"not": "n_trades_full<20"},
        ]
    }
    assert parse_gate(respaced).canonical() == gate.canonical()


def test_gate_forms() -> None:
    leaf = parse_gate("a > 1")
    assert leaf.op == "expr" and leaf.expr is not None and leaf.children == ()
    implicit = parse_gate(["a > 1", "b > 1"])
    assert implicit.op == "and" and implicit.canonical() == "((a > 1) and (b > 1))"
    assert parse_gate({"not": ["a > 1", "b > 1"]}).canonical() == "(not ((a > 1) and (b > 1)))"
    np.testing.assert_array_equal(
        parse_gate({"or": ["a > 1", "b > 1"]}).evaluate({"a": np.array([0, 2, 0]), "b": np.array([0, 0, 2])}),
        [False, True, True],
    )
    assert parse_gate("true").evaluate({}).dtype == np.bool_
    with pytest.raises(ValueError):
        Gate("and", ())
    with pytest.raises(ValueError):
        Gate("expr", expr=parse("a + 1"))


@pytest.mark.parametrize(
    ("obj", "path", "fragment"),
    [
        ({"and": ["a > 1", "b + 1"]}, "gates.and[1]", "expected a boolean expression"),
        ({"and": ["a > 1", {"or": ["c > 1", "zz > 1"]}]}, "gates.and[1].or[1]", "unknown name 'zz'"),
        ({"and": []}, "gates.and", "non-empty list"),
        ({"or": "a > 1"}, "gates.or", "non-empty list"),
        ({"xor": ["a > 1"]}, "gates", "unknown gate key 'xor'"),
        ({"and": ["a > 1"], "or": ["b > 1"]}, "gates", "exactly one key"),
        ({}, "gates", "exactly one key"),
        ([], "gates", "must not be empty"),
        (["a > 1", 3], "gates[1]", "got int 3"),
        ({"not": None}, "gates.not", "got NoneType"),
        (True, "gates", "got bool"),
        ({"not": "a >"}, "gates.not", "unexpected end of expression at position 3"),
    ],
)
def test_gate_errors(obj: Any, path: str, fragment: str) -> None:
    with pytest.raises(ExpressionError) as info:
        parse_gate(obj, names=["a", "b", "c"])
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_gate_error_keeps_position_and_custom_path() -> None:
    with pytest.raises(ExpressionError) as info:
        parse_gate({"and": ["a > 1", "a >> 1"]}, path="stages.paper.gates")
    assert info.value.path == "stages.paper.gates.and[1]"
    assert (info.value.text, info.value.position) == ("a >> 1", 3)


def test_gate_depth_limit() -> None:
    obj: Any = "a > 1"
    for _ in range(MAX_DEPTH + 2):
        obj = {"not": obj}
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_gate(obj)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse_gate(cyclic)


# ------------------------------------------------------------------------------------------ fuzzing

FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
TOKENS = [
    "a", "b", "x_1", "_", "__x", "1", "2.5", ".5", "1e-3", "1e", "(", ")", ",", "+", "-", "*", "/", "^",
    "**", "<", "<=", ">", ">=", "==", "!=", "=", "!", "and", "or", "not", "true", "false", "abs", "min",
    "max", "log", "sqrt", "exp", "sign", "clip", "where", "foo", ".", "[", "]", "'", ";", "lambda",
    "import", " ", "\n",
]  # fmt: skip


def _check_any_text(text: str) -> None:
    try:
        expr = parse(text)
    except ExpressionError as err:
        assert err.position is not None and 0 <= err.position <= max(len(text), MAX_LENGTH)
        assert err.text == text
        assert str(err)
        return
    canonical = expr.canonical()
    if len(canonical) <= MAX_LENGTH:
        assert parse(canonical).canonical() == canonical
    env = {name: np.array([-1.0, 0.0, 2.0, NAN]) for name in expr.names}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = expr.evaluate(env)
    assert result.dtype == (np.bool_ if expr.is_boolean else np.float64)


@FUZZ
@given(st.text(max_size=80))
def test_fuzz_arbitrary_text(text: str) -> None:
    _check_any_text(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map("".join))
def test_fuzz_token_soup(text: str) -> None:
    _check_any_text(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=30).map(" ".join))
def test_fuzz_spaced_token_soup(text: str) -> None:
    _check_any_text(text)


# Random typed expression trees: tuples ("num", value, text, canonical), ("name", n), ("bool", b),
# ("neg", t), ("not", t), ("bin", op, left, right), ("call", fn, args).
NAMES = ("a", "b", "c", "x_1")
NUMBERS = [
    (0.0, "0", "0"), (1.0, "1", "1"), (2.0, "2", "2"), (3.0, "3", "3"), (0.5, "0.5", "0.5"),
    (0.5, ".5", "0.5"), (2.5, "2.50", "2.5"), (0.001, "1e-3", "0.001"), (100.0, "1E2", "100"),
    (10.0, "10.", "10"), (1.5, "1.5", "1.5"),
]  # fmt: skip
PREC = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7, "^": 8, "atom": 9}
CMP = ("<", "<=", ">", ">=", "==", "!=")
UNARY_FUNCS = ("abs", "log", "sqrt", "exp", "sign")


@st.composite
def num_tree(draw: st.DrawFn, depth: int) -> tuple:
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            return ("num", *draw(st.sampled_from(NUMBERS)))
        return ("name", draw(st.sampled_from(NAMES)))
    kind = draw(st.sampled_from(["neg", "bin", "bin", "call"]))
    if kind == "neg":
        return ("neg", draw(num_tree(depth - 1)))
    if kind == "bin":
        op = draw(st.sampled_from(["+", "-", "*", "/", "^"]))
        return ("bin", op, draw(num_tree(depth - 1)), draw(num_tree(depth - 1)))
    fn = draw(st.sampled_from([*UNARY_FUNCS, "min", "max", "clip", "where"]))
    if fn in UNARY_FUNCS:
        args = [draw(num_tree(depth - 1))]
    elif fn == "clip":
        args = [draw(num_tree(depth - 1)) for _ in range(3)]
    elif fn == "where":
        args = [draw(bool_tree(depth - 1)), draw(num_tree(depth - 1)), draw(num_tree(depth - 1))]
    else:
        args = draw(st.lists(num_tree(depth - 1), min_size=2, max_size=4))
    return ("call", fn, tuple(args))


@st.composite
def bool_tree(draw: st.DrawFn, depth: int) -> tuple:
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return ("bool", draw(st.booleans()))
    kind = draw(st.sampled_from(["cmp", "cmp", "not", "andor"]))
    if kind == "cmp":
        return ("bin", draw(st.sampled_from(CMP)), draw(num_tree(depth - 1)), draw(num_tree(depth - 1)))
    if kind == "not":
        return ("not", draw(bool_tree(depth - 1)))
    return (
        "bin",
        draw(st.sampled_from(["and", "or"])),
        draw(bool_tree(depth - 1)),
        draw(bool_tree(depth - 1)),
    )


def _prec(tree: tuple) -> int:
    if tree[0] in ("neg", "not"):
        return PREC[tree[0]]
    if tree[0] == "bin":
        return PREC["cmp"] if tree[1] in CMP else PREC[tree[1]]
    return PREC["atom"]


def render(tree: tuple, rnd: Any) -> str:
    """Text with minimal parentheses (plus random redundant ones, spacing and `**`)."""

    def sub(child: tuple, need_parens: bool) -> str:
        text = render(child, rnd)
        return f"({text})" if need_parens or rnd.random() < 0.1 else text

    def sp() -> str:
        return rnd.choice(["", " ", "  "])

    kind = tree[0]
    if kind == "num":
        return tree[2]
    if kind == "name":
        return tree[1]
    if kind == "bool":
        return "true" if tree[1] else "false"
    if kind == "neg":
        return "-" + sp() + sub(tree[1], _prec(tree[1]) < PREC["neg"])
    if kind == "not":
        return "not " + sub(tree[1], _prec(tree[1]) < PREC["not"])
    if kind == "call":
        return tree[1] + "(" + ("," + sp()).join(render(a, rnd) for a in tree[2]) + ")"
    op, left, right = tree[1], tree[2], tree[3]
    p = _prec(tree)
    if op == "^":
        lhs, rhs = sub(left, _prec(left) <= p), sub(right, _prec(right) < PREC["neg"])
        op = rnd.choice(["^", "**"])
    elif op in CMP:
        lhs, rhs = sub(left, _prec(left) <= p), sub(right, _prec(right) <= p)
    else:
        lhs, rhs = sub(left, _prec(left) < p), sub(right, _prec(right) <= p)
    if op in ("and", "or"):
        return f"{lhs} {op} {rhs}"
    return f"{lhs}{sp()}{op}{sp()}{rhs}"


def expected_canonical(tree: tuple) -> str:
    kind = tree[0]
    if kind == "num":
        return tree[3]
    if kind == "name":
        return tree[1]
    if kind == "bool":
        return "true" if tree[1] else "false"
    if kind == "neg":
        return f"(-{expected_canonical(tree[1])})"
    if kind == "not":
        return f"(not {expected_canonical(tree[1])})"
    if kind == "call":
        return f"{tree[1]}({', '.join(expected_canonical(a) for a in tree[2])})"
    return f"({expected_canonical(tree[2])} {tree[1]} {expected_canonical(tree[3])})"


def tree_names(tree: tuple) -> set[str]:
    kind = tree[0]
    if kind == "name":
        return {tree[1]}
    if kind in ("neg", "not"):
        return tree_names(tree[1])
    if kind == "bin":
        return tree_names(tree[2]) | tree_names(tree[3])
    if kind == "call":
        return set().union(*(tree_names(a) for a in tree[2]))
    return set()


REF_BINARY = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power,
    "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal,
    "!=": lambda x, y: (x != y) & ~np.isnan(x) & ~np.isnan(y),
    "and": np.logical_and, "or": np.logical_or,
}  # fmt: skip
REF_CALLS = {
    "abs": np.fabs, "log": np.log, "sqrt": np.sqrt, "exp": np.exp, "sign": np.sign,
    "min": lambda *xs: np.min(np.broadcast_arrays(*xs), axis=0),
    "max": lambda *xs: np.max(np.broadcast_arrays(*xs), axis=0),
    "clip": lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
    "where": np.where,
}  # fmt: skip


def reference(tree: tuple, env: dict[str, np.ndarray]) -> np.ndarray:
    kind = tree[0]
    if kind == "num":
        return np.float64(tree[1])
    if kind == "name":
        return env[tree[1]]
    if kind == "bool":
        return np.bool_(tree[1])
    if kind == "neg":
        return -reference(tree[1], env)
    if kind == "not":
        return ~reference(tree[1], env)
    if kind == "call":
        return REF_CALLS[tree[1]](*(reference(a, env) for a in tree[2]))
    return REF_BINARY[tree[1]](reference(tree[2], env), reference(tree[3], env))


VALUES = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0, NAN, INF, -INF])


@st.composite
def case(draw: st.DrawFn) -> tuple[tuple, str, dict[str, Any]]:
    tree = draw(st.one_of(num_tree(4), bool_tree(4)))
    text = render(tree, draw(st.randoms(use_true_random=False)))
    env: dict[str, Any] = {n: np.array(draw(st.lists(VALUES, min_size=6, max_size=6))) for n in NAMES[:3]}
    env["x_1"] = draw(VALUES)  # a scalar broadcast against the arrays
    return tree, text, env


@FUZZ
@given(case())
def test_fuzz_random_trees_match_reference(data: tuple[tuple, str, dict[str, Any]]) -> None:
    tree, text, env = data
    expr = parse(text, names=NAMES)
    assert expr.canonical() == expected_canonical(tree), text
    assert expr.names == tree_names(tree)
    is_bool = tree[0] in ("bool", "not") or (tree[0] == "bin" and tree[1] in (*CMP, "and", "or"))
    assert expr.is_boolean == is_bool
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = expr.evaluate(env)
    with np.errstate(all="ignore"):
        want = np.asarray(reference(tree, {k: np.asarray(v, dtype=np.float64) for k, v in env.items()}))
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    np.testing.assert_array_equal(got, want)  # treats NaN == NaN


@FUZZ
@given(case())
def test_fuzz_canonical_is_fixed_point(data: tuple[tuple, str, dict[str, Any]]) -> None:
    _, text, _ = data
    canonical = parse(text).canonical()
    assume(len(canonical) <= MAX_LENGTH)
    again = parse(canonical)
    assert again.canonical() == canonical
    assert parse(again.canonical()).canonical() == canonical
