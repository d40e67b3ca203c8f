"""The search's side of the fidelity ladder: rung jobs, ASHA's state, each cell's rate.

A ladder search (`SearchConfig.ladder`) trains each new candidate at rung 0 through
the learning-rate probe, and continues a cell at the next rung whenever ASHA's rule
promotes it (`Asha.next_promotion`, asked first whenever an executor slot frees). A
cell's rate, lineage and pre-filter scores stay with it up the ladder; its rung jobs
checkpoint under the run directory's ``cells/<hash>/``. A promotion whose result the zoo
already holds, from a full run of the cell at its rate, is taken from there untrained
(`Climb.stored`). `Climb` holds all of it as plain data for the search's checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.jobs import Job, result_from_run
from cellzoo.evolve.ladder import Asha, Ladder, prefix_point, prune_rungs
from cellzoo.evolve.rundir import RunDir
from cellzoo.train import TrainResult
from cellzoo.train.config import NOT_LEARNED
from cellzoo.train.corpus import Corpus
from cellzoo.zoo import Run, Zoo

#: TrainConfig fields that differ between cells at one rung (width, probed rate), and those
#: that change nothing learned (device, extra evaluation points)
PER_CELL = ("hidden", "lr", *NOT_LEARNED)


def recipe(config: dict[str, Any]) -> dict[str, Any]:
    """A rung's training recipe: a TrainConfig dict without its per-cell fields."""
    return {k: v for k, v in config.items() if k not in PER_CELL}


@dataclass(frozen=True)
class RungScope:
    """A ladder search's `breeding.Scope`: no new candidate is reused from the zoo (a cell's
    rate comes from its own probe; only promotions may be, see `Climb.stored`); the
    pre-filter is fitted on the zoo's runs under rung 0's recipe, at any width and rate."""

    rung0: dict[str, Any]

    def find(self, zoo: Zoo, cell_hash: str) -> Run | None:
        return None

    def fit_runs(self, zoo: Zoo) -> list[Run]:
        return [r for r in zoo.runs() if recipe(r.config) == self.rung0]


@dataclass
class Climb:
    """The ladder of one search, its ASHA state and its cells (hash -> what their rung jobs
    need: text, rate, lineage, pre-filter score and prediction, round)."""

    config: SearchConfig
    corpus: Corpus
    files: RunDir
    ladder: Ladder = field(init=False)
    asha: Asha = field(init=False)
    scope: RungScope = field(init=False)
    budgets: list[int] = field(init=False)  # each rung's training tokens
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: cells recorded since the last `prune` (all of them after a restore)
    unpruned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.ladder = self.config.make_ladder()
        reference = self.ladder.configs(self.ladder.reference, self.corpus)  # checks budgets
        self.asha = Asha(self.ladder.eta, len(reference))
        self.scope = RungScope(recipe(reference[0].to_dict()))
        self.budgets = self.ladder.budgets(self.corpus)

    def job(self, job_id: int, expr: str, lineage: dict[str, Any], rung: int = 0,
            lr: float | None = None, **extra: Any) -> Job:
        """A rung job for cell ``expr`` (at rung 0 without ``lr``: the probe picks it)."""
        job = Job(job_id, expr, self.ladder.base.to_dict(), self.config.data_dir, lineage,
                  rung=rung, lr=lr, ladder=self.config.ladder, **extra)
        job.checkpoint = str(self.files.cell_dir(job.hash).absolute())  # for any worker's cwd
        return job

    def promotion(self, job_id: int) -> Job | None:
        """The next promotion's job (ASHA marks the cell as taken), or None."""
        found = self.asha.next_promotion()
        if found is None:
            return None
        return self._rung_job(job_id, *found)

    def _rung_job(self, job_id: int, cell_hash: str, rung: int) -> Job:
        cell = self.cells[cell_hash]
        return self.job(job_id, cell["expr"], cell["lineage"], rung, cell["lr"],
                        score=cell["score"], predicted=cell["predicted"], round=cell["round"])

    def stored(self, job: Job, zoo: Zoo) -> tuple[TrainResult, str] | None:
        """A promotion's result that needs no training, with the zoo run it comes from: the
        cell's full run at its rate (the top rung's configuration, seed 0, as `cellzoo train
        CELL --preset P --match-params REF --lr RATE --zoo Z` stores it) is its top-rung
        result, and on prefix rungs that run's learning-curve point at a lower rung's budget
        (`ladder.prefix_point`) is that rung's validation result. None when the zoo holds no
        such run or point."""
        mine = job.lineage.get("search_id")
        if not any(run.hash == job.hash and run.search_id != mine
                   for run in zoo.runs(status="ok")):
            return None  # no run of this cell but the search's own: spare finding its width
        configs = self.ladder.configs(job.expr, self.corpus, job.lr)
        full = zoo.find_run(job.hash, configs[-1].key())
        if full is None or full.status != "ok":
            return None
        if job.rung == len(configs) - 1:
            return replace(result_from_run(full), seconds=0.0), full.run_id
        point = prefix_point(full.curve, configs[job.rung]) \
            if self.ladder.schedule == "prefix" else None
        if point is None:
            return None
        return replace(result_from_run(full), val_ppl=point["val_ppl"], test_ppl=math.nan,
                       tokens_trained=point["tokens"], seconds=0.0,
                       config=configs[job.rung]), full.run_id

    def can_promote(self) -> bool:
        return any(self.asha.promotable(k) for k in range(self.asha.rungs - 1))

    def record(self, job: Job, result: TrainResult) -> None:
        """A rung result: a rung-0 cell keeps its probed rate; an ok run counts for ASHA on
        its perplexity, also when no probe rate passed (its ``error`` says so)."""
        if job.rung == 0:
            self.cells[job.hash] = {
                "expr": job.expr, "lr": result.config.learning_rate, "lineage": job.lineage,
                "score": job.score, "predicted": job.predicted, "round": job.round}
        ok = result.status == "ok"
        self.asha.record(job.rung, job.hash, result.val_ppl if ok else None)
        self.unpruned.add(job.hash)

    def prune(self) -> None:
        """Delete the rung checkpoints no job can need any more, of each cell recorded since
        the last call (`ladder.prune_rungs` at its highest rung with a result, else its
        highest recorded one: a failed promotion keeps the branch its retry continues).
        The search calls it after each checkpoint of its own, which covers every recorded
        result, so a resumed search never reruns a job whose folders are gone."""
        for cell_hash in sorted(self.unpruned):
            recorded = [(results[cell_hash] is not None, k)
                        for k, results in enumerate(self.asha.results) if cell_hash in results]
            prune_rungs(self.files.cell_dir(cell_hash), max(recorded)[1],
                        self.cells[cell_hash]["lr"])
        self.unpruned.clear()

    def failed_promotions(self, log: list[dict[str, Any]]) -> list[tuple[str, int, dict]]:
        """(cell hash, rung, the cell's row at the rung below) of each promotion whose result
        in ``log`` (the evaluations log, in order) is the cell's last and failed: an error
        outside the cell (a diverged result stands), recorded and not yet retried."""
        last = {row["hash"]: row for row in log}
        rows = {(row["hash"], row["rung"]): row for row in log}
        return [(h, row["rung"], rows[h, row["rung"] - 1]) for h, row in last.items()
                if row["rung"] > 0 and row["status"] == "failed"
                and h in self.asha.results[row["rung"]]]

    def retry(self, job_id: int, cell_hash: str, rung: int) -> Job:
        """The job that trains a failed promotion again (ASHA forgets the failed result)."""
        self.asha.forget(rung, cell_hash)
        return self._rung_job(job_id, cell_hash, rung)

    def state_dict(self) -> dict[str, Any]:
        return {"asha": self.asha.state_dict(), "cells": self.cells}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.asha.load_state_dict(state["asha"])
        self.cells = dict(state["cells"])
        self.unpruned = set(self.cells)
