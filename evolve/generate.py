"""Typed tree generation in DEAP's style, with a type-aware stop and a node budget.

DEAP's ``gp.generate`` asks for a primitive of the branch's type until its stop
condition holds; the cell primitive set has no primitive returning width E, so
``genFull``/``genGrow`` raise ``IndexError`` whenever an ``MM`` sits above the bottom
level. Here a branch stops where the condition says so *or* where its type has no
primitive, and goes on where its type has no terminal. Every function takes its own
``rng`` (a ``random.Random``) so that a search is reproducible from its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

from deap import gp

from cellzoo.evolve.gp import dsl_name

Condition = Callable[[int, int], bool]


def generate(pset: gp.PrimitiveSetTyped, min_: int, max_: int, condition: Condition,
             type_: type | None = None, *, rng: random.Random, max_nodes: int | None = None,
             max_levels: int | None = None, exclude: Collection[str] = ()) -> list:
    """A tree of type ``type_`` as a prefix list (as ``gp.generate``), never raising IndexError.

    ``max_nodes`` caps the tree's size: a primitive is drawn only if the tree can still
    be finished within it. ``max_levels`` caps its depth (levels; a lone terminal is 1).
    ``exclude`` lists DSL names (operators or sources) not to draw.
    """
    type_ = pset.ret if type_ is None else type_
    budget = max_nodes if max_nodes is not None else float("inf")
    height = rng.randint(min_, max_)
    if max_levels is not None:
        height = max(0, min(height, max_levels - 1))
    expr: list = []
    stack = [(0, type_)]
    while stack:
        depth, type_ = stack.pop()
        room = budget - len(expr) - len(stack) - 1  # nodes left for this node's arguments
        terms = [t for t in pset.terminals[type_] if dsl_name(t.name) not in exclude]
        prims = [p for p in pset.primitives[type_]
                 if p.arity <= room and dsl_name(p.name) not in exclude]
        if not terms and not prims:
            raise ValueError(f"no terminal or primitive of type {type_.__name__} can be drawn "
                             f"here (excluded: {sorted(exclude)}, room {room} nodes)")
        if terms and (not prims or depth >= height or condition(height, depth)):
            expr.append(rng.choice(terms))
        else:
            prim = rng.choice(prims)
            expr.append(prim)
            stack.extend((depth + 1, arg) for arg in reversed(prim.args))
    return expr


def gen_full(pset: gp.PrimitiveSetTyped, min_: int, max_: int, type_: type | None = None,
             **kwargs) -> list:
    """Every branch as deep as the drawn height (as ``gp.genFull``), where types allow."""
    return generate(pset, min_, max_, lambda height, depth: depth == height, type_, **kwargs)


def gen_grow(pset: gp.PrimitiveSetTyped, min_: int, max_: int, type_: type | None = None,
             *, rng: random.Random, **kwargs) -> list:
    """Branches stop at random once past ``min_`` (as ``gp.genGrow``)."""
    def condition(height: int, depth: int) -> bool:
        return depth == height or (depth >= min_ and rng.random() < pset.terminalRatio)

    return generate(pset, min_, max_, condition, type_, rng=rng, **kwargs)


def gen_half_and_half(pset: gp.PrimitiveSetTyped, min_: int, max_: int,
                      type_: type | None = None, *, rng: random.Random, **kwargs) -> list:
    """Half the time `gen_grow`, half `gen_full` (as ``gp.genHalfAndHalf``)."""
    method = gen_grow if rng.random() < 0.5 else gen_full
    return method(pset, min_, max_, type_, rng=rng, **kwargs)
