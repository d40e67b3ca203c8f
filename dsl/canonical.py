"""Canonical form and structural hash: two spellings of one cell get one identity."""

from __future__ import annotations

import hashlib

from cellzoo.dsl.ops import OPS
from cellzoo.dsl.tree import Node, preorder, to_text

HASH_LENGTH = 16


def canonical(node: Node) -> Node:
    """Sort the arguments of commutative operators (by their canonical text), bottom up."""
    done: dict[int, tuple[Node, str]] = {}
    for n in reversed(list(preorder(node))):  # children before parents
        kids = [done[id(c)] for c in n.children]
        if n.op in OPS and OPS[n.op].commutative:
            kids.sort(key=lambda pair: pair[1])
        new = Node(n.op, tuple(k for k, _ in kids)) if kids else n
        done[id(n)] = (new, to_text(new))
    return done[id(node)][0]


def canonical_text(node: Node) -> str:
    return to_text(canonical(node))


def cell_hash(cell: Node | str) -> str:
    """The cell's identity: a hex prefix of the SHA-256 of its canonical text."""
    from cellzoo.dsl.parse import parse

    node = parse(cell) if isinstance(cell, str) else cell
    return text_hash(canonical_text(node))


def text_hash(canonical: str) -> str:
    """The hash of a cell whose canonical text is ``canonical`` (see `cell_hash`)."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]
