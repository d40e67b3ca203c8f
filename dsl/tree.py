"""Cell trees: immutable nodes, their text form, prefix order and simple measurements."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from cellzoo.dsl.ops import OPS, SOURCES


@dataclass(frozen=True)
class Node:
    """One node of a cell tree: an operator with children, or a source with none.

    Nodes are values: two nodes with the same operator and equal children are
    equal and hash alike, so trees can be dict keys and set members.
    """

    op: str
    children: tuple[Node, ...] = ()

    @property
    def is_source(self) -> bool:
        return self.op in SOURCES

    @property
    def width(self) -> str:
        return SOURCES[self.op] if self.is_source else OPS[self.op].out_width

    def __str__(self) -> str:
        return to_text(self)

    def __repr__(self) -> str:
        return f"Node({to_text(self)!r})"


def preorder(node: Node) -> Iterator[Node]:
    """Nodes in prefix order (the order of a DEAP PrimitiveTree), iteratively."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def to_prefix(node: Node) -> list[str]:
    """Operator and source names in prefix order; arities come from the table."""
    return [n.op for n in preorder(node)]


def from_prefix(tokens: list[str]) -> Node:
    """Rebuild a tree from prefix-order names (inverse of `to_prefix`)."""
    stack: list[tuple[str, list[Node], int]] = []
    result: Node | None = None
    for i, name in enumerate(tokens):
        if result is not None:
            raise ValueError(f"extra tokens after a complete tree at position {i}")
        arity = 0 if name in SOURCES else _arity(name)
        node = None
        if arity == 0:
            node = Node(name)
        else:
            stack.append((name, [], arity))
        while node is not None:
            if not stack:
                result = node
                break
            op, kids, n = stack[-1]
            kids.append(node)
            node = None
            if len(kids) == n:
                stack.pop()
                node = Node(op, tuple(kids))
    if result is None:
        raise ValueError("prefix sequence ends before the tree is complete")
    return result


def _arity(name: str) -> int:
    if name not in OPS:
        raise ValueError(f"unknown operator {name!r}")
    return OPS[name].arity


def to_text(node: Node) -> str:
    """The DSL text form, e.g. ``Tanh(Add(MM(x), MM(h)))``."""
    parts: list[str] = []
    stack: list[object] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            parts.append(item)
            continue
        assert isinstance(item, Node)
        if item.is_source:
            parts.append(item.op)
            continue
        parts.append(item.op + "(")
        stack.append(")")
        for i, child in enumerate(reversed(item.children)):
            stack.append(child)
            if i < len(item.children) - 1:
                stack.append(", ")
    return "".join(parts)


def node_count(node: Node) -> int:
    return sum(1 for _ in preorder(node))


def depth(node: Node) -> int:
    """Levels in the tree: a lone source has depth 1."""
    best = 0
    stack = [(node, 1)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        stack.extend((c, d + 1) for c in n.children)
    return best


def op_counts(node: Node) -> Counter[str]:
    """How often each operator and source occurs."""
    return Counter(to_prefix(node))


def uses_memory(node: Node) -> bool:
    return any(n.op == "Mem" for n in preorder(node))


def reads(node: Node, source: str) -> bool:
    return any(n.op == source for n in preorder(node))
