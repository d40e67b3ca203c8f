"""Validity rules of a cell, beyond syntax and widths (which the parser checks)."""

from __future__ import annotations

from dataclasses import dataclass

from cellzoo.dsl.ops import INPUT_SOURCES, OPS
from cellzoo.dsl.parse import DSLError, parse_located
from cellzoo.dsl.tree import Node, depth, preorder


@dataclass(frozen=True)
class Limits:
    """Size limits of a valid cell (an LSTM has depth 9 and 39 nodes)."""

    max_depth: int = 14
    max_nodes: int = 80


DEFAULT_LIMITS = Limits()


def problems(node: Node, limits: Limits = DEFAULT_LIMITS) -> list[tuple[Node | None, str]]:
    """Every rule the cell breaks, as (offending node or None, reason); empty when valid."""
    found: list[tuple[Node | None, str]] = []
    if node.width != "H":
        found.append((node, f"the root {node.op} has width {node.width}; h(t) needs width H"))
    nodes = list(preorder(node))
    for n in nodes:
        for i, child in enumerate(n.children):
            if child.width not in OPS[n.op].accepts(i):
                found.append((child, f"{child.op} has width {child.width}, used where width H "
                                     f"is needed (argument {i + 1} of {n.op})"))
    names = [n.op for n in nodes]
    mems = [n for n in nodes if n.op == "Mem"]
    if not any(s in names for s in INPUT_SOURCES):
        found.append((None, "the cell never reads its input: it needs x or x_prev"))
    if "c" in names and len(mems) != 1:
        found.append((mems[1] if mems else None,
                      f"a cell that reads c needs exactly one Mem, found {len(mems)}"))
    if mems and "c" not in names:
        found.append((mems[0], "Mem is pointless in a cell that never reads c"))
    if "h" not in names and not ("c" in names and mems):
        found.append((None, "the cell carries no state: it must read h, or read c through a Mem"))
    d, count = depth(node), len(nodes)
    if d > limits.max_depth:
        found.append((None, f"depth {d} exceeds the limit of {limits.max_depth}"))
    if count > limits.max_nodes:
        found.append((None, f"{count} nodes exceed the limit of {limits.max_nodes}"))
    return found


def is_valid(node: Node, limits: Limits = DEFAULT_LIMITS) -> bool:
    return not problems(node, limits)


def validate(node: Node, limits: Limits = DEFAULT_LIMITS,
             columns: dict[int, int] | None = None) -> Node:
    """Raise `DSLError` for the first broken rule (located when ``columns`` is given)."""
    found = problems(node, limits)
    if found:
        culprit, reason = found[0]
        column = columns.get(id(culprit)) if columns and culprit is not None else None
        raise DSLError(reason, column)
    return node


def parse_cell(text: str, limits: Limits = DEFAULT_LIMITS) -> Node:
    """Parse text and check every validity rule; errors are located where possible."""
    node, columns = parse_located(text)
    return validate(node, limits, columns)
