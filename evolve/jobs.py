"""A job: one candidate to train, as plain data any executor can ship anywhere, and the
function every executor runs on it (in this process, in a pool worker, or as a Ray task).

A ladder job (``ladder`` set: the search's ladder table; ``config``: the preset's, whose
``device`` it trains on) trains its cell at ``rung`` with checkpoints under
``checkpoint``: at rung 0 without a rate, the learning-rate probe (the chosen rate's run
is the result, whether or not the rate passed); above, `train_rung` at the cell's rate
``lr``, continuing from the rung below's branch checkpoint.

A failure of the candidate itself (an exception while building or training it) is its
result, "failed", never an exception in the worker.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from cellzoo.dsl import canonical_text, cell_hash, parse
from cellzoo.evolve.config import ladder_of
from cellzoo.evolve.ladder import train_rung
from cellzoo.evolve.probe import probe
from cellzoo.train import TrainConfig, TrainResult, train_cell

if TYPE_CHECKING:
    from cellzoo.zoo import Run

#: a job whose worker dies is retried this many times in all, then recorded as failed
MAX_ATTEMPTS = 3


@dataclass
class Job:
    """One candidate to train; plain data only, so any executor can ship it anywhere."""

    job_id: int
    expr: str
    config: dict[str, Any]
    data_dir: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0
    score: float | None = None  # the pre-filter's score, when one chose this job
    predicted: float | None = None  # and its predicted log validation perplexity
    round: int = 0  # the search round that made it
    rung: int = 0  # the ladder rung it trains (0 for a proxy job)
    lr: float | None = None  # a ladder job's rate (None at rung 0: the probe picks it)
    ladder: dict[str, Any] | None = None  # the search's ladder table (None: a proxy job)
    checkpoint: str | None = None  # a ladder job's checkpoint root (the cell's folder)

    @cached_property
    def hash(self) -> str:
        return cell_hash(self.expr)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**data)


def run_job(job: Job) -> TrainResult:
    """Train one job; any exception becomes a "failed" result (workers never raise)."""
    try:
        if job.ladder is None:
            return train_cell(job.expr, TrainConfig.from_dict(job.config), job.data_dir)
        return run_ladder_job(job)
    except Exception as err:  # a candidate's error is its result, the search goes on
        detail = "".join(traceback.format_exception_only(err)).strip()
        return failed_result(job, detail)


def run_ladder_job(job: Job) -> TrainResult:
    """A ladder job's training. At rung 0 the result is the probe's chosen rate's run; when
    no rate passed, the probe's per-rate reasons are its ``error`` (an ok run still
    competes on its perplexity; a cell that diverged at every rate keeps its last run)."""
    ladder = replace(ladder_of(job.ladder), device=job.config.get("device", "auto"))
    if job.rung > 0 or job.lr is not None:
        return train_rung(job.expr, ladder, job.rung, job.lr, 0, job.checkpoint, job.data_dir)
    found = probe(job.expr, ladder, 0, job.checkpoint, job.data_dir,
                  scales=tuple(job.ladder["probe"]))
    found.result.error = found.note() or found.result.error
    found.result.probe_seconds = found.seconds
    return found.result


def failed_result(job: Job, error: str) -> TrainResult:
    """The record of a job that produced no training result (error says why)."""
    return TrainResult(
        expr=canonical_text(parse(job.expr)), hash=job.hash, status="failed", val_ppl=math.nan,
        test_ppl=math.nan, params=0, tokens_per_s=math.nan, seconds=0.0, tokens_trained=0,
        curve=[], device="", error=error, config=TrainConfig.from_dict(job.config))


def result_from_run(run: Run) -> TrainResult:
    """A zoo run as a TrainResult (no curve or weights), for runs the search takes from it."""
    return TrainResult(
        expr=run.expr, hash=run.hash, status=run.status, val_ppl=run.val_ppl,
        test_ppl=run.test_ppl, params=run.params, tokens_per_s=run.tokens_per_s,
        seconds=run.seconds, tokens_trained=run.tokens_trained, curve=[], device=run.device,
        error=run.error, config=TrainConfig.from_dict(run.config))
