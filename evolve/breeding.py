"""A round's candidates: bred or proposed, made unique, checked against the zoo, pre-filtered.

`Breeder` owns what making candidates needs and keeps between rounds: the
variation operators, the search's random generator, the pre-filter (ranker) and
the proposer (controller) with their lifecycles (a cold pre-filter is fitted once
the zoo holds `MIN_RANKER_RUNS` ok runs under the search's configuration, a
pre-trained one scores from the first breeding round and fine-tunes once there is
one; both are refitted when there are new runs; the proposer learns from the
results of its own candidates). The search gives it the population (`Strategy`),
the hashes it must not repeat, and the zoo.

Per offspring round: ``offspring_factor`` times more candidates than will be
trained (1 times before the pre-filter can score) from the population and from the
proposer; cells the zoo already holds under this configuration are set aside
for reuse; `candidates.prefilter` keeps the best-scored plus a random share.

A candidate is new when no cell the search took has its structural hash, and (``dedup =
"function"``) when it reads its input and no cell the breeder handed out computes what it
computes (`cellzoo.dsl.function`): a cell that differs from a known one only by dead code,
or that ignores its input, is redrawn instead of trained.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from cellzoo.common.rng import tuples
from cellzoo.dsl import parse
from cellzoo.evolve.candidates import (
    Candidate,
    PreFilter,
    Proposer,
    bred_candidate,
    library_candidates,
    prefilter,
    random_candidate,
)
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.population import Strategy
from cellzoo.train import TrainResult
from cellzoo.zoo import Run, Zoo

#: redraws of a candidate that duplicates a known cell before a random cell is tried instead
MAX_REDRAWS = 50
#: a cold ranker is fitted once the zoo holds this many ok runs of the search's kind
#: (a pre-trained one from the first)
MIN_RANKER_RUNS = 8


class Scope(Protocol):
    """Which zoo runs are results of the search's kind."""

    def find(self, zoo: Zoo, cell_hash: str) -> Run | None:
        """The cell's run the search may reuse instead of training it (None: train it)."""

    def fit_runs(self, zoo: Zoo) -> list[Run]:
        """The runs the pre-filter is fitted on."""


@dataclass(frozen=True)
class KeyScope:
    """The runs under one training configuration key (a proxy search's)."""

    key: str

    def find(self, zoo: Zoo, cell_hash: str) -> Run | None:
        return zoo.find_run(cell_hash, self.key)

    def fit_runs(self, zoo: Zoo) -> list[Run]:
        return [r for r in zoo.runs() if r.config_key == self.key]


#: a round's two sources of candidates: bred from the population, proposed by the proposer
BRED, PROPOSED = "bred", "proposed"
#: the candidates a logged round took from a source (None: the log does not hold the round)
Logged = Callable[[str], "list[Candidate] | None"]


def source_of(origin: str) -> str:
    """The source (`BRED` or `PROPOSED`) of a round's candidate of this origin."""
    return PROPOSED if origin == "controller" else BRED


def _as_logged(logged: list[Candidate], pool: list[Candidate], picked: list[Candidate],
               n: int) -> list[Candidate]:
    """The logged candidates, with the lineage the log gives them and the pre-filter's score
    and prediction where the pool drew the same cell, then the search's own picks that the
    log lacks, up to ``n``: a round the log holds only part of (the last, its other cells in
    flight when the log ended) is completed as the search would."""
    mine = {cand.hash: cand for cand in pool}
    for cand in logged:
        if cand.hash in mine:
            cand.score, cand.predicted = mine[cand.hash].score, mine[cand.hash].predicted
    held = {cand.hash for cand in logged}
    return logged + [cand for cand in picked if cand.hash not in held][: max(0, n - len(logged))]


class Round(NamedTuple):
    """A round's candidates: those to train, and those whose run the zoo already holds."""

    chosen: list[Candidate]
    known: list[tuple[Candidate, Run]]


class Breeder:
    """Makes the candidates of each round (see the module doc)."""

    def __init__(self, config: SearchConfig, variation: Any, strategy: Strategy,
                 ranker: PreFilter | None = None, proposer: Proposer | None = None):
        self.config = config
        self.variation = variation
        self.strategy = strategy
        self.ranker, self.proposer = ranker, proposer
        self.rng = random.Random(config.seed)
        self.ranker_ready = ranker is not None and ranker.pretrained
        self.ranker_fitted_at = -1  # zoo runs under the configuration at the last fit
        self.proposer_results: list[tuple[str, dict]] = []
        self.functions: set[str] = set()  # fingerprints of the cells handed out (dedup)

    # ---- rounds --------------------------------------------------------------------------

    def initial(self, size: int, taken: set[str], zoo: Zoo, scope: Scope,
                logged: Logged | None = None) -> Round:
        """The human library (what the operator level allows), then random cells (with
        ``logged``: see `offspring`)."""
        cands = library_candidates(self.config.ops, self.config.limits) \
            if self.config.library else []
        cands = self._unique(cands[:size], self._random, size, taken)
        from_log = logged(BRED) if logged is not None else None
        cands = cands if from_log is None else _as_logged(from_log, cands, cands, size)
        return self._handed_out(Round(*self._split_known(cands, zoo, scope)))

    def offspring(self, k: int, taken: set[str], zoo: Zoo, scope: Scope,
                  logged: Logged | None = None) -> Round:
        """``k`` candidates to train (bred, and a share from the proposer), pre-filtered;
        none of them in ``taken``. With ``logged`` (a rebuild from a search's log), each
        source's cells are the ones ``logged`` gives for it where it holds the round: the pool
        is still made and pre-filtered (on the build and seed that wrote the log the two
        agree), but the round trains what the log says it trained, whatever this build's
        numerics or this search's seed."""
        self._refit_ranker(zoo, scope)
        self._update_proposer()
        factor = self.config.offspring_factor if self.ranker_ready else 1
        k_prop = int(round(k * self.config.controller_share)) if self.proposer else 0
        chosen, known = [], []
        for n, make, source in ((k - k_prop, self._breed, BRED), (k_prop, self._propose, PROPOSED)):
            if n == 0:
                continue
            # each source is checked against ``taken`` alone, not against the other's pool
            pool, pool_known = self._split_known(make(n * factor, set(taken)), zoo, scope)
            known += pool_known
            scores = self._score(pool)
            picked = prefilter(pool, scores, n, self.config.random_share, self.rng)
            from_log = logged(source) if logged is not None else None
            if from_log is not None:
                picked = _as_logged(from_log, pool, picked, n)
                self._score([c for c in picked if c.predicted is None])  # cells it did not draw
            chosen += picked
        return self._handed_out(Round(chosen, known))

    def _handed_out(self, done: Round) -> Round:
        """Remember what the round's cells compute (with ``dedup = "function"``)."""
        if self.config.dedup == "function":
            self.functions.update(c.behaviour.fingerprint
                                  for c in [*done.chosen, *(c for c, _ in done.known)])
        return done

    def _random(self) -> Candidate:
        return random_candidate(self.variation)

    def _breed(self, n: int, taken: set[str]) -> list[Candidate]:
        if not self.strategy.breeds:
            make = self._random
        else:
            make = lambda: bred_candidate(  # noqa: E731
                self.strategy, self.variation, self.rng, self.config.crossover_prob)
        return self._unique([], make, n, taken)

    def _propose(self, n: int, taken: set[str]) -> list[Candidate]:
        cells = self.proposer.propose(n)
        return self._unique([Candidate(c, "controller") for c in cells], None, n, taken)

    def _unique(self, cands: list[Candidate], make: Callable[[], Candidate] | None,
                n: int, taken: set[str]) -> list[Candidate]:
        """Up to ``n`` new candidates (see the module doc; ``taken`` grows with them): the
        given ones first, then ones from ``make`` (each redrawn up to `MAX_REDRAWS` times,
        then replaced by a random cell)."""
        out: list[Candidate] = []
        functions = set(self.functions)  # grows with the pool

        def take(cand: Candidate) -> bool:
            if cand.hash in taken:
                return False
            taken.add(cand.hash)
            if self.config.dedup == "function":
                seen = cand.behaviour
                if not seen.reads_input or seen.fingerprint in functions:
                    return False
                functions.add(seen.fingerprint)
            out.append(cand)
            return True

        for cand in cands:
            if len(out) < n:
                take(cand)
        while make is not None and len(out) < n:
            for attempt in range(MAX_REDRAWS + 1):
                cand = make() if attempt < MAX_REDRAWS else self._random()
                if take(cand):
                    break
            else:
                break
        return out

    @staticmethod
    def _split_known(cands: list[Candidate], zoo: Zoo, scope: Scope
                     ) -> tuple[list[Candidate], list[tuple[Candidate, Run]]]:
        """(cells to train, cells whose run of the search's kind the zoo already has)"""
        fresh, known = [], []
        for cand in cands:
            run = scope.find(zoo, cand.hash)
            (fresh.append(cand) if run is None else known.append((cand, run)))
        return fresh, known

    # ---- the plug-ins --------------------------------------------------------------------

    def _refit_ranker(self, zoo: Zoo, scope: Scope) -> None:
        if self.ranker is None:
            return
        runs = scope.fit_runs(zoo)
        if len(runs) == self.ranker_fitted_at:
            return
        if sum(r.status == "ok" for r in runs) >= (1 if self.ranker.pretrained
                                                   else MIN_RANKER_RUNS):
            self.ranker.fit(runs)
            self.ranker_ready = True
            self.ranker_fitted_at = len(runs)

    def _score(self, pool: list[Candidate]) -> list[float] | None:
        """Pre-filter scores of the pool; each candidate also keeps the predicted log ppl."""
        if not (self.ranker_ready and pool):
            return None
        cells = [c.cell for c in pool]
        for cand, log_ppl in zip(pool, self.ranker.predict(cells)[0], strict=True):
            cand.predicted = float(log_ppl)
        return [float(s) for s in self.ranker.score(cells)]

    def proposed_result(self, result: TrainResult) -> None:
        """A result of one of the proposer's candidates (it learns from them next round)."""
        self.proposer_results.append((result.expr, result.to_json()))

    def _update_proposer(self) -> None:
        if self.proposer is None or not self.proposer_results:
            return
        results = [(parse(expr), TrainResult.from_json(data))
                   for expr, data in self.proposer_results]
        self.proposer.update(results)
        self.proposer_results = []

    # ---- checkpoint ----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The JSON part of the breeder's state."""
        return {"ranker_ready": self.ranker_ready, "ranker_fitted_at": self.ranker_fitted_at,
                "proposer_results": self.proposer_results, "functions": sorted(self.functions)}

    def tensors(self) -> dict[str, Any]:
        """The binary part: the generator, variation, pre-filter and proposer states."""
        return {"rng": self.rng.getstate(), "variation": self.variation.state(),
                "ranker": self.ranker.state_dict() if self.ranker_ready else None,
                "proposer": self.proposer.state_dict() if self.proposer else None}

    def load(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        self.ranker_fitted_at = state["ranker_fitted_at"]
        self.proposer_results = [tuple(p) for p in state["proposer_results"]]
        self.functions = set(state.get("functions", []))  # absent: a structure-dedup search
        self.rng.setstate(tuples(tensors["rng"]))
        self.variation.set_state(tensors["variation"])
        if self.ranker is not None and tensors["ranker"] is not None:
            self.ranker.load_state_dict(tensors["ranker"])
            self.ranker_ready = state["ranker_ready"]
        if self.proposer is not None and tensors["proposer"] is not None:
            self.proposer.load_state_dict(tensors["proposer"])
