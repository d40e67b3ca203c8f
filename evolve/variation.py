"""`Variation`: random valid cells, mutation and crossover on DSL trees, for the search loop.

The loop sees DSL `Node`s only; DEAP trees live inside. Operators are registered on
a ``deap.base.Toolbox`` and decorated with `valid_offspring`, so every result is a
valid cell within the limits. All randomness comes from one ``random.Random`` seeded
at construction: a seed gives the same sequence of cells in any process.
"""

from __future__ import annotations

import random

from deap import base, gp

from cellzoo.dsl import DEFAULT_LIMITS, Limits, Node, canonical_text, is_valid
from cellzoo.evolve.generate import gen_grow, gen_half_and_half
from cellzoo.evolve.gp import make_pset, to_individual, to_node
from cellzoo.evolve.operators import (
    cx_one_point,
    mut_insert,
    mut_node_replacement,
    mut_shrink,
    mut_uniform,
    valid_offspring,
)
from cellzoo.evolve.repair import repair

#: mutation operators, by the name `Variation.mutate` reports
MUTATIONS = ("mut_subtree", "mut_node", "mut_insert", "mut_shrink")
#: what `Variation.mutate` reports when no operator found a valid new child
FALLBACK = "random"
#: runs of one operator before it gives up on a parent
TRIES = 20
#: drawn heights of random cells and of subtrees grown by mutation
INIT_HEIGHTS = (2, 6)
MUTATION_HEIGHTS = (0, 3)
#: chance that a random cell is drawn with memory (c and Mem available)
P_MEMORY = 0.5
#: nodes and levels `repair` may add to a random cell (an input branch, a Mem)
REPAIR_NODES, REPAIR_LEVELS = 5, 3


class Variation:
    """Random valid cells, mutation and crossover, reproducible from ``seed``."""

    def __init__(self, level: str = "core", limits: Limits = DEFAULT_LIMITS,
                 seed: int = 0) -> None:
        self.level = level
        self.limits = limits
        self.pset = make_pset(level)
        self.rng = random.Random(seed)
        self.toolbox = self._toolbox()

    def _toolbox(self) -> base.Toolbox:
        tb, pset, rng, limits = base.Toolbox(), self.pset, self.rng, self.limits
        tb.register("expr_init", gen_half_and_half, pset, *INIT_HEIGHTS, rng=rng,
                    max_nodes=max(1, limits.max_nodes - REPAIR_NODES),
                    max_levels=max(1, limits.max_depth - REPAIR_LEVELS))
        tb.register("expr_mut", gen_grow, min_=MUTATION_HEIGHTS[0], max_=MUTATION_HEIGHTS[1],
                    rng=rng)
        tb.register("mut_subtree", mut_uniform, expr=tb.expr_mut, pset=pset, rng=rng,
                    limits=limits)
        tb.register("mut_node", mut_node_replacement, pset=pset, rng=rng)
        tb.register("mut_insert", mut_insert, pset=pset, rng=rng)
        tb.register("mut_shrink", mut_shrink, rng=rng)
        tb.register("mate", cx_one_point, rng=rng)
        for name in (*MUTATIONS, "mate"):
            tb.decorate(name, valid_offspring(pset, limits, rng, TRIES))
        return tb

    def random_cell(self) -> Node:
        """A random valid cell within the limits (drawn, repaired, redrawn if too large)."""
        for _ in range(10 * TRIES):
            memory = self.rng.random() < P_MEMORY
            exclude = () if memory else ("c", "Mem")
            ind = gp.PrimitiveTree(self.toolbox.expr_init(exclude=exclude))
            node = to_node(repair(ind, self.pset, self.rng))
            if is_valid(node, self.limits):
                return node
        raise ValueError(f"no random valid cell fits within {self.limits} "
                         f"(the smallest cell, Add(MM(x), h), needs depth 3 and 4 nodes)")

    def mutate(self, cell: Node) -> tuple[Node, str]:
        """A valid child that differs from ``cell``, and the operator that made it.

        The operators are tried in a random order; if none finds a valid new child,
        the child is a fresh random cell and the operator is ``"random"``.
        """
        parent = to_individual(cell, self.pset)
        key = canonical_text(cell)
        names = list(MUTATIONS)
        self.rng.shuffle(names)
        for name in names:
            (child,) = getattr(self.toolbox, name)(parent)
            node = to_node(child)
            if canonical_text(node) != key:
                return node, name
        return self.random_cell(), FALLBACK

    def crossover(self, a: Node, b: Node) -> tuple[Node, Node]:
        """Two valid children by one-point crossover; a child that cannot be made valid and
        new is a copy of its parent (as ``gp.staticLimit`` does)."""
        child1, child2 = self.toolbox.mate(to_individual(a, self.pset),
                                           to_individual(b, self.pset))
        return to_node(child1), to_node(child2)

    def state(self) -> tuple:
        """The RNG state, for a checkpoint (JSON turns its tuples into lists; both load)."""
        return self.rng.getstate()

    def set_state(self, state: tuple | list) -> None:
        version, internal, gauss_next = state
        self.rng.setstate((version, tuple(internal), gauss_next))
