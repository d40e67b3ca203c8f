"""Repair of a DEAP tree that breaks a cell rule other than the size limits.

Variation keeps types right by construction; what it can break are the rules of
`cellzoo.dsl.problems` about sources and memory. `repair` fixes them in place, with
small local edits, in this order:

1. memory: a cell that reads ``c`` keeps exactly one ``Mem`` (one is wrapped around a
   random width-H subtree if there is none, extra ones are unwrapped); a cell with a
   ``Mem`` but no ``c`` either gets a ``c`` in place of an ``h`` leaf or loses its ``Mem``s;
2. input: a cell that reads neither ``x`` nor ``x_prev`` gets one: a random width-H
   subtree ``t`` becomes ``Op(t, MM(x))`` for a random all-H operator of arity >= 2;
3. state: a cell that carries no state gets an ``h`` the same way, ``Op(t, h)``.

A repaired tree may exceed the depth or node limit; the caller checks and redraws.
"""

from __future__ import annotations

import random

from deap import gp

from cellzoo.dsl import INPUT_SOURCES, Node
from cellzoo.evolve.gp import WidthH, dsl_name, to_individual


def repair(ind: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped,
           rng: random.Random) -> gp.PrimitiveTree:
    """Make ``ind`` obey the source and memory rules (in place); returns it."""
    _fix_memory(ind, pset, rng)
    names = _names(ind)
    if not any(s in names for s in INPUT_SOURCES):
        read = Node("MM", (Node(rng.choice(INPUT_SOURCES)),))
        _attach(ind, list(to_individual(read, pset)), pset, rng)
    names = _names(ind)
    if "h" not in names and not ("c" in names and "Mem" in names):
        _attach(ind, [pset.mapping["h"]], pset, rng)
    return ind


def _names(ind: gp.PrimitiveTree) -> list[str]:
    return [dsl_name(item.name) for item in ind]


def _indices(ind: gp.PrimitiveTree, name: str) -> list[int]:
    return [i for i, n in enumerate(_names(ind)) if n == name]


def _fix_memory(ind: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped, rng: random.Random) -> None:
    mems = _indices(ind, "Mem")
    h_leaves = _indices(ind, "h")
    if mems and not _indices(ind, "c") and h_leaves and rng.random() < 0.5:
        ind[rng.choice(h_leaves)] = pset.mapping["c"]
    keep = 1 if _indices(ind, "c") else 0
    if not mems and keep:
        ind.insert(rng.choice(_typed(ind, WidthH)), pset.mapping["Mem"])
    kept = set(rng.sample(mems, keep)) if mems else set()
    for i in reversed(mems):  # unwrap from the back so earlier indices stay put
        if i not in kept:
            del ind[i]


def _typed(ind: gp.PrimitiveTree, type_: type) -> list[int]:
    return [i for i, item in enumerate(ind) if item.ret is type_]


def _attach(ind: gp.PrimitiveTree, branch: list, pset: gp.PrimitiveSetTyped,
            rng: random.Random) -> None:
    """Replace a random width-H subtree t by Op(..., t, ..., branch, ...); other slots get h
    (or c in a cell with a Mem)."""
    ops = [p for p in pset.primitives[WidthH]
           if p.arity >= 2 and all(a is WidthH for a in p.args)]
    op = rng.choice(ops)
    slice_ = ind.searchSubtree(rng.choice(_typed(ind, WidthH)))
    fillers = ["h", "c"] if _indices(ind, "Mem") else ["h"]
    keep, add = rng.sample(range(op.arity), 2)
    args = [[pset.mapping[rng.choice(fillers)]] for _ in range(op.arity)]
    args[keep], args[add] = ind[slice_], branch
    ind[slice_] = [op] + [item for arg in args for item in arg]

