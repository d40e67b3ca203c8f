"""Parse DSL text into a `Node` tree, with errors that name the column and the reason.

The parser is iterative (an explicit stack), so deep or long input cannot
exhaust Python's recursion limit; nesting beyond `MAX_NESTING` is refused with
a located error, which also keeps every recursive consumer of trees safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cellzoo.common.errors import UserError
from cellzoo.dsl.ops import OPS, SOURCES
from cellzoo.dsl.tree import Node

MAX_NESTING = 200
MAX_TEXT = 1_000_000

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\()|(\))|(,)|(\S))")


class DSLError(UserError, ValueError):
    """Invalid cell text or an invalid cell; ``column`` is 1-based, or None if unknown."""

    def __init__(self, reason: str, column: int | None = None):
        self.reason = reason
        self.column = column
        super().__init__(f"column {column}: {reason}" if column is not None else reason)


@dataclass
class _Open:
    name: str
    column: int
    children: list[Node] = field(default_factory=list)
    columns: list[int] = field(default_factory=list)


def _tokens(text: str):
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace is left
            return
        column = m.start(m.lastindex) + 1
        kind = ("name", "(", ")", ",", "bad")[m.lastindex - 1]
        yield kind, m.group(m.lastindex), column
        pos = m.end()


def parse(text: str) -> Node:
    """Parse and type-check one cell expression (validity rules are `validate`'s job)."""
    return parse_located(text)[0]


def parse_located(text: str) -> tuple[Node, dict[int, int]]:
    """Parse; also return ``id(node) -> column`` for every node, for located errors."""
    if not isinstance(text, str):
        raise DSLError(f"expected DSL text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise DSLError(f"expression is {len(text):,} characters long; the limit is {MAX_TEXT:,}")
    if not text.strip():
        raise DSLError("empty expression", 1)
    parser = _Parser()
    for kind, value, col in _tokens(text):
        if parser.result is not None:
            raise DSLError(f"unexpected {shown(value)} after the end of the expression", col)
        if kind == "bad":
            raise DSLError(f"unexpected character {shown(value)}", col)
        parser.step[parser.expect](kind, value, col)
    return parser.finish(len(text)), parser.columns


class _Parser:
    """The parser's state between tokens; ``expect`` names what may come next."""

    def __init__(self) -> None:
        self.columns: dict[int, int] = {}
        self.stack: list[_Open] = []
        self.result: Node | None = None
        self.expect = "term"  # "term", "(", or "sep" (',' or ')')
        self.pending: tuple[str, int] | None = None  # an operator name waiting for '('
        self.step = {"term": self._term, "(": self._open, "sep": self._sep}

    def _open(self, kind: str, value: str, col: int) -> None:
        if kind != "(":
            raise DSLError(f"{self.pending[0]} must be followed by '('", col)
        if len(self.stack) >= MAX_NESTING:
            raise DSLError(f"nesting deeper than {MAX_NESTING} levels", col)
        self.stack.append(_Open(*self.pending))
        self.expect, self.pending = "term", None

    def _term(self, kind: str, value: str, col: int) -> None:
        if kind == ")" and self.stack and not self.stack[-1].children:
            op = self.stack[-1]
            raise DSLError(f"{op.name} takes {_arity_text(op.name)}, got 0", op.column)
        if kind != "name":
            raise DSLError(f"expected an operator or a source, got {shown(value)}", col)
        if value in SOURCES:
            self._attach(Node(value), col)
            self.expect = "sep"
        elif value in OPS:
            self.pending, self.expect = (value, col), "("
        else:
            raise DSLError(f"unknown operator or source {shown(value)}{_suggest(value)}", col)

    def _sep(self, kind: str, value: str, col: int) -> None:
        if not self.stack:
            raise DSLError(f"unexpected {shown(value)} after the end of the expression", col)
        op = self.stack[-1]
        if kind == ",":  # too many arguments are counted and reported at ')'
            self.expect = "term"
        elif kind == ")":
            if len(op.children) != OPS[op.name].arity:
                raise DSLError(
                    f"{op.name} takes {_arity_text(op.name)}, got {len(op.children)}", op.column
                )
            self.stack.pop()
            node = Node(op.name, tuple(op.children))
            _check_widths(op, node)
            self._attach(node, op.column)
        else:
            raise DSLError(f"expected ',' or ')', got {shown(value)}", col)

    def _attach(self, node: Node, col: int) -> None:
        """Give ``node`` to the innermost open operator, or make it the result."""
        self.columns[id(node)] = col
        if not self.stack:
            self.result = node
            return
        self.stack[-1].children.append(node)
        self.stack[-1].columns.append(col)

    def finish(self, end: int) -> Node:
        if self.result is not None and not self.stack:
            return self.result
        if self.pending is not None:
            raise DSLError(f"{self.pending[0]} must be followed by '('", self.pending[1])
        if self.stack:
            where = self.stack[-1]
            raise DSLError(
                f"unbalanced parentheses: {where.name}( opened here is never closed", where.column
            )
        raise DSLError("incomplete expression", end)


def _check_widths(op: _Open, node: Node) -> None:
    spec = OPS[op.name]
    for i, (child, col) in enumerate(zip(node.children, op.columns, strict=True)):
        accepted = spec.accepts(i)
        if child.width not in accepted:
            what = child.op if child.is_source else f"{child.op}(...)"
            need = " or ".join(accepted)
            hint = f"; wrap it in MM({what})" if child.width == "E" else ""
            raise DSLError(
                f"{what} has width {child.width}, used where width {need} is needed "
                f"(argument {i + 1} of {op.name}){hint}",
                col,
            )


def _arity_text(name: str) -> str:
    n = OPS[name].arity
    return f"{n} argument" + ("" if n == 1 else "s")


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, [*OPS, *SOURCES], n=1)
    if not close:
        lowered = {k.lower(): k for k in [*OPS, *SOURCES]}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f" (did you mean {close[0]}?)" if close else ""
