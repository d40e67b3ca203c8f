"""The search loop: make a round, train it, record results, checkpoint, repeat.

Like NNI's strategies, the loop never trains: it submits jobs to an executor
(`cellzoo.evolve.executors`) and reacts to finished ones. The parts it composes:

- `breeding.Breeder` makes each round's candidates: bred from the population
  and proposed by the proposer (if any), never one this search has evaluated,
  queued or has in flight, pre-filtered by the ranker (if any); cells whose run
  under this configuration the zoo already holds are reused (they join the
  population but do not count toward ``evaluations``);
- `population` strategies hold the members and pick parents;
- `rundir.RunDir` holds the stored configuration, the logs and the checkpoint.

Jobs are submitted as executor slots free. Every result is written to the zoo
(durably) and to the evaluations log, joins the population, and the state is
checkpointed. The first breeding round waits until the initial population is
complete; generational strategies wait at every round.

Rebuild (`evolve.restore`): when the run directory holds a log to restore from, a job whose
result that log holds is recorded from it instead of trained, as a training (it counts
toward ``evaluations``), so a search lost with its machine is rebuilt to where it stopped.
Such a job stays in flight, without a worker, until the log's order completes it: results
and choices come in the order they came in the run that wrote the log (`_complete`).

Resume: the checkpoint is loaded, logs are cut back to it, jobs that were in
flight but whose run this search already wrote to the zoo are taken from there,
the others are resubmitted, and the loop goes on to the same total. On a ladder, a
promotion whose result failed (an error outside the cell) is resubmitted too.

On a fidelity ladder (`SearchConfig.ladder`, `rungs.Climb`) a freed slot first takes
ASHA's next promotion (the cell continues at the next rung), else a new rung-0
candidate (probed for its rate); ``evaluations`` counts the rung-0 cells, and the
search ends when they are done, nothing is in flight and nothing can be promoted. A
rung result updates its cell's member (`Strategy.promote`): a member's fitness is its
result at the highest rung it reached, ranked within that rung (`Member.rank`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from cellzoo.common.rng import rng_states, set_rng_states
from cellzoo.evolve.breeding import Breeder, KeyScope
from cellzoo.evolve.candidates import Candidate, PreFilter, Proposer
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.executors import Executor, make_executor
from cellzoo.evolve.jobs import Job, result_from_run
from cellzoo.evolve.population import Member, make_strategy
from cellzoo.evolve.restore import Restored, slots_of
from cellzoo.evolve.rundir import CheckpointError, RunDir
from cellzoo.evolve.rungs import Climb
from cellzoo.train import TrainConfig, TrainResult, load_corpus
from cellzoo.zoo import Run, Zoo

#: results reused from the zoo, as a multiple of `evaluations`, before the search gives up
MAX_REUSE_FACTOR = 10


class SearchError(RuntimeError):
    """The search cannot go on (for example: no new candidates can be found)."""


@dataclass
class Counters:
    trained: int = 0  # trainings finished (the budget counts these, on a ladder at rung 0)
    promoted: int = 0  # of them, trainings above rung 0 (ladder promotions)
    reused: int = 0  # results taken from the zoo instead of training
    evaluated: int = 0  # members added to the population (trained + reused)
    rounds: int = 0
    waves: int = 0  # times the loop took finished jobs (one or more at once)
    next_job: int = 0
    seq: int = 0  # checkpoints written


class Event(NamedTuple):
    """A progress update: one result joined the population."""

    member: Member
    best: Member
    trained: int  # new candidates trained (what ``evaluations`` counts)
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
        self.files = RunDir(run_dir)
        self.train_config: TrainConfig = config.train_config()
        self.key = self.train_config.key()
        self.climb = None if config.ladder is None else \
            Climb(config, load_corpus(config.task, config.data_dir), self.files)
        self.scope = KeyScope(self.key) if self.climb is None else self.climb.scope
        self.strategy = make_strategy(config.strategy, config.population, config.sample)
        variation = variation or Variation(level=config.ops, limits=config.limits,
                                           seed=config.seed)
        self.breeder = Breeder(config, variation, self.strategy, ranker, proposer)
        self.executor = executor or make_executor(config.executor, config.workers)
        self.on_event = on_event
        self.search_id = uuid.uuid4().hex[:12]
        self.counters = Counters()
        self.seen: set[str] = set()  # hashes evaluated (trained or reused) by this search
        self.queue: list[Job] = []
        self.in_flight: dict[int, Job] = {}
        self.best: Member | None = None
        self.elapsed = 0.0
        self._resumed = False
        self._start = time.perf_counter()
        self.zoo: Zoo | None = None
        self.restored = Restored.read(self.files.restore_log) \
            if self.climb is not None and self.files.restore_log.is_file() else None
        self.restore_misses = 0  # jobs the restore log lacked, in this process
        self.replaying: dict[int, TrainResult] = {}  # in-flight jobs the restore log holds

    # ---- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, config: SearchConfig, run_dir: str | Path, **plugins: Any) -> Search:
        """A new search, or the one checkpointed in ``run_dir`` (with ``config`` as resolved
        by `config.for_resume`)."""
        search = cls(config, run_dir, **plugins)
        loaded = search.files.load_checkpoint()
        if loaded is not None:
            search._restore(*loaded)
            if search.restored is not None:
                search.restored.taken_in(search.files.evaluations())
        return search

    @property
    def ranker(self) -> PreFilter | None:
        return self.breeder.ranker

    @property
    def proposer(self) -> Proposer | None:
        return self.breeder.proposer

    @property
    def ranker_ready(self) -> bool:
        return self.breeder.ranker_ready

    @property
    def resumed(self) -> bool:
        return self._resumed

    @property
    def elapsed_total(self) -> float:
        """Seconds this search has run, over all its sessions."""
        return self.elapsed + time.perf_counter() - self._start

    @property
    def new_trained(self) -> int:
        """New candidates trained (at rung 0 on a ladder): what ``evaluations`` counts."""
        return self.counters.trained - self.counters.promoted

    @property
    def finished(self) -> bool:
        return (self.new_trained >= self.config.evaluations and not self.in_flight
                and not self.queue and not (self.climb and self.climb.can_promote()))

    # ---- the loop ------------------------------------------------------------------------

    def run(self) -> Search:
        """Run (or continue) to ``config.evaluations`` trainings; returns self."""
        load_corpus(self.train_config.task, self.config.data_dir)  # a missing corpus fails now
        self.files.write_config(self.config)
        try:
            # journal entries are durable; the main file takes them in once, at the end
            with Zoo.open(self.config.zoo, "a", compact_on_close=False) as zoo:
                self.zoo = zoo
                self._continue()
                while not self.finished:
                    self._fill()
                    self._checkpoint()
                    self._complete()
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
        # a cell has at most one job in flight: its result is the cell's run the log lacks
        logged = {row.get("run_id") for row in self.files.evaluations()}
        mine: dict[str, Run] = {}
        for run in self.zoo.runs():
            if run.search_id == self.search_id and run.run_id not in logged:
                mine.setdefault(run.hash, run)
        for job_id in sorted(self.in_flight):
            job = self.in_flight[job_id]
            if job.hash in mine:
                run = mine[job.hash]
                self._record_trained(job, result_from_run(run), run_id=run.run_id)
        for job_id in sorted(self.in_flight):
            if not self._take_restored(self.in_flight[job_id]):
                self.executor.submit(self.in_flight[job_id])

    def _complete(self) -> None:
        """Record the next finished jobs: restored jobs first, in the order of the restore
        log (a job the log lacks ended after every result it holds), one wave at a time."""
        if self.replaying:
            keys = {i: (self.in_flight[i].hash, self.in_flight[i].rung) for i in self.replaying}
            first = min(keys, key=lambda i: self.restored.position(keys[i]))
            wave = self.restored.wave(keys[first])
            together = [first] if wave is None else \
                [i for i in keys if self.restored.wave(keys[i]) == wave]
            self.counters.waves += 1
            for i in sorted(together, key=lambda i: self.restored.position(keys[i])):
                self._record_trained(self.in_flight[i], self.replaying.pop(i), restored=True)
            return
        finished = list(self.executor.completed())
        self.counters.waves += bool(finished)
        for job, result in finished:
            self._record_trained(job, result)

    def _slots(self) -> int:
        """Jobs to keep in flight: the executor's slots, or while a restore log has results
        to give, the workers of the run that wrote it (`Restored.slots`)."""
        replayed = self.restored.slots() if self.restored is not None else None
        return replayed or self.executor.slots

    def _fill(self) -> None:
        """Submit queued jobs while slots are free, making new rounds as needed."""
        while len(self.in_flight) < self._slots() and not self.finished:
            job = self._promotion()
            if job is not None and self._take_stored(job):
                continue
            if job is None:
                if not self.queue:
                    if self._remaining() <= 0 or self._at_barrier():
                        return
                    self._new_round()
                    continue
                job = self.queue.pop(0)
            self.in_flight[job.job_id] = job
            if not self._take_restored(job):
                self.executor.submit(job)

    def _promotion(self) -> Job | None:
        """On a ladder: the job of ASHA's next promotion, if any."""
        if self.climb is None:
            return None
        job = self.climb.promotion(self.counters.next_job)
        if job is not None:
            self.counters.next_job += 1
        return job

    def _take_stored(self, job: Job) -> bool:
        """Record a promotion whose result the zoo already holds (`Climb.stored`) without
        training it; False when it holds none."""
        found = self.climb.stored(job, self.zoo)
        if found is None:
            return False
        result, run_id = found
        self.in_flight[job.job_id] = job
        self._record_trained(job, result, run_id=run_id, reused=True)
        return True

    def _take_restored(self, job: Job) -> bool:
        """Record an in-flight job from the restored log (`evolve.restore`) without training
        it; False when the log holds no result for it."""
        if self.restored is None:
            return False
        result = self.restored.result(job, self.climb.ladder, self.climb.corpus)
        if result is None:
            self._check_on_log(job)
            return False
        self.replaying[job.job_id] = result
        return True

    def _check_on_log(self, job: Job) -> None:
        """SearchError when the rebuilt search has left its restore log: it is about to
        train jobs the log lacks (beyond the jobs the run that wrote it can have had in
        flight when the log ended, `Restored.final_slots`, whatever the workers now; a
        promotion the log has failed is trained again) while
        the log still holds results it has not taken. What it restored is checkpointed
        first, ``job`` in flight and not submitted."""
        if (job.hash, job.rung) in self.restored.retried:
            return
        self.restore_misses += 1
        left = len(self.restored.untaken)
        if self.restore_misses < self.restored.final_slots() or not left:
            return
        self._checkpoint()  # with the job in flight, untrained: --resume submits it
        raise SearchError(
            f"the rebuilt search has left its log {self.restored.source}: it would train "
            f"cell {job.hash[:8]} at rung {job.rung}, which the log lacks, while {left} of "
            f"its {len(self.restored)} results are still untaken; the log was written under "
            f"another ladder configuration, or rows are missing from it. "
            f"Rebuild with the configuration it was run under, or, to train on from here "
            f"without the rest of the log, delete {self.files.restore_log} and run "
            f"`cellzoo evolve --resume {self.files.path}`")

    def _new_in_flight(self) -> int:
        return sum(job.rung == 0 for job in self.in_flight.values())

    def _remaining(self) -> int:
        busy = self.new_trained + self._new_in_flight() + len(self.queue)
        return self.config.evaluations - busy

    def _at_barrier(self) -> bool:
        """Wait for the running round's new candidates: always before the first breeding
        round, and at every round for generational strategies."""
        waits = self.strategy.generational or self.counters.rounds == 1
        return waits and self._new_in_flight() > 0

    # ---- making rounds -------------------------------------------------------------------

    def _new_round(self) -> None:
        if self.strategy.generational and self.counters.rounds > 0:
            self.strategy.end_generation()
        index = self.counters.rounds
        self.counters.rounds += 1
        taken = self.seen | {j.hash for j in self.queue} | {j.hash for j in self.in_flight.values()}
        logged = None if self.restored is None else partial(self.restored.round_cells, index)
        if index == 0:
            chosen, known = self.breeder.initial(self.config.population, taken, self.zoo,
                                                 self.scope, logged)
            chosen = chosen[: self._remaining()]
        else:
            chosen, known = self.breeder.offspring(
                min(self.config.round_size, self._remaining()), taken, self.zoo, self.scope,
                logged)
        for cand in chosen:
            self.queue.append(self._new_job(cand, index))
            self.counters.next_job += 1
        for cand, run in known:
            self._record_reused(cand, run, index)
        if not chosen and not known:
            raise SearchError("no new candidate could be found: every cell drawn was already "
                              "evaluated by this search (is the search space this small?)")

    def _new_job(self, cand: Candidate, index: int) -> Job:
        """A new candidate's job: proxy training, or rung 0 of the ladder."""
        lineage = cand.lineage(index, self.search_id)
        extra = {"score": cand.score, "predicted": cand.predicted, "round": index}
        if self.climb is not None:
            return self.climb.job(self.counters.next_job, cand.expr, lineage, **extra)
        return Job(self.counters.next_job, cand.expr, self.train_config.to_dict(),
                   self.config.data_dir, lineage, **extra)

    # ---- recording results ---------------------------------------------------------------

    def _record_trained(self, job: Job, result: TrainResult, run_id: str | None = None,
                        reused: bool = False, restored: bool = False) -> None:
        """A finished job: into the zoo (unless it is there already as ``run_id``), then into
        the population. ``reused``: a promotion taken from a stored run, not trained;
        ``restored``: a training's result taken from the restored log."""
        if job.job_id not in self.in_flight:
            return
        del self.in_flight[job.job_id]
        if run_id is None:
            run_id = self.zoo.add_run(result, lineage=job.lineage)
        self.counters.trained += not reused
        self.counters.promoted += job.rung > 0 and not reused
        if self.climb is not None:
            self.climb.record(job, result)
        lineage = job.lineage
        member = Member(job.hash, result.expr, result.status, float(result.val_ppl),
                        self.counters.evaluated, lineage["origin"], lineage["generation"],
                        reused=reused, rung=job.rung)
        if lineage["origin"] == "controller" and job.rung == 0:
            self.breeder.proposed_result(result)
        if job.predicted is not None:
            self.files.log_ranker({
                "n": member.born, "round": job.round, "rung": job.rung, "hash": job.hash,
                "predicted": job.predicted, "score": job.score,
                "true_log_ppl": math.log(member.val_ppl) if member.fitness > -math.inf
                else None, "status": result.status})
        marks = {"slots": self.executor.slots, "wave": self.counters.waves,
                 "device": result.device, "branch_seconds": result.branch_seconds}
        if restored:  # where and how the run that wrote the log recorded it
            key = (job.hash, job.rung)
            self.restored.recorded(key)
            row = self.restored.rows[key]
            marks = {"slots": slots_of(row), "wave": row.get("wave"), "restored": True,
                     **{k: row[k] for k in ("time", "device", "branch_seconds") if k in row}}
        if math.isfinite(result.test_ppl):  # kept, so that a rebuild restores it to the zoo
            marks["test_ppl"] = result.test_ppl
        self._admit(member, lineage, job.round, run_id, result.cost_seconds, marks)

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
               seconds: float, marks: dict[str, Any] | None = None) -> None:
        if member.rung > 0:
            self.strategy.promote(member)
        else:
            self.strategy.add(member)
        self.seen.add(member.hash)
        self.counters.evaluated += 1
        if self.best is None or member.rank > self.best.rank:
            self.best = member
        row = {**member.to_dict(), "n": member.born, "trained": self.counters.trained,
               "round": round_index, "operator": lineage.get("operator"),
               "parents": lineage.get("parents"), "run_id": run_id, "seconds": seconds,
               "best_val_ppl": self.best.to_dict()["val_ppl"], "time": time.time(),
               **(marks or {})}
        if self.climb is not None:  # the cell's probed learning rate, the rung's budget
            row["lr"] = self.climb.cells[member.hash]["lr"]
            row["rung_tokens"] = self.climb.budgets[member.rung]
        self.files.log_evaluation(row)
        if self.on_event is not None:
            self.on_event(Event(member, self.best, self.new_trained,
                                self.config.evaluations, self.counters.reused,
                                self.elapsed_total))

    # ---- checkpoints ---------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """The loop's state, the population's and the breeder's, in the format
        `RunDir.save_checkpoint` writes (the breeder's fit count stays among the counters)."""
        self.counters.seq += 1
        bred = self.breeder.state()
        state = {
            "search_id": self.search_id, "config": self.config.to_dict(),
            "train_config": self.train_config.to_dict(), "config_key": self.key,
            "counters": {**asdict(self.counters),
                         "ranker_fitted_at": bred.pop("ranker_fitted_at")},
            "strategy": self.strategy.state_dict(),
            "best": self.best.to_dict() if self.best else None, "seen": sorted(self.seen),
            "queue": [j.to_dict() for j in self.queue],
            "in_flight": [self.in_flight[i].to_dict() for i in sorted(self.in_flight)],
            **bred, "elapsed": self.elapsed_total,
            "ladder": self.climb.state_dict() if self.climb else None,
        }
        tensors = {"global_rng": rng_states(), **self.breeder.tensors()}
        self.files.save_checkpoint(self.counters.seq, state, tensors)
        if self.climb is not None:
            self.climb.prune()

    def _restore(self, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        if state["config_key"] != self.key:
            raise CheckpointError(
                f"{self.run_dir} holds a search under training configuration "
                f"{state['config_key']}, not {self.key}")
        counters = dict(state["counters"])
        self.search_id = state["search_id"]
        set_rng_states(tensors["global_rng"])  # before the plug-ins rebuild their models
        self.breeder.load({**state, "ranker_fitted_at": counters.pop("ranker_fitted_at")},
                          tensors)
        self.counters = Counters(**counters)
        self.strategy.load_state_dict(state["strategy"])
        self.best = Member.from_dict(state["best"]) if state["best"] else None
        self.seen = set(state["seen"])
        self.queue = [Job.from_dict(j) for j in state["queue"]]
        self.in_flight = {j["job_id"]: Job.from_dict(j) for j in state["in_flight"]}
        self.elapsed = state["elapsed"]
        if self.climb is not None:
            self.climb.load_state_dict(state["ladder"])
        self.files.cut_logs(self.counters.evaluated)
        if self.climb is not None:
            self._retry_failed()
        self._resumed = True

    def _retry_failed(self) -> None:
        """Promotions that failed (an error outside the cell, not a divergence) train again:
        each goes back in flight, to be resubmitted with the others, and its member returns
        to its result at the rung below until the new one arrives. The failed run stays in
        the zoo and the log; a failure that repeats costs one attempt per resume."""
        for cell_hash, rung, below in self.climb.failed_promotions(self.files.evaluations()):
            job = self.climb.retry(self.counters.next_job, cell_hash, rung)
            self.counters.next_job += 1
            self.in_flight[job.job_id] = job
            self.strategy.promote(Member.from_log(below))

    # ---- reporting -----------------------------------------------------------------------

    def top(self, k: int = 10) -> list[dict[str, Any]]:
        """The best ``k`` cells this search evaluated (from its log), best first: on a ladder
        each cell's row at the highest rung it reached, higher rungs first."""
        rows = {}
        for row in self.files.evaluations():  # a cell's later rows are higher rungs
            rows[row["hash"]] = row
        ok = [r for r in rows.values() if r["status"] == "ok" and r["val_ppl"] is not None]
        return sorted(ok, key=lambda r: (-r.get("rung", 0), r["val_ppl"], r["n"]))[:k]
