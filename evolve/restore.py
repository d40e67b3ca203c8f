"""Results restored from an earlier run's evaluations log, for a search whose run directory
and zoo were lost.

A ladder search's results live in its run directory and zoo, gigabytes that a machine
which is not kept takes with it; its evaluations log (a few hundred kilobytes, kept beside
the results) holds every result the search acted on. `cellzoo evolve --restore LOG` runs
the search again from the start under the same configuration and seed, and each job whose
result LOG holds (the same cell at the same rung and learning rate) is taken from LOG
instead of trained. The search's choices depend only on those results (breeding, ASHA,
the ranker's fits and the controller's updates read cell, status and perplexity), so it
makes the same choices in the same order until it reaches a job that LOG lacks, and from
there it trains. Where its numerics differ from the run that wrote LOG (another PyTorch
build or processor: the ranker's predictions and the controller's samples move in the last
digits, and a pre-filter that ranks two offspring almost level keeps the other), or its
seed does, each round trains the cells LOG says it trained (`round_cells`), so
the rebuild still follows LOG to its end; from there the search goes on with its own
choices. A search that reaches jobs LOG lacks while LOG still holds results it has not
taken (more of them than could have been in flight when LOG ended) is not the search that
wrote LOG (another ladder, whose promotions differ, or a log with rows missing). It stops
with an error before training them, instead of training for hours what LOG was meant to
spare.

What is restored: every rung-0 result (the probe's chosen rate and its run; a cell that
failed there failed as a candidate) and every ok or diverged promotion. A failed promotion
(an error outside the cell) is trained again, as on `--resume`. A restored result enters the
zoo without weights or learning curve (``has_weights`` false, its ``error`` naming LOG), so
the pre-filter fits on it as before and analysis passes it over; its evaluations-log row
keeps the original training's seconds, time, workers and wave and is marked
``"restored": true``. A promotion of a restored cell trains from scratch (its branch
checkpoint is gone), with the same result.

Replayed in the log's order: a restored job stays in flight until the results the log
recorded before it are in, as it did when it trained. With several workers the search
makes a choice while other jobs are still training, so the order of results and choices
is part of what is restored: restored jobs complete in the order their rows stand in LOG,
those of one ``wave`` (results the search took in one go) together, and the search keeps
as many jobs in flight as the run that wrote LOG had workers (each row's ``slots``; a row
without one was written by a one-worker run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cellzoo.common.errors import UserError
from cellzoo.common.io import read_jsonl
from cellzoo.dsl import parse
from cellzoo.evolve.breeding import source_of
from cellzoo.evolve.candidates import Candidate
from cellzoo.evolve.jobs import Job
from cellzoo.evolve.ladder import Ladder
from cellzoo.train import TrainResult
from cellzoo.train.corpus import Corpus
from cellzoo.train.model import model_params

#: the columns a restored row needs (what a ladder search's evaluations log writes)
COLUMNS = ("n", "hash", "expr", "status", "val_ppl", "rung", "lr", "seconds")


def slots_of(row: dict[str, Any]) -> int:
    """The workers of the run that wrote an evaluations-log row."""
    return int(row.get("slots") or 1)


class RestoreError(UserError):
    """A log that cannot be restored from: unreadable, or not a ladder search's."""


@dataclass
class Restored:
    """The restorable results of one evaluations log, by (cell hash, rung), the promotions
    it logged as failed (trained again), and the results no search has taken yet."""

    source: str
    rows: dict[tuple[str, int], dict[str, Any]]
    retried: set[tuple[str, int]]
    untaken: set[tuple[str, int]] = field(init=False)  # not yet proposed by the search
    pending: set[tuple[str, int]] = field(init=False)  # not yet recorded by the search
    order: dict[tuple[str, int], int] = field(init=False)  # each result's place in the log
    last_slots: int | None = None  # the workers of the run that wrote the last recorded row

    def __post_init__(self) -> None:
        self.untaken = set(self.rows)
        self.pending = set(self.rows)
        self.order = {key: i for i, key in enumerate(self.rows)}  # rows keep the log's order

    @classmethod
    def read(cls, path: str | Path) -> Restored:
        """The restorable rows of the log at ``path``."""
        try:
            log = read_jsonl(Path(path))
        except (OSError, ValueError) as err:
            raise RestoreError(f"cannot restore from {path}: {err}") from None
        rows, failed = {}, set()
        for line, row in enumerate(log, 1):
            missing = [c for c in COLUMNS if c not in row]
            if missing:
                raise RestoreError(f"cannot restore from {path}: line {line} has no "
                                   f"{', '.join(missing)} (not a ladder search's "
                                   f"evaluations log)")
            if row["rung"] == 0 or row["status"] != "failed":
                # a retried promotion's later row wins, at its place in the log
                rows.pop((row["hash"], row["rung"]), None)
                rows[row["hash"], row["rung"]] = row
            else:
                failed.add((row["hash"], row["rung"]))
        return cls(str(path), rows, failed - rows.keys())

    def taken_in(self, logged: list[dict[str, Any]]) -> None:
        """Count as taken every result a resumed run's evaluations log ``logged`` holds."""
        keys = {(row["hash"], row.get("rung", 0)) for row in logged}
        self.untaken -= keys
        self.pending -= keys
        if logged:
            self.last_slots = slots_of(logged[-1])

    def final_slots(self) -> int:
        """The workers of the run when it wrote the log's last row: how many of its jobs
        can have been in flight, with no row, when the log ended."""
        return slots_of(next(reversed(self.rows.values()))) if self.rows else 1

    def recorded(self, key: tuple[str, int]) -> None:
        """The search has recorded the result of ``key`` (cell hash, rung)."""
        self.pending.discard(key)
        self.last_slots = slots_of(self.rows[key])

    def slots(self) -> int | None:
        """How many jobs the run that wrote the log had in flight at this point: its workers
        when it recorded the last result and when it recorded the next one (a run resumed
        with other workers keeps what was in flight); None once every result is recorded."""
        if not self.pending:
            return None
        following = slots_of(self.rows[min(self.pending, key=self.position)])
        return max(following, self.last_slots or following)

    def position(self, key: tuple[str, int]) -> int:
        """Where the result of ``key`` stands in the log (its results' order)."""
        return self.order[key]

    def round_cells(self, index: int, source: str) -> list[Candidate] | None:
        """The new cells round ``index`` took from ``source`` (`breeding.BRED`, the initial
        round's too, or `PROPOSED`) in the run that wrote the log, in the order their
        results came (an order that can always be replayed, `Search._complete`); None when
        the log holds no new cell of the round."""
        rows = [row for row in self.rows.values()
                if row["rung"] == 0 and row.get("round") == index and not row.get("reused")]
        if not rows:
            return None
        return [Candidate(parse(row["expr"]), row["origin"], row.get("operator"),
                          list(row.get("parents") or []), int(row.get("generation") or 0))
                for row in rows if source_of(row["origin"]) == source]

    def wave(self, key: tuple[str, int]) -> int | None:
        """The wave ``key``'s result was recorded in (None: a wave of its own)."""
        return self.rows[key].get("wave")

    def __len__(self) -> int:
        return len(self.rows)

    def result(self, job: Job, ladder: Ladder, corpus: Corpus) -> TrainResult | None:
        """The logged result of ``job`` (a ladder job), or None when the log holds none for
        its cell, rung and rate."""
        row = self.rows.get((job.hash, job.rung))
        if row is None or (job.lr is not None and job.lr != row["lr"]):
            return None
        budget = ladder.budgets(corpus)[job.rung]
        if row.get("rung_tokens", budget) != budget:  # a log written before the column: trusted
            raise RestoreError(
                f"cannot restore from {self.source}: its row n={row['n']} trained cell "
                f"{job.hash[:8]} at rung {job.rung} for {row['rung_tokens']:,} tokens, and this "
                f"search's rung {job.rung} is {budget:,} tokens; rebuild with the configuration "
                f"the log was written under (its --config)")
        self.untaken.discard((job.hash, job.rung))
        with torch.random.fork_rng(devices=[]):  # sizing a cell must not move the search's RNG
            config = ladder.configs(job.expr, corpus, row["lr"])[job.rung]
            params = model_params(job.expr, corpus.vocab_size, config)
        ok = row["status"] == "ok"
        branch = float(row.get("branch_seconds", 0.0))  # the row's seconds are its own cost
        return TrainResult(
            expr=row["expr"], hash=row["hash"], status=row["status"],
            val_ppl=float(row["val_ppl"]) if ok else math.nan,
            test_ppl=float(row.get("test_ppl") or math.nan),
            params=params, tokens_per_s=math.nan, seconds=float(row["seconds"]) + branch,
            tokens_trained=budget if ok else 0, curve=[], device="",
            error=f"restored from {self.source} (row n={row['n']}; no weights or curve kept)",
            config=config, probe_seconds=float(row["seconds"]) if job.rung == 0 else None,
            branch_seconds=branch)
