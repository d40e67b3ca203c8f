"""Random DSL trees and random DAGs, for the ranker's tests and speed benchmark.

(The search's own typed generator lives in `cellzoo.evolve`; this one only
needs well-typed trees of varied shape, not valid cells.)
"""

from __future__ import annotations

import random

from cellzoo.dsl import OPS, Node
from cellzoo.ranker.graph import ARITY, VOCAB, CellGraph

_H_OPS = [name for name in OPS if name != "MM"]


def random_tree(rng: random.Random, max_depth: int = 6) -> Node:
    """A well-typed tree of width H whose leaves are MM(x), MM(x_prev), h or c."""
    if max_depth <= 2 or rng.random() < 0.25:
        leaf = rng.choice(["x", "x_prev", "h", "c", "h"])
        return Node("MM", (Node(leaf),)) if leaf.startswith("x") else Node(leaf)
    name = rng.choice(_H_OPS + ["MM", "MM"])
    return Node(name, tuple(random_tree(rng, max_depth - 1) for _ in range(OPS[name].arity)))


def random_dag(rng: random.Random, size: int = 12) -> CellGraph:
    """A random DAG over the whole ranker vocabulary; nodes may be shared by several parents."""
    sources = [n for n, a in zip(VOCAB, ARITY, strict=True) if a == 0]
    ops_ = [n for n, a in zip(VOCAB, ARITY, strict=True) if a > 0]
    names: list[str] = [rng.choice(sources), rng.choice(sources)]
    kids: list[tuple[int, ...]] = [(), ()]
    while len(names) < size:
        op = rng.choice(ops_)
        arity = ARITY[VOCAB.index(op)]
        names.append(op)
        kids.append(tuple(rng.randrange(len(kids)) for _ in range(arity)))
    return CellGraph(tuple(names), tuple(kids))
