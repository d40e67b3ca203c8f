"""Typed variation operators in DEAP's shapes: ``mutate(ind) -> (ind,)``, ``mate(a, b) -> (a, b)``.

They follow ``deap.gp`` (``mutUniform``, ``mutNodeReplacement``, ``mutInsert``,
``mutShrink``, ``cxOnePoint``) with three differences: each draws from its own ``rng``
instead of the global ``random`` module; `cx_one_point` sorts the common types before
drawing one (DEAP draws from a ``set``, whose order differs between processes); and
`mut_node_replacement` may pick the root and never picks the node it replaces. Types
are respected by construction; the source and memory rules are `repair`'s job and the
size limits are checked by `valid_offspring`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from functools import wraps

from deap import gp

from cellzoo.dsl import Limits, canonical_text, is_valid
from cellzoo.evolve.gp import to_node
from cellzoo.evolve.repair import repair


def levels(ind: gp.PrimitiveTree) -> list[int]:
    """The level of every node in prefix order (the root is level 1)."""
    out: list[int] = []
    open_slots: list[int] = []  # levels of the argument slots still to fill
    for item in ind:
        level = open_slots.pop() if open_slots else 1
        out.append(level)
        open_slots.extend([level + 1] * item.arity)
    return out


def mut_uniform(individual: gp.PrimitiveTree, expr: Callable[..., list],
                pset: gp.PrimitiveSetTyped, *, rng: random.Random,
                limits: Limits | None = None) -> tuple[gp.PrimitiveTree]:
    """Replace a random subtree by ``expr(pset=, type_=)`` of the same type.

    With ``limits``, the new subtree is drawn within the nodes and levels left.
    """
    index = rng.randrange(len(individual))
    slice_ = individual.searchSubtree(index)
    room = {}
    if limits is not None:
        rest = len(individual) - (slice_.stop - slice_.start)
        room = {"max_nodes": max(1, limits.max_nodes - rest),
                "max_levels": max(1, limits.max_depth - levels(individual)[index] + 1)}
    individual[slice_] = expr(pset=pset, type_=individual[index].ret, **room)
    return (individual,)


def mut_node_replacement(individual: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped, *,
                         rng: random.Random) -> tuple[gp.PrimitiveTree]:
    """Replace a random node by another of the same arity, argument and return types."""
    index = rng.randrange(len(individual))
    node = individual[index]
    if node.arity == 0:
        choices = [t for t in pset.terminals[node.ret] if t.name != node.name]
    else:
        choices = [p for p in pset.primitives[node.ret]
                   if p.args == node.args and p.name != node.name]
    if choices:
        individual[index] = rng.choice(choices)
    return (individual,)


def mut_insert(individual: gp.PrimitiveTree, pset: gp.PrimitiveSetTyped, *,
               rng: random.Random) -> tuple[gp.PrimitiveTree]:
    """Insert a new primitive above a random subtree, which becomes one of its arguments;
    the other arguments are random terminals."""
    index = rng.randrange(len(individual))
    node = individual[index]
    slice_ = individual.searchSubtree(index)
    primitives = [p for p in pset.primitives[node.ret] if node.ret in p.args]
    if not primitives:
        return (individual,)
    new = rng.choice(primitives)
    position = rng.choice([i for i, a in enumerate(new.args) if a == node.ret])
    args = [individual[slice_] if i == position else [rng.choice(pset.terminals[a])]
            for i, a in enumerate(new.args)]
    individual[slice_] = [new] + [item for arg in args for item in arg]
    return (individual,)


def mut_shrink(individual: gp.PrimitiveTree, *, rng: random.Random) -> tuple[gp.PrimitiveTree]:
    """Replace a random non-root branch by one of its arguments of the same type."""
    if len(individual) < 3 or individual.height <= 1:
        return (individual,)
    candidates = [i for i, node in enumerate(individual[1:], 1)
                  if isinstance(node, gp.Primitive) and node.ret in node.args]
    if not candidates:
        return (individual,)
    index = rng.choice(candidates)
    prim = individual[index]
    arg = rng.choice([i for i, a in enumerate(prim.args) if a == prim.ret])
    start = index + 1
    for _ in range(arg):
        start = individual.searchSubtree(start).stop
    subtree = individual[individual.searchSubtree(start)]
    individual[individual.searchSubtree(index)] = subtree
    return (individual,)


def cx_one_point(ind1: gp.PrimitiveTree, ind2: gp.PrimitiveTree, *,
                 rng: random.Random) -> tuple[gp.PrimitiveTree, gp.PrimitiveTree]:
    """Swap a random non-root subtree of ``ind1`` with one of the same type in ``ind2``."""
    if len(ind1) < 2 or len(ind2) < 2:
        return ind1, ind2
    types1: defaultdict[type, list[int]] = defaultdict(list)
    types2: defaultdict[type, list[int]] = defaultdict(list)
    for idx, node in enumerate(ind1[1:], 1):
        types1[node.ret].append(idx)
    for idx, node in enumerate(ind2[1:], 1):
        types2[node.ret].append(idx)
    common = sorted(set(types1) & set(types2), key=lambda t: t.__name__)
    if common:
        type_ = rng.choice(common)
        slice1 = ind1.searchSubtree(rng.choice(types1[type_]))
        slice2 = ind2.searchSubtree(rng.choice(types2[type_]))
        ind1[slice1], ind2[slice2] = ind2[slice2], ind1[slice1]
    return ind1, ind2


def valid_offspring(pset: gp.PrimitiveSetTyped, limits: Limits, rng: random.Random,
                    tries: int) -> Callable:
    """Decorator in the manner of ``gp.staticLimit``, for every cell rule and redrawing.

    The operator runs on copies of the parents; each offspring is repaired (`repair`)
    and kept if it is a valid cell within ``limits`` and differs (canonically) from every
    parent. Slots still empty are redrawn, at most ``tries`` runs in all; a slot that
    never gets a valid new offspring returns a copy of its own parent, as
    ``gp.staticLimit`` does. An invalid offspring is never returned.
    """
    def decorator(func: Callable) -> Callable:
        @wraps(func)
        def wrapper(*parents: gp.PrimitiveTree, **kwargs) -> tuple[gp.PrimitiveTree, ...]:
            seen = {canonical_text(to_node(p)) for p in parents}
            found: list[gp.PrimitiveTree | None] = [None] * len(parents)
            for _ in range(tries):
                offspring = func(*(gp.PrimitiveTree(p) for p in parents), **kwargs)
                for i, child in enumerate(offspring):
                    if found[i] is None and _acceptable(repair(child, pset, rng), limits, seen):
                        found[i] = child
                if all(f is not None for f in found):
                    break
            return tuple(f if f is not None else gp.PrimitiveTree(p)
                         for f, p in zip(found, parents, strict=True))

        return wrapper

    return decorator


def _acceptable(child: gp.PrimitiveTree, limits: Limits, seen: set[str]) -> bool:
    node = to_node(child)
    return is_valid(node, limits) and canonical_text(node) not in seen
