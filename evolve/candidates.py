"""Candidates of a round: where they come from, and which of them are worth training.

A `Candidate` is a cell with its lineage. The initial round is the human
library (the cells the operator level allows) plus random cells; later rounds
breed from the population (tournament, then mutation or crossover) or ask the
proposer. `prefilter` keeps the best-scored candidates plus a random share, so
that a bad ranker cannot starve exploration.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from cellzoo.dsl import Limits, Node, canonical_text, cell_hash, is_valid, ops_for, parse, preorder
from cellzoo.dsl.function import Behaviour, behaviour
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.population import Strategy


@dataclass
class Candidate:
    cell: Node
    origin: str
    operator: str | None = None
    parents: list[str] = field(default_factory=list)
    generation: int = 0
    score: float | None = None  # the pre-filter's score (higher = more promising)
    predicted: float | None = None  # the ranker's predicted log validation perplexity

    @cached_property
    def expr(self) -> str:
        return canonical_text(self.cell)

    @cached_property
    def hash(self) -> str:
        return cell_hash(self.cell)

    @cached_property
    def behaviour(self) -> Behaviour:
        """What the cell computes (`cellzoo.dsl.function`), for functional dedup."""
        return behaviour(self.cell)

    def lineage(self, round_index: int, search_id: str) -> dict[str, Any]:
        """Lineage as the zoo stores it (``round`` is kept by the search, not the zoo)."""
        return {"parents": list(self.parents), "origin": self.origin, "operator": self.operator,
                "generation": self.generation, "search_id": search_id}


class PreFilter(Protocol):
    """The ranker seam: learn from zoo runs, score cells (higher = more promising).
    A ``pretrained`` one (from a prior) scores before its first fit."""

    pretrained: bool

    def fit(self, runs: Sequence[Any]) -> Any: ...

    def score(self, cells: list[Node]) -> Sequence[float]: ...

    def predict(self, cells: list[Node]) -> tuple[Sequence[float], Sequence[float]]:
        """Predicted log perplexity and divergence probability (for the live accuracy log)."""


class Proposer(Protocol):
    """The controller seam: cells from outside the population, and learning from results."""

    def propose(self, n: int) -> list[Node]: ...

    def update(self, results: list[tuple[Node, Any]]) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def allowed(cell: Node, level: str, limits: Limits) -> bool:
    """Whether a cell belongs to the search space: its operators exist at ``level``."""
    ops = set(ops_for(level))
    return is_valid(cell, limits) and all(n.is_source or n.op in ops for n in preorder(cell))


def library_candidates(level: str, limits: Limits) -> list[Candidate]:
    cells = (parse(entry.expr) for entry in LIBRARY.values())
    return [Candidate(cell, "library", operator=None) for cell in cells
            if allowed(cell, level, limits)]


def random_candidate(variation: Any) -> Candidate:
    return Candidate(variation.random_cell(), "random")


def bred_candidate(strategy: Strategy, variation: Any, rng: random.Random,
                   crossover_prob: float) -> Candidate:
    """One child of the population: crossover of two tournament winners, or a mutation."""
    if rng.random() < crossover_prob and len(strategy.members) >= 2:
        a, b = strategy.parent(rng), strategy.parent(rng)
        if a.hash != b.hash:
            child, _ = variation.crossover(parse(a.expr), parse(b.expr))
            return Candidate(child, "crossover", "crossover", [a.hash, b.hash],
                             max(a.generation, b.generation) + 1)
    parent = strategy.parent(rng)
    child, operator = variation.mutate(parse(parent.expr))
    return Candidate(child, "mutation", operator, [parent.hash], parent.generation + 1)


def prefilter(candidates: list[Candidate], scores: Sequence[float] | None, k: int,
              random_share: float, rng: random.Random) -> list[Candidate]:
    """The ``k`` candidates to train: the best-scored, plus ``random_share`` of ``k`` drawn
    at random from the rest. Without scores, ``k`` drawn at random. Order: as generated."""
    if k >= len(candidates):
        return list(candidates)
    if scores is None:
        chosen = rng.sample(range(len(candidates)), k)
    else:
        n_random = int(round(random_share * k))
        values = np.asarray(scores, dtype=float)
        values = np.where(np.isfinite(values), values, -np.inf)
        order = sorted(range(len(candidates)), key=lambda i: (-values[i], i))
        chosen = order[: k - n_random]
        rest = order[k - n_random:]
        chosen += rng.sample(rest, n_random)
        for i, value in enumerate(values):
            candidates[i].score = float(value)
    return [candidates[i] for i in sorted(chosen)]
