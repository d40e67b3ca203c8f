"""The search loop: generate candidates, drop known ones, pre-filter, train, record, repeat.

Like NNI's strategies, the loop never trains: it submits jobs to an executor
(`cellzoo.evolve.executors`) and reacts to finished ones. Per round it

1. refits the ranker (if any) on the zoo's runs under this configuration and
   updates the proposer (if any) with the results of its own candidates;
2. makes ``offspring_factor`` times more candidates than it will train (1 times
   without a fitted ranker), from the population and from the proposer;
3. drops every cell this search has evaluated, queued or has in flight (it is
   redrawn), and reuses results the zoo already holds under this configuration
   (they join the population but do not count toward ``evaluations``);
4. keeps the best-scored plus a random share (`candidates.prefilter`) and queues them.

Jobs are submitted as executor slots free. Every result is written to the zoo
(durably) and to ``evaluations.jsonl``, joins the population, and the state is
checkpointed. The first breeding round waits until the initial population is
complete; generational strategies wait at every round.

Resume: the checkpoint is loaded, logs are cut back to it, jobs that were in
flight but whose run this search already wrote to the zoo are taken from there,
the others are resubmitted, and the loop goes on to the same total.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cellzoo.dsl import parse
from cellzoo.evolve import checkpoint as ckpt
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
from cellzoo.evolve.executors import Executor, Job, make_executor
from cellzoo.evolve.population import Member, make_strategy
from cellzoo.train import TrainConfig, TrainResult, load_corpus
from cellzoo.zoo import Run, Zoo

log = logging.getLogger(__name__)

#: redraws of a candidate that duplicates a known cell before a random cell is tried instead
MAX_REDRAWS = 50
#: the ranker is fitted once the zoo holds this many runs under the search's configuration
MIN_RANKER_RUNS = 8
#: results reused from the zoo, as a multiple of `evaluations`, before the search gives up
MAX_REUSE_FACTOR = 10
EVALUATIONS_LOG = "evaluations.jsonl"
RANKER_LOG = "ranker_log.jsonl"


class SearchError(RuntimeError):
    """The search cannot go on (for example: no new candidates can be found)."""


@dataclass
class Counters:
    trained: int = 0  # trainings finished (the budget counts these)
    reused: int = 0  # results taken from the zoo instead of training
    evaluated: int = 0  # members added to the population (trained + reused)
    rounds: int = 0
    next_job: int = 0
    seq: int = 0  # checkpoints written
    ranker_fitted_at: int = -1  # zoo runs under this configuration at the last fit


class Event(NamedTuple):
    """A progress update: one result joined the population."""

    member: Member
    best: Member
    trained: int
    total: int
    reused: int
    elapsed: float


class Search:
    """One search in one run directory. Build with `Search.open`, then call `run()`."""

    def __init__(self, config: SearchConfig, run_dir: str | Path, *, variation: Any = None,
                 ranker: PreFilter | None = None, proposer: Proposer | None = None,
                 executor: Executor | None = None,
                 on_event: Callable[[Event], None] | None = None):
        from cellzoo.evolve.variation import Variation

        self.config = config
        self.run_dir = Path(run_dir)
        self.train_config: TrainConfig = config.train_config()
        self.key = self.train_config.key()
        self.variation = variation or Variation(level=config.ops, limits=config.limits,
                                                seed=config.seed)
        self.rng = random.Random(config.seed)
        self.strategy = make_strategy(config.strategy, config.population, config.sample)
        self.ranker, self.proposer = ranker, proposer
        self.executor = executor or make_executor(config.executor, config.workers)
        self.on_event = on_event
        self.search_id = uuid.uuid4().hex[:12]
        self.counters = Counters()
        self.seen: set[str] = set()  # hashes evaluated (trained or reused) by this search
        self.queue: list[Job] = []
        self.in_flight: dict[int, Job] = {}
        self.proposer_results: list[tuple[str, dict]] = []
        self.best: Member | None = None
        self.ranker_ready = False
        self.elapsed = 0.0
        self._resumed = False
        self._start = time.perf_counter()
        self.zoo: Zoo | None = None

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, config: SearchConfig, run_dir: str | Path, **plugins: Any) -> Search:
        """A new search, or the one checkpointed in ``run_dir`` (with ``config`` as resolved
        by `config.for_resume`)."""
        search = cls(config, run_dir, **plugins)
        loaded = ckpt.load_checkpoint(search.run_dir)
        if loaded is not None:
            search._restore(*loaded)
        return search

    @property
    def resumed(self) -> bool:
        return self._resumed

    @property
    def elapsed_total(self) -> float:
        """Seconds this search has run, over all its sessions."""
        return self.elapsed + time.perf_counter() - self._start

    @property
    def finished(self) -> bool:
        return (self.counters.trained >= self.config.evaluations and not self.in_flight
                and not self.queue)

    # ---- the loop ------------------------------------------------------------------------

    def run(self) -> Search:
        """Run (or continue) to ``config.evaluations`` trainings; returns self."""
        load_corpus(self.train_config.task, self.config.data_dir)  # a missing corpus fails now
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(self.run_dir / ckpt.CONFIG_NAME, self.config.to_dict())
        try:
            # journal entries are durable; the main file takes them in once, at the end
            with Zoo.open(self.config.zoo, "a", compact_on_close=False) as zoo:
                self.zoo = zoo
                self._continue()
                while not self.finished:
                    self._fill()
                    self._checkpoint()
                    for job, result in self.executor.completed():
                        self._record_trained(job, result)
                    self._checkpoint()
                if self.strategy.generational:
                    self.strategy.end_generation()
                    self._checkpoint()
                zoo.compact()
        finally:
            self.executor.close()
            self.zoo = None
        return self

    def _continue(self) -> None:
        """After a restore: take finished in-flight jobs from the zoo, resubmit the rest."""
        if not self.in_flight:
            return
        mine = {r.hash: r for r in self.zoo.runs()
                if r.search_id == self.search_id and r.config_key == self.key}
        for job_id in sorted(self.in_flight):
            job = self.in_flight[job_id]
            if job.hash in mine:
                run = mine[job.hash]
                self._record_trained(job, result_from_run(run), run_id=run.run_id)
        for job_id in sorted(self.in_flight):
            self.executor.submit(self.in_flight[job_id])

    def _fill(self) -> None:
        """Submit queued jobs while slots are free, making new rounds as needed."""
        while len(self.in_flight) < self.executor.slots and not self.finished:
            if not self.queue:
                if self._remaining() <= 0 or self._at_barrier():
                    return
                self._new_round()
                continue
            job = self.queue.pop(0)
            self.in_flight[job.job_id] = job
            self.executor.submit(job)

    def _remaining(self) -> int:
        busy = self.counters.trained + len(self.in_flight) + len(self.queue)
        return self.config.evaluations - busy

    def _at_barrier(self) -> bool:
        """Wait for the running round: always before the first breeding round, and at
        every round for generational strategies."""
        waits = self.strategy.generational or self.counters.rounds == 1
        return waits and bool(self.in_flight)

    # ---- making rounds -------------------------------------------------------------------

    def _new_round(self) -> None:
        if self.strategy.generational and self.counters.rounds > 0:
            self.strategy.end_generation()
        index = self.counters.rounds
        self.counters.rounds += 1
        if index == 0:
            chosen, known = self._initial(self.config.population)
            chosen = chosen[: self._remaining()]
        else:
            chosen, known = self._offspring_round(min(self.config.round_size, self._remaining()))
        for cand in chosen:
            self.queue.append(Job(self.counters.next_job, cand.expr, self.train_config.to_dict(),
                                  self.config.data_dir, cand.lineage(index, self.search_id),
                                  score=cand.score, predicted=cand.predicted, round=index))
            self.counters.next_job += 1
        for cand, run in known:
            self._record_reused(cand, run, index)
        if not chosen and not known:
            raise SearchError("no new candidate could be found: every cell drawn was already "
                              "evaluated by this search (is the search space this small?)")

    def _initial(self, size: int) -> tuple[list[Candidate], list[tuple[Candidate, Run]]]:
        cands = library_candidates(self.config.ops, self.config.limits) \
            if self.config.library else []
        cands = self._unique(cands[:size], lambda: random_candidate(self.variation), size)
        return self._split_known(cands)

    def _offspring_round(self, k: int) -> tuple[list[Candidate], list[tuple[Candidate, Run]]]:
        self._refit_ranker()
        self._update_proposer()
        factor = self.config.offspring_factor if self.ranker_ready else 1
        k_prop = int(round(k * self.config.controller_share)) if self.proposer else 0
        chosen, known = [], []
        for n, make in ((k - k_prop, self._breed), (k_prop, self._propose)):
            if n == 0:
                continue
            pool, pool_known = self._split_known(make(n * factor))
            known += pool_known
            scores = self._score(pool)
            chosen += prefilter(pool, scores, n, self.config.random_share, self.rng)
        return chosen, known

    def _breed(self, n: int) -> list[Candidate]:
        if not self.strategy.breeds:
            make = lambda: random_candidate(self.variation)  # noqa: E731
        else:
            make = lambda: bred_candidate(  # noqa: E731
                self.strategy, self.variation, self.rng, self.config.crossover_prob)
        return self._unique([], make, n)

    def _propose(self, n: int) -> list[Candidate]:
        cells = self.proposer.propose(n)
        return self._unique([Candidate(c, "controller") for c in cells], None, n)

    def _unique(self, cands: list[Candidate], make: Callable[[], Candidate] | None,
                n: int) -> list[Candidate]:
        """Up to ``n`` candidates no one has evaluated, queued, or has in flight: the given
        ones first, then ones from ``make`` (each redrawn up to `MAX_REDRAWS` times, then
        replaced by a random cell)."""
        taken = self.seen | {j.hash for j in self.queue} | {j.hash for j in self.in_flight.values()}
        out: list[Candidate] = []

        def take(cand: Candidate) -> bool:
            if cand.hash in taken:
                return False
            taken.add(cand.hash)
            out.append(cand)
            return True

        for cand in cands:
            if len(out) < n:
                take(cand)
        while make is not None and len(out) < n:
            for attempt in range(MAX_REDRAWS + 1):
                cand = make() if attempt < MAX_REDRAWS else random_candidate(self.variation)
                if take(cand):
                    break
            else:
                break
        return out

    def _split_known(self, cands: list[Candidate]
                     ) -> tuple[list[Candidate], list[tuple[Candidate, Run]]]:
        """(cells to train, cells whose run under this configuration the zoo already has)"""
        fresh, known = [], []
        for cand in cands:
            run = self.zoo.find_run(cand.hash, self.key)
            (fresh.append(cand) if run is None else known.append((cand, run)))
        return fresh, known

    # ---- the plug-ins --------------------------------------------------------------------

    def _refit_ranker(self) -> None:
        if self.ranker is None:
            return
        runs = [r for r in self.zoo.runs() if r.config_key == self.key]
        if len(runs) == self.counters.ranker_fitted_at:
            return
        if sum(r.status == "ok" for r in runs) >= MIN_RANKER_RUNS:
            self.ranker.fit(runs)
            self.ranker_ready = True
            self.counters.ranker_fitted_at = len(runs)

    def _score(self, pool: list[Candidate]) -> list[float] | None:
        """Pre-filter scores of the pool; each candidate also keeps the predicted log ppl."""
        if not (self.ranker_ready and pool):
            return None
        cells = [c.cell for c in pool]
        for cand, log_ppl in zip(pool, self.ranker.predict(cells)[0], strict=True):
            cand.predicted = float(log_ppl)
        return [float(s) for s in self.ranker.score(cells)]

    def _update_proposer(self) -> None:
        if self.proposer is None or not self.proposer_results:
            return
        results = [(parse(expr), TrainResult.from_json(data))
                   for expr, data in self.proposer_results]
        self.proposer.update(results)
        self.proposer_results = []

    # ---- recording results ---------------------------------------------------------------

    def _record_trained(self, job: Job, result: TrainResult, run_id: str | None = None) -> None:
        """A finished job: into the zoo (unless it is there already as ``run_id``), then into
        the population."""
        if job.job_id not in self.in_flight:
            return
        del self.in_flight[job.job_id]
        if run_id is None:
            run_id = self.zoo.add_run(result, lineage=job.lineage)
        self.counters.trained += 1
        lineage = job.lineage
        member = Member(job.hash, result.expr, result.status, float(result.val_ppl),
                        self.counters.evaluated, lineage["origin"], lineage["generation"])
        if lineage["origin"] == "controller":
            self.proposer_results.append((result.expr, result.to_json()))
        if job.predicted is not None:
            ckpt.append_jsonl(self.run_dir / RANKER_LOG, {
                "n": member.born, "round": job.round, "hash": job.hash,
                "predicted": job.predicted, "score": job.score,
                "true_log_ppl": math.log(member.val_ppl) if member.fitness > -math.inf
                else None, "status": result.status})
        self._admit(member, lineage, job.round, run_id, result.seconds)

    def _record_reused(self, cand: Candidate, run: Run, round_index: int) -> None:
        self.counters.reused += 1
        if self.counters.reused > MAX_REUSE_FACTOR * self.config.evaluations:
            raise SearchError(f"the zoo already holds {self.counters.reused} of the cells this "
                              f"search drew; the search space is exhausted for this configuration")
        member = Member(run.hash, run.expr, run.status, float(run.val_ppl),
                        self.counters.evaluated, cand.origin, cand.generation, reused=True)
        self._admit(member, cand.lineage(round_index, self.search_id), round_index, run.run_id,
                    0.0)

    def _admit(self, member: Member, lineage: dict, round_index: int, run_id: str | None,
               seconds: float) -> None:
        self.strategy.add(member)
        self.seen.add(member.hash)
        self.counters.evaluated += 1
        if self.best is None or member.fitness > self.best.fitness:
            self.best = member
        ckpt.append_jsonl(self.run_dir / EVALUATIONS_LOG, {
            **member.to_dict(), "n": member.born, "trained": self.counters.trained,
            "round": round_index, "operator": lineage.get("operator"),
            "parents": lineage.get("parents"), "run_id": run_id, "seconds": seconds,
            "best_val_ppl": self.best.to_dict()["val_ppl"], "time": time.time()})
        if self.on_event is not None:
            self.on_event(Event(member, self.best, self.counters.trained,
                                self.config.evaluations, self.counters.reused,
                                self.elapsed_total))

    # ---- checkpoints ---------------------------------------------------------------------

    def _checkpoint(self) -> None:
        self.counters.seq += 1
        state = {
            "search_id": self.search_id, "config": self.config.to_dict(),
            "train_config": self.train_config.to_dict(), "config_key": self.key,
            "counters": asdict(self.counters), "strategy": self.strategy.state_dict(),
            "best": self.best.to_dict() if self.best else None, "seen": sorted(self.seen),
            "queue": [j.to_dict() for j in self.queue],
            "in_flight": [self.in_flight[i].to_dict() for i in sorted(self.in_flight)],
            "proposer_results": self.proposer_results, "ranker_ready": self.ranker_ready,
            "elapsed": self.elapsed_total,
        }
        tensors = {
            "rng": self.rng.getstate(), "global_rng": ckpt.global_rng_states(),
            "variation": self.variation.state(),
            "ranker": self.ranker.state_dict() if self.ranker_ready else None,
            "proposer": self.proposer.state_dict() if self.proposer else None,
        }
        ckpt.save_checkpoint(self.run_dir, self.counters.seq, state, tensors)

    def _restore(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        if state["config_key"] != self.key:
            raise ckpt.CheckpointError(
                f"{self.run_dir} holds a search under training configuration "
                f"{state['config_key']}, not {self.key}")
        self.search_id = state["search_id"]
        self.counters = Counters(**state["counters"])
        self.strategy.load_state_dict(state["strategy"])
        self.best = Member.from_dict(state["best"]) if state["best"] else None
        self.seen = set(state["seen"])
        self.queue = [Job.from_dict(j) for j in state["queue"]]
        self.in_flight = {j["job_id"]: Job.from_dict(j) for j in state["in_flight"]}
        self.proposer_results = [tuple(p) for p in state["proposer_results"]]
        self.elapsed = state["elapsed"]
        self.rng.setstate(ckpt._tuples(tensors["rng"]))
        ckpt.set_global_rng_states(tensors["global_rng"])
        self.variation.set_state(tensors["variation"])
        if self.ranker is not None and tensors["ranker"] is not None:
            self.ranker.load_state_dict(tensors["ranker"])
            self.ranker_ready = state["ranker_ready"]
        if self.proposer is not None and tensors["proposer"] is not None:
            self.proposer.load_state_dict(tensors["proposer"])
        done = self.counters.evaluated
        ckpt.truncate_jsonl(self.run_dir / EVALUATIONS_LOG, lambda row: row["n"] < done)
        ckpt.truncate_jsonl(self.run_dir / RANKER_LOG, lambda row: row["n"] < done)
        self._resumed = True

    # ---- reporting -----------------------------------------------------------------------

    def top(self, k: int = 10) -> list[dict[str, Any]]:
        """The best ``k`` cells this search evaluated (from its log), best first."""
        rows = [r for r in ckpt.read_jsonl(self.run_dir / EVALUATIONS_LOG)
                if r["status"] == "ok" and r["val_ppl"] is not None]
        return sorted(rows, key=lambda r: (r["val_ppl"], r["n"]))[:k]


def result_from_run(run: Run) -> TrainResult:
    """A zoo run as a TrainResult (no curve or weights), for runs the search takes from it."""
    return TrainResult(
        expr=run.expr, hash=run.hash, status=run.status, val_ppl=run.val_ppl,
        test_ppl=run.test_ppl, params=run.params, tokens_per_s=run.tokens_per_s,
        seconds=run.seconds, tokens_trained=run.tokens_trained, curve=[], device=run.device,
        error=run.error, config=TrainConfig.from_dict(run.config))


def make_ranker() -> PreFilter:
    """A fresh `cellzoo.ranker.Ranker` (imported only when a search asks for one)."""
    try:
        from cellzoo.ranker import Ranker
    except ImportError as err:
        raise SearchError(f"--ranker needs cellzoo.ranker.Ranker, which cannot be imported "
                          f"here ({err}); run without --ranker") from None
    return Ranker()


def make_proposer(config: SearchConfig) -> Proposer:
    """A fresh `cellzoo.evolve.controller.Controller` for the search's operators and limits."""
    try:
        from cellzoo.evolve.controller import Controller
    except ImportError as err:
        raise SearchError(f"--controller needs cellzoo.evolve.controller.Controller, which "
                          f"cannot be imported here ({err}); run without --controller") from None
    return Controller(level=config.ops, limits=config.limits, seed=config.seed)


def stored_config(run_dir: str | Path) -> SearchConfig | None:
    """The configuration of the search checkpointed in ``run_dir`` (None if there is none)."""
    loaded = ckpt.load_checkpoint(Path(run_dir))
    return None if loaded is None else SearchConfig.from_dict(loaded[0]["config"])
