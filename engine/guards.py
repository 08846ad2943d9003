"""Guards: a small, safe expression language for the conditions that route cases.

Theory of operation
===================

Why it exists.  A workflow says where a case goes next with guards such as
``deal_acv > 250000 or discount_percent > 0.15``.  Guard text is written by
users (in a spec file, in a UI), so it is untrusted and must never reach
``eval``, ``exec``, ``compile`` or anything else that can run Python.  This
module is the whole language, kept deliberately small: literals, reads of
fields from mappings, arithmetic, comparisons, boolean logic and a fixed list
of pure functions.  It has no attribute access, no indexing into objects, no
calls outside the whitelist, no loops and no assignment: a guard can read the
case's data and compute a value, and nothing else.  Limits on length and
nesting keep hostile text from exhausting memory or the stack.

Parse once, evaluate many times.  ``compile_guard`` runs when a workflow is
registered:

1. a hand-written tokenizer turns the text into tokens carrying their 0-based
   offsets, for error messages;
2. a Pratt (precedence-climbing) parser builds a small syntax tree, flattening
   chains such as ``a and b and c`` or ``a + b - c`` into one node;
3. a compiler turns each node into a closure ``ev(data, local)``.  Constant
   sub-expressions are evaluated once, here; the common shape
   ``name <op> constant`` gets a closure that reads the name itself; plain names
   skip the dotted-path walk.

The resulting `Guard` runs on the hot path, where evaluating it is a few nested
function calls: no tree walk, no dispatch on node types, no re-parsing.

Semantics in brief
------------------
* A name is looked up in ``local`` first (when given), then in ``data``; a
  dotted name ``a.b.c`` walks nested mappings (only the first part is
  shadowed by ``local``).  A missing key at any level, or a step into
  something that is not a mapping, raises `MissingField` with the full dotted
  name.
* ``and``/``or`` short-circuit and always return a bool; ``not`` returns a bool.
* Comparisons do not chain (``a < b < c`` is a syntax error).  ``==``/``!=``
  accept any types; ordering, arithmetic and functions follow Python's rules
  for numbers (int, float and bool mix), strings and lists, and refuse
  everything else with `GuardTypeError` (Python's own TypeError,
  ZeroDivisionError or OverflowError never escape).  ``*`` and ``%`` take
  numbers only, so a guard cannot build a huge string or list.
* A constant sub-expression that fails (``1/0``) is left for evaluation time,
  so it raises only if it is actually reached.
* Values a guard returns may be shared with its constants (a list literal is
  built once): treat results as read-only.

Everything raised here is a `GuardError`: `GuardSyntaxError` from
`compile_guard`, `MissingField` or `GuardTypeError` from evaluation.
"""

from __future__ import annotations

import functools
import math
import operator
import re
import string
import sys
from collections.abc import Callable, Mapping
from numbers import Number
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "Guard",
    "GuardError",
    "GuardSyntaxError",
    "GuardTypeError",
    "MissingField",
    "compile_guard",
]


# --------------------------------------------------------------------------- errors


class GuardError(Exception):
    """Base class of every error raised by guards."""


class GuardSyntaxError(GuardError):
    """The text is not a valid guard; raised by `compile_guard`.

    ``position`` is the 0-based offset of the problem in ``text``; ``found``
    says what was there (``"unexpected ')'"``) and ``problem`` what was wrong.
    """

    def __init__(self, text: str, position: int, problem: str, found: str = "syntax error") -> None:
        super().__init__(text, position, problem, found)
        self.text = text
        self.position = position
        self.problem = problem
        self.found = found

    def __str__(self) -> str:
        return f"{self.found} at {self.position}: {self.problem}"


class MissingField(GuardError):
    """A name the guard reads is absent; ``field`` is the full dotted name."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field

    def __str__(self) -> str:
        return f"missing field {self.field!r}"


class GuardTypeError(GuardError):
    """An operation got values it cannot work on (``"a" < 1``, ``null + 1``, ``1/0``).

    ``position`` is the offset of the operator or function in the guard text.
    """

    def __init__(self, problem: str, position: int | None = None) -> None:
        super().__init__(problem, position)
        self.problem = problem
        self.position = position

    def __str__(self) -> str:
        if self.position is None:
            return self.problem
        return f"{self.problem} (at {self.position})"


# --------------------------------------------------------------------------- the guard

# Every compiled node is a closure ev(data, local=None) -> value.
Evaluator = Callable[..., Any]


class Guard(functools.partial):
    """A compiled guard; build it with `compile_guard`, then call it as often as needed.

    ``guard(data, local=None)`` evaluates the guard, looking names up in ``local``
    first and then in ``data``, and returns the value; ``guard.test(...)`` returns its
    truth.  ``text`` is the source and ``fields`` the dotted names it reads.

    Guard is a `functools.partial` around the compiled root closure so that calling
    it is a C-level call straight into that closure: a Python ``__call__`` costs an
    extra frame, about a quarter of a typical guard's time.  Guards are immutable:
    copying returns the same object and pickling recompiles the text.
    """

    __slots__ = ("fields", "text")

    text: str
    fields: frozenset[str]

    def __new__(cls, text: str, fields: frozenset[str], ev: Evaluator) -> Guard:
        self = super().__new__(cls, ev)
        self.text = text
        self.fields = fields
        return self

    def test(self, data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> bool:
        """Evaluate and return the truth of the result."""
        return True if self.func(data, local) else False  # noqa: SIM210 - faster than bool()

    def __repr__(self) -> str:
        return f"Guard({self.text!r})"

    def __copy__(self) -> Guard:
        return self

    def __deepcopy__(self, memo: Any) -> Guard:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return _recompile, (self.text,)


def _recompile(text: str) -> Guard:
    """Unpickle a guard: the text compiled once already, so only lift the limits."""
    return compile_guard(text, max_length=len(text), max_depth=sys.getrecursionlimit())


def compile_guard(text: str, *, max_length: int = 2000, max_depth: int = 64) -> Guard:
    """Parse and compile ``text`` once; raise `GuardSyntaxError` if it is not a valid guard.

    ``max_length`` bounds the text in characters; ``max_depth`` bounds nesting:
    parentheses, list brackets, function calls and prefix operators (``-``, ``+``,
    ``not``) each add a level.  Values far above the default may run into
    Python's recursion limit.
    """
    if not isinstance(text, str):
        raise TypeError(f"guard text must be a str, not {type(text).__name__}")
    if max_length < 0 or max_depth < 0:
        raise ValueError("max_length and max_depth must not be negative")
    if len(text) > max_length:
        raise GuardSyntaxError(
            text,
            max_length,
            f"the guard is {len(text)} characters long; the limit is {max_length}",
            "guard too long",
        )
    parser = _Parser(text, _tokenize(text), max_depth)
    try:
        ev = parser.parse().emit()[0]
    except RecursionError:
        raise GuardSyntaxError(
            text, 0, "the guard is nested too deeply to compile", "nesting too deep"
        ) from None
    return Guard(text, frozenset(parser.fields), ev)


# --------------------------------------------------------------------------- tokenizer

_NUM: Final = "number"
_STR: Final = "string"
_NAME: Final = "name"
_OP: Final = "op"
_END: Final = "end"

# kind, value, start offset, end offset
_Token = tuple[str, Any, int, int]

_IDENT_START: Final = frozenset(string.ascii_letters + "_")
_IDENT_CHAR: Final = _IDENT_START | frozenset(string.digits)
_DIGITS: Final = frozenset(string.digits)
_WHITESPACE: Final = frozenset(" \t\r\n")
_TWO_CHAR_OPS: Final = frozenset({"==", "!=", "<=", ">="})
_ONE_CHAR_OPS: Final = frozenset("()[],.+-*/%<>")
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_NUMBER_RE: Final = re.compile(
    r"[0-9](?:_?[0-9])*(?:\.[0-9](?:_?[0-9])*)?(?:[eE][+-]?[0-9](?:_?[0-9])*)?"
)
_CHAR_HINTS: Final = {
    "=": "use '==' to compare",
    "!": "use 'not' or '!='",
    "&": "use 'and'",
    "|": "use 'or'",
}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif c in _IDENT_START:
            j = i + 1
            while j < n and text[j] in _IDENT_CHAR:
                j += 1
            tokens.append((_NAME, text[i:j], i, j))
            i = j
        elif c in _DIGITS:
            i = _scan_number(text, i, tokens)
        elif c == '"' or c == "'":
            i = _scan_string(text, i, tokens)
        elif text[i : i + 2] in _TWO_CHAR_OPS:
            tokens.append((_OP, text[i : i + 2], i, i + 2))
            i += 2
        elif c in _ONE_CHAR_OPS:
            tokens.append((_OP, c, i, i + 1))
            i += 1
        else:
            raise GuardSyntaxError(
                text,
                i,
                _CHAR_HINTS.get(c, "this character is not part of the guard language"),
                f"unexpected character {c!r}",
            )
    tokens.append((_END, None, n, n))
    return tokens


def _scan_number(text: str, i: int, tokens: list[_Token]) -> int:
    n = len(text)
    m = _NUMBER_RE.match(text, i)
    assert m is not None  # text[i] is a digit
    j = m.end()
    if j < n and (text[j] in _IDENT_CHAR or text[j] == "."):
        k = j
        while k < n and (text[k] in _IDENT_CHAR or text[k] == "."):
            k += 1
        raise GuardSyntaxError(
            text,
            i,
            "numbers look like 42, 2.5, 1e6 or 250_000",
            f"invalid number {text[i:k]!r}",
        )
    lexeme = text[i:j].replace("_", "")
    value: int | float
    try:
        if "." in lexeme or "e" in lexeme or "E" in lexeme:
            value = float(lexeme)
            if math.isinf(value):
                raise ValueError(lexeme)
        else:
            value = int(lexeme)
    except ValueError:
        raise GuardSyntaxError(
            text, i, "the number is too large", f"invalid number {text[i:j]!r}"
        ) from None
    tokens.append((_NUM, value, i, j))
    return j


def _scan_string(text: str, i: int, tokens: list[_Token]) -> int:
    n = len(text)
    quote = text[i]
    parts: list[str] = []
    j = i + 1
    while j < n:
        c = text[j]
        if c == quote:
            tokens.append((_STR, "".join(parts), i, j + 1))
            return j + 1
        if c == "\\":
            if j + 1 >= n:
                break
            escaped = _ESCAPES.get(text[j + 1])
            if escaped is None:
                raise GuardSyntaxError(
                    text,
                    j,
                    "the escapes are \\\\ \\' \\\" \\n and \\t",
                    f"unknown escape {text[j : j + 2]!r}",
                )
            parts.append(escaped)
            j += 2
        else:
            parts.append(c)
            j += 1
    raise GuardSyntaxError(
        text, i, f"the string has no closing {quote} before the end", "unterminated string"
    )


# --------------------------------------------------------------------------- parser

_BP_OR: Final = 1
_BP_AND: Final = 2
_BP_NOT: Final = 3
_BP_CMP: Final = 4
_BP_ADD: Final = 5
_BP_MUL: Final = 6
_BP_UNARY: Final = 7

_INFIX_BP: Final = {
    "or": _BP_OR,
    "and": _BP_AND,
    "==": _BP_CMP,
    "!=": _BP_CMP,
    "<": _BP_CMP,
    "<=": _BP_CMP,
    ">": _BP_CMP,
    ">=": _BP_CMP,
    "in": _BP_CMP,
    "+": _BP_ADD,
    "-": _BP_ADD,
    "*": _BP_MUL,
    "/": _BP_MUL,
    "%": _BP_MUL,
}
_WORD_OPERATORS: Final = frozenset({"and", "or", "in"})
_LITERALS: Final = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}
_KEYWORDS: Final = frozenset({"and", "or", "not", "in"})


class _Parser:
    __slots__ = ("depth", "fields", "i", "max_depth", "text", "toks")

    def __init__(self, text: str, toks: list[_Token], max_depth: int) -> None:
        self.text = text
        self.toks = toks
        self.i = 0
        self.depth = 0
        self.max_depth = max_depth
        self.fields: set[str] = set()

    # -- helpers

    def error(self, tok: _Token, problem: str) -> GuardSyntaxError:
        if tok[0] == _END:
            found = "unexpected end of guard"
        else:
            s = self.text[tok[2] : tok[3]]
            if len(s) > 30:
                s = s[:27] + "..."
            found = f"unexpected {s!r}"
        return GuardSyntaxError(self.text, tok[2], problem, found)

    def at_op(self, value: str) -> bool:
        tok = self.toks[self.i]
        return tok[0] == _OP and tok[1] == value

    def expect(self, value: str, problem: str) -> None:
        if not self.at_op(value):
            raise self.error(self.toks[self.i], problem)
        self.i += 1

    def enter(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise GuardSyntaxError(
                self.text,
                tok[2],
                f"more than {self.max_depth} nested levels (max_depth)",
                "nesting too deep",
            )

    # -- grammar

    def parse(self) -> _Node:
        if self.toks[0][0] == _END:
            raise GuardSyntaxError(self.text, 0, "a guard needs an expression", "empty guard")
        node = self.expr(0)
        tok = self.toks[self.i]
        if tok[0] != _END:
            raise self.error(tok, "expected an operator or the end of the guard")
        return node

    def infix(self) -> tuple[str, int, int] | None:
        """The infix operator at the cursor: (operator, binding power, tokens it spans)."""
        kind, val = self.toks[self.i][:2]
        if kind == _OP:
            bp = _INFIX_BP.get(val)
            return None if bp is None else (val, bp, 1)
        if kind == _NAME:
            if val in _WORD_OPERATORS:
                return val, _INFIX_BP[val], 1
            if val == "not":
                nxt = self.toks[self.i + 1]
                if nxt[0] == _NAME and nxt[1] == "in":
                    return "not in", _BP_CMP, 2
        return None

    def expr(self, min_bp: int) -> _Node:
        left = self.prefix(min_bp)
        last_was_comparison = False
        while True:
            found = self.infix()
            if found is None:
                break
            op, bp, width = found
            if bp <= min_bp:
                break
            tok = self.toks[self.i]
            if bp == _BP_CMP and last_was_comparison:
                raise self.error(
                    tok, "comparisons cannot be chained; write 'a < b and b < c' instead"
                )
            self.i += width
            right = self.expr(bp)
            pos = tok[2]
            if bp == _BP_CMP:
                left = _Compare(pos, op, left, right)
                last_was_comparison = True
                continue
            last_was_comparison = False
            if bp in (_BP_OR, _BP_AND):
                if isinstance(left, _BoolChain) and left.op == op:
                    left.operands.append(right)
                else:
                    left = _BoolChain(pos, op, [left, right])
            elif isinstance(left, _Arith) and left.level == bp:
                left.rest.append((op, pos, right))
            else:
                left = _Arith(pos, bp, left, [(op, pos, right)])
        return left

    def prefix(self, min_bp: int) -> _Node:
        tok = self.toks[self.i]
        kind, val, pos = tok[0], tok[1], tok[2]
        if kind == _OP and (val == "-" or val == "+"):
            self.enter(tok)
            self.i += 1
            operand = self.expr(_BP_UNARY)
            self.depth -= 1
            return _Unary(pos, val, operand)
        if kind == _NAME and val == "not":
            if min_bp > _BP_NOT:
                raise self.error(tok, "put 'not ...' in parentheses here")
            self.enter(tok)
            self.i += 1
            operand = self.expr(_BP_NOT)
            self.depth -= 1
            return _Not(pos, operand)
        return self.primary()

    def primary(self) -> _Node:
        tok = self.toks[self.i]
        kind, val, pos = tok[0], tok[1], tok[2]
        if kind in (_NUM, _STR):
            self.i += 1
            return _Const(pos, val)
        if kind == _NAME:
            if val in _LITERALS:
                self.i += 1
                return _Const(pos, _LITERALS[val])
            if val not in _KEYWORDS:
                return self.name_or_call()
        elif kind == _OP:
            if val == "(":
                self.enter(tok)
                self.i += 1
                node = self.expr(0)
                self.expect(")", f"expected ')' to close the '(' at {pos}")
                self.depth -= 1
                return node
            if val == "[":
                self.enter(tok)
                self.i += 1
                items = self.sequence("]", f"expected ',' or ']' to close the '[' at {pos}")
                self.depth -= 1
                return _List(pos, items)
        raise self.error(tok, "expected an expression")

    def sequence(self, close: str, problem: str) -> list[_Node]:
        """Comma-separated expressions up to ``close`` (consumed); a trailing comma is fine."""
        items: list[_Node] = []
        while not self.at_op(close):
            items.append(self.expr(0))
            if not self.at_op(","):
                break
            self.i += 1
        self.expect(close, problem)
        return items

    def name_or_call(self) -> _Node:
        tok = self.toks[self.i]
        pos = tok[2]
        parts = [tok[1]]
        self.i += 1
        while self.at_op("."):
            self.i += 1
            part = self.toks[self.i]
            if part[0] != _NAME:
                raise self.error(part, "expected a field name after '.'")
            parts.append(part[1])
            self.i += 1
        dotted = ".".join(parts)
        if self.at_op("("):
            spec = _FUNCTIONS.get(dotted)
            if spec is None:
                raise GuardSyntaxError(
                    self.text,
                    pos,
                    "the functions are " + ", ".join(sorted(_FUNCTIONS)),
                    f"unknown function {dotted!r}",
                )
            open_tok = self.toks[self.i]
            self.enter(open_tok)
            self.i += 1
            args = self.sequence(")", f"expected ',' or ')' to close the call at {open_tok[2]}")
            self.depth -= 1
            low, high, _ = spec
            if len(args) < low or (high is not None and len(args) > high):
                if high is None:
                    wanted = f"at least {low} argument{'s' if low != 1 else ''}"
                elif low == high:
                    wanted = f"exactly {low} argument{'s' if low != 1 else ''}"
                else:  # pragma: no cover - no such function today
                    wanted = f"{low} to {high} arguments"
                raise GuardSyntaxError(
                    self.text,
                    pos,
                    f"{dotted}() takes {wanted}, got {len(args)}",
                    "wrong number of arguments",
                )
            return _Call(pos, dotted, args)
        self.fields.add(dotted)
        return _Name(pos, tuple(parts), dotted)


# --------------------------------------------------------------------------- evaluation helpers

# Marks "not a constant" in (closure, constant) pairs.
_NOT_CONST: Final = object()
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
# What Python raises for bad operands; converted to GuardTypeError.
_EVAL_ERRORS: Final = (TypeError, ArithmeticError)
_NUMERIC_TYPES: Final = frozenset({int, float, bool})
_ORDERINGS: Final = frozenset({"<", "<=", ">", ">="})

_Compiled = tuple[Evaluator, Any]


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, Mapping):
        return "mapping"
    return type(v).__name__


def _is_number(v: Any) -> bool:
    return v.__class__ in _NUMERIC_TYPES or isinstance(v, Number)


def _binary_error(sym: str, pos: int, a: Any, b: Any, exc: BaseException) -> GuardTypeError:
    if isinstance(exc, ZeroDivisionError):
        problem = f"division by zero in '{sym}'"
    elif isinstance(exc, OverflowError):
        problem = f"number too large in '{sym}'"
    elif sym in _ORDERINGS:
        problem = f"cannot compare {_type_name(a)} with {_type_name(b)} using '{sym}'"
    elif sym == "in" or sym == "not in":
        problem = (
            f"cannot test {_type_name(a)} '{sym}' {_type_name(b)}: the right side must be a "
            "list or mapping, or a string when the left side is a string"
        )
    else:
        problem = f"unsupported operand types for '{sym}': {_type_name(a)} and {_type_name(b)}"
    return GuardTypeError(problem, pos)


def _constant(value: Any) -> Evaluator:
    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        return value

    return ev


def _fold(ev: Evaluator) -> _Compiled:
    """Evaluate a closure whose inputs are all constant; keep it if it fails."""
    try:
        value = ev(_EMPTY, None)
    except GuardError:
        return ev, _NOT_CONST  # raise when (and only if) it is reached
    return _constant(value), value


def _mul(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a * b
    raise TypeError("'*' takes numbers only")


def _mod(a: Any, b: Any) -> Any:
    if _is_number(a) and _is_number(b):
        return a % b
    raise TypeError("'%' takes numbers only")


def _in(a: Any, b: Any) -> bool:
    return a in b


def _not_in(a: Any, b: Any) -> bool:
    return a not in b


_BINARY_FUNCS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": _in,
    "not in": _not_in,
    "+": operator.add,
    "-": operator.sub,
    "*": _mul,
    "/": operator.truediv,
    "%": _mod,
}


# --------------------------------------------------------------------------- syntax tree


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos

    def emit(self) -> _Compiled:  # pragma: no cover - abstract
        raise NotImplementedError


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: Any) -> None:
        super().__init__(pos)
        self.value = value

    def emit(self) -> _Compiled:
        return _constant(self.value), self.value


class _Name(_Node):
    __slots__ = ("dotted", "parts")

    def __init__(self, pos: int, parts: tuple[str, ...], dotted: str) -> None:
        super().__init__(pos)
        self.parts = parts
        self.dotted = dotted

    def emit(self) -> _Compiled:
        if len(self.parts) == 1:
            return _simple_name(self.dotted), _NOT_CONST
        head, rest, dotted = self.parts[0], self.parts[1:], self.dotted

        def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            if local and head in local:
                cur = local[head]
            else:
                try:
                    cur = data[head]
                except KeyError:
                    raise MissingField(dotted) from None
            for key in rest:
                if cur.__class__ is not dict and not isinstance(cur, Mapping):
                    raise MissingField(dotted)
                try:
                    cur = cur[key]
                except KeyError:
                    raise MissingField(dotted) from None
            return cur

        return ev, _NOT_CONST


def _simple_name(name: str) -> Evaluator:
    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        if local and name in local:
            return local[name]
        try:
            return data[name]
        except KeyError:
            raise MissingField(name) from None

    return ev


class _List(_Node):
    __slots__ = ("items",)

    def __init__(self, pos: int, items: list[_Node]) -> None:
        super().__init__(pos)
        self.items = items

    def emit(self) -> _Compiled:
        compiled = [item.emit() for item in self.items]
        if all(c is not _NOT_CONST for _, c in compiled):
            value = [c for _, c in compiled]
            return _constant(value), value
        fs = tuple(f for f, _ in compiled)

        def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            return [f(data, local) for f in fs]

        return ev, _NOT_CONST


class _Unary(_Node):
    __slots__ = ("op", "operand")

    def __init__(self, pos: int, op: str, operand: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.operand = operand

    def emit(self) -> _Compiled:
        f, c = self.operand.emit()
        fn = operator.neg if self.op == "-" else operator.pos
        sym, pos = self.op, self.pos

        def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            v = f(data, local)
            try:
                return fn(v)
            except _EVAL_ERRORS:
                raise GuardTypeError(
                    f"unary '{sym}' needs a number, got {_type_name(v)}", pos
                ) from None

        return _fold(ev) if c is not _NOT_CONST else (ev, _NOT_CONST)


class _Not(_Node):
    __slots__ = ("operand",)

    def __init__(self, pos: int, operand: _Node) -> None:
        super().__init__(pos)
        self.operand = operand

    def emit(self) -> _Compiled:
        f, c = self.operand.emit()
        if c is not _NOT_CONST:
            return _constant(not c), not c

        def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            return not f(data, local)

        return ev, _NOT_CONST


class _BoolChain(_Node):
    __slots__ = ("op", "operands")

    def __init__(self, pos: int, op: str, operands: list[_Node]) -> None:
        super().__init__(pos)
        self.op = op
        self.operands = operands

    def emit(self) -> _Compiled:
        is_or = self.op == "or"
        # A constant operand that decides the result ends the chain (what follows is
        # never evaluated); one that does not is dropped.  Non-constant operands
        # before it still run, so their errors are kept.
        fs: list[Evaluator] = []
        decided = False
        for node in self.operands:
            f, c = node.emit()
            if c is _NOT_CONST:
                fs.append(f)
            elif bool(c) is is_or:
                decided = True
                break
        # The result when every evaluated operand passes (all falsy for or, all truthy for and).
        tail = is_or if decided else not is_or
        if not fs:
            return _constant(tail), tail
        return (_or_chain(fs, tail) if is_or else _and_chain(fs, tail)), _NOT_CONST


def _or_chain(fs: list[Evaluator], tail: bool) -> Evaluator:
    if len(fs) == 1:
        (a,) = fs

        def ev1(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            return True if a(data, local) else tail

        return ev1
    if len(fs) == 2:
        a, b = fs

        def ev2(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            return True if (a(data, local) or b(data, local)) else tail

        return ev2
    funcs = tuple(fs)

    def evn(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        for f in funcs:
            if f(data, local):
                return True
        return tail

    return evn


def _and_chain(fs: list[Evaluator], tail: bool) -> Evaluator:
    if len(fs) == 1:
        (a,) = fs

        def ev1(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            return tail if a(data, local) else False

        return ev1
    if len(fs) == 2:
        a, b = fs

        def ev2(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            return tail if (a(data, local) and b(data, local)) else False

        return ev2
    funcs = tuple(fs)

    def evn(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        for f in funcs:
            if not f(data, local):
                return False
        return tail

    return evn


class _Compare(_Node):
    __slots__ = ("left", "op", "right")

    def __init__(self, pos: int, op: str, left: _Node, right: _Node) -> None:
        super().__init__(pos)
        self.op = op
        self.left = left
        self.right = right

    def emit(self) -> _Compiled:
        lf, lc = self.left.emit()
        rf, rc = self.right.emit()
        sym, pos = self.op, self.pos
        op = _BINARY_FUNCS[sym]
        if lc is not _NOT_CONST and rc is not _NOT_CONST:
            return _fold(_binary(sym, pos, op, lf, rf))
        if rc is _NOT_CONST:
            return _binary(sym, pos, op, lf, rf), _NOT_CONST
        if (sym == "in" or sym == "not in") and isinstance(rc, list):
            return _in_constant_list(sym, pos, lf, rc), _NOT_CONST
        if isinstance(self.left, _Name) and len(self.left.parts) == 1:
            return _name_vs_constant(sym, pos, op, self.left.dotted, rc), _NOT_CONST
        return _binary_constant(sym, pos, op, lf, rc), _NOT_CONST


def _binary(
    sym: str, pos: int, op: Callable[[Any, Any], Any], lf: Evaluator, rf: Evaluator
) -> Evaluator:
    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        a = lf(data, local)
        b = rf(data, local)
        try:
            return op(a, b)
        except _EVAL_ERRORS as exc:
            raise _binary_error(sym, pos, a, b, exc) from None

    return ev


def _binary_constant(
    sym: str, pos: int, op: Callable[[Any, Any], Any], lf: Evaluator, b: Any
) -> Evaluator:
    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        a = lf(data, local)
        try:
            return op(a, b)
        except _EVAL_ERRORS as exc:
            raise _binary_error(sym, pos, a, b, exc) from None

    return ev


def _name_vs_constant(
    sym: str, pos: int, op: Callable[[Any, Any], Any], name: str, b: Any
) -> Evaluator:
    """``name <op> constant``, the most common guard shape, with the lookup inlined."""

    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        if local and name in local:
            a = local[name]
        else:
            try:
                a = data[name]
            except KeyError:
                raise MissingField(name) from None
        try:
            return op(a, b)
        except _EVAL_ERRORS as exc:
            raise _binary_error(sym, pos, a, b, exc) from None

    return ev


def _in_constant_list(sym: str, pos: int, lf: Evaluator, items: list[Any]) -> Evaluator:
    """``x in [constants]``: a set lookup when the items (and x) are hashable."""
    negate = sym == "not in"
    scan = tuple(items)
    try:
        lookup: frozenset[Any] | tuple[Any, ...] = frozenset(items)
    except TypeError:
        lookup = scan

    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        a = lf(data, local)
        try:
            found = a in lookup
        except TypeError:  # unhashable value: compare one by one
            found = a in scan
        return not found if negate else found

    return ev


class _Arith(_Node):
    __slots__ = ("first", "level", "rest")

    def __init__(
        self, pos: int, level: int, first: _Node, rest: list[tuple[str, int, _Node]]
    ) -> None:
        super().__init__(pos)
        self.level = level
        self.first = first
        self.rest = rest

    def emit(self) -> _Compiled:
        f, c = self.first.emit()
        steps: list[tuple[str, int, Callable[[Any, Any], Any], Evaluator]] = []
        last_const: Any = _NOT_CONST
        for sym, pos, node in self.rest:
            g, d = node.emit()
            op = _BINARY_FUNCS[sym]
            if not steps and c is not _NOT_CONST and d is not _NOT_CONST:
                # fold a leading run of constants: 1 + 2 + x -> 3 + x
                folded, value = _fold(_binary(sym, pos, op, f, g))
                if value is not _NOT_CONST:
                    f, c = folded, value
                    continue
            steps.append((sym, pos, op, g))
            last_const = d
        if not steps:
            return f, c
        if len(steps) > 1:
            return _arith_chain(f, tuple(steps)), _NOT_CONST
        sym, pos, op, g = steps[0]
        if last_const is not _NOT_CONST and c is _NOT_CONST:
            return _binary_constant(sym, pos, op, f, last_const), _NOT_CONST
        return _binary(sym, pos, op, f, g), _NOT_CONST


def _arith_chain(
    first: Evaluator, steps: tuple[tuple[str, int, Callable[[Any, Any], Any], Evaluator], ...]
) -> Evaluator:
    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        acc = first(data, local)
        for sym, pos, op, g in steps:
            b = g(data, local)
            try:
                acc = op(acc, b)
            except _EVAL_ERRORS as exc:
                raise _binary_error(sym, pos, acc, b, exc) from None
        return acc

    return ev


# --------------------------------------------------------------------------- functions


class _Call(_Node):
    __slots__ = ("args", "name")

    def __init__(self, pos: int, name: str, args: list[_Node]) -> None:
        super().__init__(pos)
        self.name = name
        self.args = args

    def emit(self) -> _Compiled:
        compiled = [arg.emit() for arg in self.args]
        build = _FUNCTIONS[self.name][2]
        ev = build([f for f, _ in compiled], self.pos)
        if all(c is not _NOT_CONST for _, c in compiled):
            return _fold(ev)
        return ev, _NOT_CONST


def _build_len(fs: list[Evaluator], pos: int) -> Evaluator:
    (f,) = fs

    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        v = f(data, local)
        try:
            return len(v)
        except TypeError:
            raise GuardTypeError(
                f"len() needs a string, list or mapping, got {_type_name(v)}", pos
            ) from None

    return ev


def _build_abs(fs: list[Evaluator], pos: int) -> Evaluator:
    (f,) = fs

    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        v = f(data, local)
        if _is_number(v):
            try:
                return abs(v)
            except _EVAL_ERRORS:
                pass
        raise GuardTypeError(f"abs() needs a number, got {_type_name(v)}", pos)

    return ev


def _extreme(name: str, fn: Callable[..., Any]) -> Callable[[list[Evaluator], int], Evaluator]:
    def incomparable(values: Any, pos: int) -> GuardTypeError:
        kinds = " and ".join(sorted({_type_name(v) for v in values}))
        return GuardTypeError(f"{name}() cannot compare {kinds}", pos)

    def build(fs: list[Evaluator], pos: int) -> Evaluator:
        if len(fs) == 1:
            (f,) = fs

            def ev1(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
                seq = f(data, local)
                if not isinstance(seq, (list, tuple)):
                    raise GuardTypeError(
                        f"{name}() of one argument needs a list, got {_type_name(seq)}", pos
                    )
                if not seq:
                    raise GuardTypeError(f"{name}() of an empty list", pos)
                try:
                    return fn(seq)
                except _EVAL_ERRORS:
                    raise incomparable(seq, pos) from None

            return ev1
        funcs = tuple(fs)

        def evn(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            values = [f(data, local) for f in funcs]
            try:
                return fn(values)
            except _EVAL_ERRORS:
                raise incomparable(values, pos) from None

        return evn

    return build


def _string_method(
    name: str, method: Callable[[str], str]
) -> Callable[[list[Evaluator], int], Evaluator]:
    def build(fs: list[Evaluator], pos: int) -> Evaluator:
        (f,) = fs

        def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
            v = f(data, local)
            if isinstance(v, str):
                return method(v)
            raise GuardTypeError(f"{name}() needs a string, got {_type_name(v)}", pos)

        return ev

    return build


def _build_contains(fs: list[Evaluator], pos: int) -> Evaluator:
    hf, nf = fs

    def ev(data: Mapping[str, Any], local: Mapping[str, Any] | None = None) -> Any:
        haystack = hf(data, local)
        needle = nf(data, local)
        if isinstance(haystack, str):
            if isinstance(needle, str):
                return needle.casefold() in haystack.casefold()
            raise GuardTypeError(
                f"contains() in a string needs a string to look for, got {_type_name(needle)}",
                pos,
            )
        if isinstance(haystack, (list, tuple, set, frozenset, Mapping)):
            try:
                return needle in haystack
            except TypeError:
                raise GuardTypeError(
                    f"contains() cannot look for a {_type_name(needle)} "
                    f"in a {_type_name(haystack)}",
                    pos,
                ) from None
        raise GuardTypeError(
            f"contains() needs a string, list or mapping to search, got {_type_name(haystack)}",
            pos,
        )

    return ev


# name -> (fewest arguments, most arguments or None, builder)
_FUNCTIONS: Final[
    dict[str, tuple[int, int | None, Callable[[list[Evaluator], int], Evaluator]]]
] = {
    "abs": (1, 1, _build_abs),
    "contains": (2, 2, _build_contains),
    "len": (1, 1, _build_len),
    "lower": (1, 1, _string_method("lower", str.lower)),
    "max": (1, None, _extreme("max", max)),
    "min": (1, None, _extreme("min", min)),
    "upper": (1, 1, _string_method("upper", str.upper)),
}
