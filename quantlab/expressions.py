"""A small, safe expression language for YAML scores and gates.

Strategy scores are numeric expressions over feature names (``"mom_20 - 0.5 * vol_20"``); world gates are
boolean expressions over metric names (``"sharpe_mid >= 0.6 and max_dd_long <= 0.25"``) combined into AND/OR
trees (`parse_gate`). Text is tokenized and parsed by hand (recursive descent); nothing here uses ``eval``,
``exec``, ``compile`` or the ``ast`` module, and only the whitelisted functions below can be called.

Grammar (EBNF; whitespace is space, tab, CR or LF)::

    expression = or_expr ;
    or_expr    = and_expr , { "or" , and_expr } ;
    and_expr   = not_expr , { "and" , not_expr } ;
    not_expr   = { "not" } , comparison ;
    comparison = additive , [ ( "<" | "<=" | ">" | ">=" | "==" | "!=" ) , additive ] ;  (* no chaining *)
    additive   = term , { ( "+" | "-" ) , term } ;
    term       = unary , { ( "*" | "/" ) , unary } ;
    unary      = { "-" | "+" } , power ;
    power      = primary , [ ( "^" | "**" ) , unary ] ;                               (* right-assoc *)
    primary    = number | "true" | "false" | name | call | "(" , expression , ")" ;
    call       = function , "(" , [ expression , { "," , expression } ] , ")" ;
    function   = "abs" | "clip" | "exp" | "log" | "max" | "min" | "sign" | "sqrt" | "where" ;
    name       = ( letter | "_" ) , { letter | digit | "_" } ;   (* ASCII; not "__*", keyword, function *)
    number     = ( digits , [ "." , [ digits ] ] | "." , digits ) , [ exponent ] ;
    exponent   = ( "e" | "E" ) , [ "+" | "-" ] , digits ;

So ``-2^2 == -4``, ``2^3^2 == 512``, ``2^-1 == 0.5``, ``not a < b`` is ``not (a < b)`` and ``a < b < c`` is
an error. Keywords (``and or not true false``) are lower-case; Python's other reserved words are rejected.

Types are checked at parse time: names and numbers are numeric; arithmetic, ``-`` and the functions take
numbers; comparisons take two numbers and give a boolean; ``and``/``or``/``not`` take booleans;
``where(cond, a, b)`` takes a boolean and two numbers. ``abs exp log sign sqrt`` take one argument,
``clip(x, lo, hi)`` three, ``min``/``max`` two or more (elementwise).

Evaluation (`Expr.evaluate`) is vectorized: every env value is converted to float64 and numpy broadcasting
applies; the result is always an ``np.ndarray`` (float64 for scores, bool for gates; 0-d for constants).

- Arithmetic follows IEEE/numpy with warnings suppressed: ``x/0`` is ``±inf`` (``0/0`` is NaN), ``log(0)`` is
  ``-inf``, ``log``/``sqrt`` of negatives and ``(-8)^(1/3)`` are NaN, overflow gives ``inf``.
- NaN propagates through arithmetic, ``min``/``max``/``clip`` (NaN in, NaN out) and ``sign``.
- Every comparison involving NaN is False -- including ``!=`` (so ``not (a == b)`` and ``a != b`` differ on
  NaN). ``where`` with a NaN-derived condition therefore takes the ``else`` branch.
- ``and``/``or``/``not`` are elementwise on bool arrays; both sides are always evaluated (no short-circuit).
- A name missing from env raises ``KeyError`` naming it; a non-numeric value raises ``TypeError``.

Limits: at most 2,000 characters and nesting depth 64 (parentheses/calls, and operator-tree depth, so a
chain like ``a + b + ...`` may have at most 65 terms). Any rejected input raises `ExpressionError` with the
0-based ``position``, the ``text`` and a caret display.

`Expr.canonical` is a fully parenthesized normal form (``(mom_20 - (0.5 * vol_20))``; ``**`` becomes ``^``,
unary ``+`` is dropped, integral numbers print without a decimal point) that parses back to itself -- as
long as it stays within the 2,000-character limit (full parenthesization can lengthen very long inputs).
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import reduce
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Expr",
    "ExpressionError",
    "Gate",
    "parse",
    "parse_gate",
]

MAX_LENGTH = 2000
MAX_DEPTH = 64

# the whitelist: name -> (min args, max args or None for unbounded); read-only
FUNCTIONS: Mapping[str, tuple[int, int | None]] = MappingProxyType(
    {
        "abs": (1, 1),
        "clip": (3, 3),
        "exp": (1, 1),
        "log": (1, 1),
        "max": (2, None),
        "min": (2, None),
        "sign": (1, 1),
        "sqrt": (1, 1),
        "where": (3, 3),
    }
)
_ALLOWED_FUNCTIONS = ", ".join(sorted(FUNCTIONS))
_KEYWORDS = frozenset({"and", "or", "not", "true", "false"})
_RESERVED = frozenset(keyword.kwlist) - _KEYWORDS
_COMPARISONS = frozenset({"<", "<=", ">", ">=", "==", "!="})
_NUM, _BOOL = "numeric", "boolean"


# --------------------------------------------------------------------------------------------- errors


class ExpressionError(ValueError):
    """An expression (or gate tree) was rejected.

    ``position`` is the 0-based character offset into ``text`` (None for structural gate errors),
    ``reason`` the short message, ``hint`` optional extra detail and ``path`` the gate-tree path.
    """

    def __init__(
        self,
        reason: str,
        text: str = "",
        position: int | None = None,
        *,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.text = text
        self.position = position
        self.hint = hint
        self.path = path

    def with_path(self, path: str) -> ExpressionError:
        """A copy located at gate-tree ``path``."""
        return ExpressionError(self.reason, self.text, self.position, hint=self.hint, path=path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_error, (self.reason, self.text, self.position, self.hint, self.path))

    def __str__(self) -> str:
        head = f"{self.path}: " if self.path else ""
        head += self.reason
        if self.position is not None:
            head += f" at position {self.position}"
        if self.hint:
            head += f": {self.hint}"
        if self.position is None or not self.text:
            return head
        line, col = _caret_line(self.text, self.position)
        return f"{head}\n    {line}\n    {' ' * col}^"


def _rebuild_error(
    reason: str, text: str, position: int | None, hint: str | None, path: str | None
) -> ExpressionError:
    return ExpressionError(reason, text, position, hint=hint, path=path)


def _caret_line(text: str, position: int, width: int = 80) -> tuple[str, int]:
    """The line of ``text`` holding ``position`` (windowed if long) and the caret column in it."""
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    line = text[start : len(text) if end < 0 else end]
    col = position - start
    if len(line) > width:
        lo = max(0, min(col - width // 2, len(line) - width))
        prefix = "..." if lo > 0 else ""
        suffix = "..." if lo + width < len(line) else ""
        line = prefix + line[lo : lo + width] + suffix
        col = col - lo + len(prefix)
    return "".join(c if c.isprintable() else "?" for c in line), col


# ------------------------------------------------------------------------------------------ tokenizer


class _Tok(NamedTuple):
    kind: str  # "num", "name", a keyword, an operator, "(", ")", ",", "eof" or "err"
    text: str
    pos: int
    error: ExpressionError | None = None


_NUMBER_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_IDENT_CHARS = _WORD_CHARS - {"."}
_OPERATORS = ("**", "<=", ">=", "==", "!=", "<", ">", "+", "-", "*", "/", "^", "(", ")", ",")
_BAD_CHARS = {
    "'": ("string literals are not allowed", None),
    '"': ("string literals are not allowed", None),
    "[": ("subscripts and lists are not allowed", None),
    ";": ("';' is not allowed", "an expression is a single expression"),
    ":": ("':' is not allowed", None),
    "=": ("assignment '=' is not allowed", "use '==' to compare"),
    "!": ("'!' is not allowed", "use 'not' or '!='"),
    "&": ("'&' is not allowed", "use 'and'"),
    "|": ("'|' is not allowed", "use 'or'"),
    "%": ("'%' is not allowed", "supported operators are + - * / ^ ** < <= > >= == != and or not"),
}
_RESERVED_HINTS = {
    "True": "use 'true'",
    "False": "use 'false'",
    "lambda": "lambdas are not allowed",
    "None": "there is no None; missing values are NaN",
}


def _tokenize(text: str) -> Iterator[_Tok]:
    """Yield tokens; a lexical error becomes a final "err" token, raised when the parser reaches it."""
    i, n = 0, len(text)

    def error(reason: str, pos: int, hint: str | None = None) -> _Tok:
        return _Tok("err", text[pos : pos + 1], pos, ExpressionError(reason, text, pos, hint=hint))

    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
            continue
        after_value = i > 0 and (text[i - 1] in _IDENT_CHARS or text[i - 1] in ")]")
        if c == "." and after_value:
            yield error("attribute access ('.') is not allowed", i)
            return
        if "0" <= c <= "9" or (c == "." and text[i + 1 : i + 2].isascii() and text[i + 1 : i + 2].isdigit()):
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            j = m.end()
            if j < n and text[j] in _WORD_CHARS:
                k = j
                while k < n and text[k] in _WORD_CHARS:
                    k += 1
                yield error(f"malformed number '{text[i:k]}'", i)
                return
            if not math.isfinite(float(m.group())):
                yield error(f"number '{m.group()}' is out of range", i)
                return
            yield _Tok("num", m.group(), i)
            i = j
            continue
        if c == "_" or ("a" <= c <= "z") or ("A" <= c <= "Z"):
            m = _NAME_RE.match(text, i)
            assert m is not None
            word = m.group()
            if word.startswith("__"):
                yield error(f"names beginning with '__' are not allowed ('{word}')", i)
                return
            if word in _RESERVED:
                yield error(f"'{word}' is a reserved word", i, _RESERVED_HINTS.get(word))
                return
            yield _Tok(word if word in _KEYWORDS else "name", word, i)
            i = m.end()
            continue
        if text.startswith("//", i):
            yield error("'//' is not allowed", i, "use '/'")
            return
        if text.startswith("&&", i) or text.startswith("||", i):
            yield error(f"'{text[i : i + 2]}' is not allowed", i, "use 'and' / 'or'")
            return
        for op in _OPERATORS:
            if text.startswith(op, i):
                yield _Tok("^" if op == "**" else op, op, i)
                i += len(op)
                break
        else:
            reason, hint = _BAD_CHARS.get(c, (f"unexpected character {c!r}", None))
            yield error(reason, i, hint)
            return
    yield _Tok("eof", "", n)


# ---------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class _Node:
    kind: Literal["num", "bool", "name", "unary", "binary", "call"]
    op: str  # operator, function name or variable name ("" for literals)
    args: tuple[_Node, ...]
    value: float | bool | None
    type: str  # _NUM or _BOOL
    pos: int  # position of the operator / name / literal (for errors)
    start: int  # position where the node's text starts
    depth: int  # operator-tree depth (leaves are 0)


def _leaf(
    kind: Literal["num", "bool", "name"], op: str, value: float | bool | None, type_: str, pos: int
) -> _Node:
    return _Node(kind, op, (), value, type_, pos, pos, 0)


def _fmt_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _canonical(node: _Node) -> str:
    if node.kind == "num":
        assert isinstance(node.value, float)
        return _fmt_number(node.value)
    if node.kind == "bool":
        return "true" if node.value else "false"
    if node.kind == "name":
        return node.op
    args = [_canonical(a) for a in node.args]
    if node.kind == "unary":
        return f"(-{args[0]})" if node.op == "-" else f"(not {args[0]})"
    if node.kind == "binary":
        return f"({args[0]} {node.op} {args[1]})"
    return f"{node.op}({', '.join(args)})"


def _walk(node: _Node) -> Iterator[_Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.args))


# ------------------------------------------------------------------------------------------- parser


class _Parser:
    """Recursive-descent parser; recursion only happens through parentheses/calls (depth-limited)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.tok = next(self.tokens)
        self.lookahead: _Tok | None = None
        self.nesting = 0

    # token stream ---------------------------------------------------------------------------------
    def cur(self) -> _Tok:
        if self.tok.error is not None:
            raise self.tok.error
        return self.tok

    def peek(self) -> _Tok:
        if self.lookahead is None:
            self.lookahead = next(self.tokens, self.tok)
        if self.lookahead.error is not None:
            raise self.lookahead.error
        return self.lookahead

    def advance(self) -> _Tok:
        tok = self.cur()
        if tok.kind != "eof":
            if self.lookahead is not None:
                self.tok, self.lookahead = self.lookahead, None
            else:
                self.tok = next(self.tokens, tok)
        return tok

    def error(self, reason: str, pos: int, hint: str | None = None) -> ExpressionError:
        return ExpressionError(reason, self.text, pos, hint=hint)

    def unexpected(self, tok: _Tok, expected: str) -> ExpressionError:
        if tok.kind == "eof":
            what = "unexpected end of expression"
        elif tok.kind == "name":
            what = f"unexpected name '{tok.text}'"
            if tok.text.lower() in ("and", "or", "not"):
                expected += f" (keywords are lower-case: '{tok.text.lower()}')"
        elif tok.kind == "num":
            what = f"unexpected number '{tok.text}'"
        else:
            what = f"unexpected '{tok.text}'"
        return self.error(what, tok.pos, f"expected {expected}")

    # node construction with type and depth checks -------------------------------------------------
    def node(
        self,
        kind: Literal["unary", "binary", "call"],
        op: str,
        args: tuple[_Node, ...],
        pos: int,
        start: int,
        type_: str,
    ) -> _Node:
        depth = 1 + max(a.depth for a in args)
        if depth > MAX_DEPTH:
            raise self.error("expression is nested too deeply", pos, f"the maximum depth is {MAX_DEPTH}")
        return _Node(kind, op, args, None, type_, pos, start, depth)

    def require(self, node: _Node, type_: str, what: str, hint: str | None = None) -> None:
        if node.type != type_:
            raise self.error(f"{what} must be {type_}, but it is {node.type}", node.start, hint)

    def unary(self, op: str, pos: int, operand: _Node) -> _Node:
        if op == "not":
            self.require(operand, _BOOL, "the operand of 'not'", "compare it first, e.g. 'not x > 0'")
            return self.node("unary", "not", (operand,), pos, pos, _BOOL)
        self.require(operand, _NUM, f"the operand of unary '{op}'")
        return operand if op == "+" else self.node("unary", "-", (operand,), pos, pos, _NUM)

    def binary(self, op: str, pos: int, left: _Node, right: _Node) -> _Node:
        if op in ("and", "or"):
            need, out, hint = _BOOL, _BOOL, "compare numbers first, e.g. 'x > 0'"
        elif op in _COMPARISONS:
            need, out, hint = _NUM, _BOOL, "combine conditions with 'and', 'or' and 'not'"
        else:
            need, out, hint = _NUM, _NUM, "use where(condition, a, b) to turn a condition into a number"
        self.require(left, need, f"the left operand of '{op}'", hint)
        self.require(right, need, f"the right operand of '{op}'", hint)
        return self.node("binary", op, (left, right), pos, left.start, out)

    def enter(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error("expression is nested too deeply", pos, f"the maximum depth is {MAX_DEPTH}")

    # grammar --------------------------------------------------------------------------------------
    def parse(self) -> _Node:
        if self.cur().kind == "eof":
            raise self.error("empty expression", 0)
        node = self.expression()
        tok = self.cur()
        if tok.kind == ")":
            raise self.error("unmatched ')'", tok.pos)
        if tok.kind != "eof":
            raise self.unexpected(tok, "an operator or the end of the expression")
        return node

    def expression(self) -> _Node:
        left = self.and_expr()
        while self.cur().kind == "or":
            tok = self.advance()
            left = self.binary("or", tok.pos, left, self.and_expr())
        return left

    def and_expr(self) -> _Node:
        left = self.not_expr()
        while self.cur().kind == "and":
            tok = self.advance()
            left = self.binary("and", tok.pos, left, self.not_expr())
        return left

    def not_expr(self) -> _Node:
        nots = []
        while self.cur().kind == "not":
            nots.append(self.advance().pos)
        node = self.comparison()
        for pos in reversed(nots):
            node = self.unary("not", pos, node)
        return node

    def comparison(self) -> _Node:
        left = self.additive()
        tok = self.cur()
        if tok.kind not in _COMPARISONS:
            return left
        self.advance()
        node = self.binary(tok.kind, tok.pos, left, self.additive())
        nxt = self.cur()
        if nxt.kind in _COMPARISONS:
            hint = "combine them with 'and', e.g. 'a < b and b < c'"
            raise self.error("chained comparisons are not allowed", nxt.pos, hint)
        return node

    def additive(self) -> _Node:
        left = self.term()
        while self.cur().kind in ("+", "-"):
            tok = self.advance()
            left = self.binary(tok.kind, tok.pos, left, self.term())
        return left

    def term(self) -> _Node:
        left = self.unary_expr()
        while self.cur().kind in ("*", "/"):
            tok = self.advance()
            left = self.binary(tok.kind, tok.pos, left, self.unary_expr())
        return left

    def unary_expr(self) -> _Node:
        # unary = {"-"|"+"} primary ["^" unary], parsed iteratively as (prefixes, base, caret) segments
        segments: list[tuple[list[_Tok], _Node, int]] = []
        while True:
            prefixes = []
            while self.cur().kind in ("-", "+"):
                prefixes.append(self.advance())
            base = self.primary()
            if self.cur().kind == "^":
                segments.append((prefixes, base, self.advance().pos))
                continue
            segments.append((prefixes, base, -1))
            break
        result: _Node | None = None
        for prefixes, base, caret in reversed(segments):
            node = base if result is None else self.binary("^", caret, base, result)
            for tok in reversed(prefixes):
                node = self.unary(tok.kind, tok.pos, node)
            result = node
        assert result is not None
        return result

    def primary(self) -> _Node:
        tok = self.cur()
        if tok.kind == "num":
            self.advance()
            node = _leaf("num", "", float(tok.text), _NUM, tok.pos)
        elif tok.kind in ("true", "false"):
            self.advance()
            node = _leaf("bool", "", tok.kind == "true", _BOOL, tok.pos)
        elif tok.kind == "name":
            is_call = self.peek().kind == "("
            if tok.text in FUNCTIONS:
                if not is_call:
                    raise self.error(
                        f"function '{tok.text}' must be called", tok.pos, f"e.g. '{tok.text}(...)'"
                    )
                node = self.call()
            elif is_call:
                raise self.error(
                    f"unknown function '{tok.text}'", tok.pos, f"allowed functions are {_ALLOWED_FUNCTIONS}"
                )
            else:
                self.advance()
                node = _leaf("name", tok.text, None, _NUM, tok.pos)
        elif tok.kind == "(":
            self.enter(tok.pos)
            self.advance()
            inner = self.expression()
            close = self.cur()
            if close.kind != ")":
                raise self.unexpected(close, f"')' to close the '(' at position {tok.pos}")
            self.advance()
            self.nesting -= 1
            node = replace(inner, start=tok.pos)
        else:
            raise self.unexpected(tok, "a number, a name, a function call or '('")
        nxt = self.cur()
        if nxt.kind == "(":
            raise self.error(
                "only functions can be called", nxt.pos, f"allowed functions are {_ALLOWED_FUNCTIONS}"
            )
        return node

    def call(self) -> _Node:
        name = self.advance()
        lparen = self.advance()
        self.enter(lparen.pos)
        args: list[_Node] = []
        if self.cur().kind != ")":
            while True:
                args.append(self.expression())
                tok = self.cur()
                if tok.kind == ",":
                    self.advance()
                    continue
                if tok.kind == ")":
                    break
                raise self.unexpected(tok, f"',' or ')' to close the call to '{name.text}'")
        self.advance()
        self.nesting -= 1
        lo, hi = FUNCTIONS[name.text]
        if len(args) < lo or (hi is not None and len(args) > hi):
            expected = f"exactly {lo}" if lo == hi else f"at least {lo}"
            plural = "" if lo == 1 else "s"
            reason = f"function '{name.text}' takes {expected} argument{plural}"
            raise self.error(reason, name.pos, f"got {len(args)}")
        for i, arg in enumerate(args):
            need = _BOOL if (name.text == "where" and i == 0) else _NUM
            self.require(arg, need, f"argument {i + 1} of '{name.text}'")
        return self.node("call", name.text, tuple(args), name.pos, name.pos, _NUM)


def _parse_text(text: str) -> _Node:
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long ({len(text)} characters)",
            text,
            MAX_LENGTH,
            hint=f"the maximum is {MAX_LENGTH}",
        )
    try:
        return _Parser(text).parse()
    except RecursionError:  # defensive: nesting is bounded well below the interpreter limit
        raise ExpressionError("expression is nested too deeply", text, 0) from None


# --------------------------------------------------------------------------------------- evaluation


def _not_equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.not_equal(a, b) & ~np.isnan(a) & ~np.isnan(b)


_BINARY: dict[str, Callable[..., Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "^": np.power,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": _not_equal,
    "and": np.logical_and,
    "or": np.logical_or,
}
_CALLS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "clip": lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
    "exp": np.exp,
    "log": np.log,
    "max": lambda *xs: reduce(np.maximum, xs),
    "min": lambda *xs: reduce(np.minimum, xs),
    "sign": np.sign,
    "sqrt": np.sqrt,
    "where": np.where,
}


def _evaluate(node: _Node, values: Mapping[str, np.ndarray]) -> Any:
    kind = node.kind
    if kind == "num":
        return np.float64(node.value)
    if kind == "bool":
        return np.bool_(node.value)
    if kind == "name":
        return values[node.op]
    args = [_evaluate(a, values) for a in node.args]
    if kind == "unary":
        return np.negative(args[0]) if node.op == "-" else np.logical_not(args[0])
    if kind == "binary":
        return _BINARY[node.op](*args)
    return _CALLS[node.op](*args)


def _env_values(names: frozenset[str], env: Mapping[str, Any], text: str) -> dict[str, np.ndarray]:
    values = {}
    for name in sorted(names):
        if name not in env:
            raise KeyError(f"name '{name}' used by expression {text!r} is missing from env")
        try:
            values[name] = np.asarray(env[name], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"value for name '{name}' in expression {text!r} is not numeric: {exc}") from None
    return values


# --------------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Expr:
    """A parsed, type-checked expression; construct with `parse` (or ``Expr(text)`` for no name check)."""

    text: str
    names: frozenset[str] = field(init=False)
    is_boolean: bool = field(init=False)
    _root: _Node = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        root = _parse_text(self.text)
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "names", frozenset(n.op for n in _walk(root) if n.kind == "name"))
        object.__setattr__(self, "is_boolean", root.type == _BOOL)

    def evaluate(self, env: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Vectorized evaluation over ``env`` (float64 for scores, bool for gates; broadcasting applies)."""
        values = _env_values(self.names, env, self.text)
        with np.errstate(all="ignore"):
            return np.asarray(_evaluate(self._root, values))

    def canonical(self) -> str:
        """Fully parenthesized normal form; stable across spacing/redundant parentheses, for hashing."""
        return _canonical(self._root)

    def __str__(self) -> str:
        return self.text


def _suggest(name: str, names: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    if close:
        quoted = [f"'{c}'" for c in close]
        listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        return f"did you mean {listed}?"
    if not names:
        return "no names are available here"
    known = sorted(names)
    more = f", ... ({len(known) - 12} more)" if len(known) > 12 else ""
    return "known names are " + ", ".join(known[:12]) + more


def parse(text: str, names: Collection[str] | None = None, *, boolean: bool | None = None) -> Expr:
    """Parse ``text``; with ``names``, every identifier must be one of them; ``boolean`` forces the type.

    Raises `ExpressionError` (position, text, readable reason) on any syntax, name or type problem.
    """
    expr = Expr(text)
    if names is not None:
        if isinstance(names, str):
            raise TypeError("names must be a collection of strings, not a string")
        allowed = frozenset(names)
        for node in sorted((n for n in _walk(expr._root) if n.kind == "name"), key=lambda n: n.pos):
            if node.op not in allowed:
                hint = _suggest(node.op, allowed)
                raise ExpressionError(f"unknown name '{node.op}'", text, node.pos, hint=hint)
    if boolean is not None and expr.is_boolean != boolean:
        want, got = (_BOOL, _NUM) if boolean else (_NUM, _BOOL)
        role = "a condition such as 'x >= 0.5'" if boolean else "a score"
        raise ExpressionError(f"expected a {want} expression ({role}), got a {got} one", text, 0)
    return expr


GateOp = Literal["and", "or", "not", "expr"]


@dataclass(frozen=True)
class Gate:
    """Gate-tree node: ``and``/``or`` over children, ``not`` of one child, or a boolean ``expr`` leaf."""

    op: GateOp
    children: tuple[Gate, ...] = ()
    expr: Expr | None = None
    names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", tuple(self.children))
        if self.op == "expr":
            if self.expr is None or self.children or not self.expr.is_boolean:
                raise ValueError("an 'expr' gate needs a boolean expr and no children")
            names = self.expr.names
        elif self.op in ("and", "or", "not"):
            if self.expr is not None or not self.children or (self.op == "not" and len(self.children) != 1):
                need = "exactly one child" if self.op == "not" else "at least one child"
                raise ValueError(f"a '{self.op}' gate needs {need} and no expr")
            names = frozenset().union(*(c.names for c in self.children))
        else:
            raise ValueError(f"unknown gate op {self.op!r}")
        object.__setattr__(self, "names", names)

    def evaluate(self, env: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """Elementwise truth of the gate over ``env`` (bool array; broadcasting applies)."""
        if self.op == "expr":
            assert self.expr is not None
            return self.expr.evaluate(env)
        results = [c.evaluate(env) for c in self.children]
        if self.op == "not":
            return np.asarray(np.logical_not(results[0]))
        return np.asarray(reduce(np.logical_and if self.op == "and" else np.logical_or, results))

    def leaves(self) -> list[Expr]:
        """The expression leaves, left to right."""
        if self.op == "expr":
            assert self.expr is not None
            return [self.expr]
        return [leaf for c in self.children for leaf in c.leaves()]

    def canonical(self) -> str:
        """Normal form: leaves in canonical form, ``(A and B ...)``, ``(A or B ...)``, ``(not A)``."""
        if self.op == "expr":
            assert self.expr is not None
            return self.expr.canonical()
        if self.op == "not":
            return f"(not {self.children[0].canonical()})"
        return "(" + f" {self.op} ".join(c.canonical() for c in self.children) + ")"


def parse_gate(
    obj: str | Mapping[str, Any] | list[Any], names: Collection[str] | None = None, *, path: str = "gates"
) -> Gate:
    """Parse a YAML gate: a boolean expression string, ``{and: [...]}``, ``{or: [...]}``, ``{not: ...}``
    or a list (implicit ``and``). Errors carry the tree ``path`` (e.g. ``gates.and[1]``)."""
    if isinstance(names, str):
        raise TypeError("names must be a collection of strings, not a string")
    allowed = None if names is None else frozenset(names)
    return _parse_gate(obj, allowed, path, 0)


def _parse_gate(obj: Any, names: frozenset[str] | None, path: str, depth: int) -> Gate:
    if depth > MAX_DEPTH:
        hint = f"the maximum depth is {MAX_DEPTH}"
        raise ExpressionError("gate tree is nested too deeply", path=path, hint=hint)
    if isinstance(obj, str):
        try:
            return Gate("expr", expr=parse(obj, names, boolean=True))
        except ExpressionError as exc:
            raise exc.with_path(path) from None
    if isinstance(obj, Mapping):
        if len(obj) != 1:
            keys = ", ".join(repr(k) for k in obj) or "none"
            hint = f"'and', 'or' or 'not'; got {keys}"
            raise ExpressionError("a gate mapping must have exactly one key", path=path, hint=hint)
        ((key, value),) = obj.items()
        if key in ("and", "or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise ExpressionError(
                    f"'{key}' needs a non-empty list of sub-gates",
                    path=f"{path}.{key}",
                    hint=f"got {_describe(value)}",
                )
            children = tuple(
                _parse_gate(v, names, f"{path}.{key}[{i}]", depth + 1) for i, v in enumerate(value)
            )
            return Gate(key, children)
        if key == "not":
            return Gate("not", (_parse_gate(value, names, f"{path}.not", depth + 1),))
        raise ExpressionError(f"unknown gate key {key!r}", path=path, hint="expected 'and', 'or' or 'not'")
    if isinstance(obj, (list, tuple)):
        if not obj:
            raise ExpressionError("a gate list must not be empty", path=path)
        return Gate("and", tuple(_parse_gate(v, names, f"{path}[{i}]", depth + 1) for i, v in enumerate(obj)))
    raise ExpressionError(
        "a gate must be a boolean expression string, a mapping with one key 'and'/'or'/'not', or a list",
        path=path,
        hint=f"got {_describe(obj)}",
    )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
