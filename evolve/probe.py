"""The learning-rate probe: each cell's rate from the preset's rate and its halvings.

At rung 0 of the ladder the probe tries the preset's rate times 1, 1/2, 1/4, 1/8, from
the largest, down to the first rate at which the cell learns stably, and on while each
next rate learns stably with a lower rung-0 validation perplexity; it keeps the passing
rate with the lowest. A rate fails when the run diverges (or fails), or when it does not
learn: its training loss did not fall (the mean over the run's last stretch, the last
point of its learning curve, is not below the loss of its first step) or its final
validation perplexity is not below the unigram perplexity of the validation split.

Why not the largest stable rate: on PTB's zaremba-small ladder the GRU learns stably at
the preset's rate 1 at rung 0 (validation 601.4) yet ends its full run at test 262.0, its
validation rising from 231 to 412 over epochs 1-3 at that rate; at 1/2 its rung-0 run is
better (579.6), as are its first full epochs (198.5, 161.7, 152.3). The LSTM's rung-0
run is better at 1 (577.8 against 692.9 at 1/2), the rate its preset was tuned for.
Comparing rates by their rung-0 result picks the better rate of both (docs/results.md).

The chosen rate's rung-0 run is the cell's rung-0 result (no extra training), and its
branch checkpoint is where the cell's promotion to rung 1 starts. Baselines get the same
probe as searched cells.

The probe picks a rate; selecting cells is the ladder's job (`choose`). When no rate
passes, the cell still gets the rate that ran (neither diverged nor failed) with the
lowest rung-0 validation perplexity: a slow starter above the unigram level at rung 0
ranks low there but is not barred from promotion. Only a cell that ran at no rate has
no rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from cellzoo.common.io import json_safe
from cellzoo.dsl.tree import Node
from cellzoo.evolve.ladder import Ladder, train_rung
from cellzoo.train.config import TrainConfig, TrainResult
from cellzoo.train.corpus import Corpus, load_corpus
from cellzoo.train.loop import initial_loss

#: the rates tried, as fractions of the preset's, largest first
SCALES = (1.0, 0.5, 0.25, 0.125)


@dataclass
class RateOutcome:
    """How one rate did at rung 0; ``reason`` says why it failed (None: it passed)."""

    lr: float
    status: str
    val_ppl: float
    first_loss: float
    last_loss: float
    reason: str | None

    @property
    def passed(self) -> bool:
        return self.reason is None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RateOutcome:
        """An outcome read back from `ProbeResult.to_json` (null numbers become NaN)."""
        return cls(**{k: math.nan if v is None and k != "reason" else v
                      for k, v in data.items()})


def choose(outcomes: list[RateOutcome]) -> tuple[float | None, bool]:
    """The rate the probe picks from its outcomes, and whether it passed: the passing rate
    with the lowest validation perplexity (the larger rate on a tie); else the rate that ran
    ok with the lowest; else (every rate diverged or failed) None."""
    for pool, passed in (([o for o in outcomes if o.passed], True),
                         ([o for o in outcomes if o.status == "ok"
                           and math.isfinite(o.val_ppl)], False)):
        if pool:
            return min(pool, key=lambda o: (o.val_ppl, -o.lr)).lr, passed
    return None, False


def descend(outcomes: list[RateOutcome]) -> bool:
    """Whether the probe tries the next lower rate: while none passed, or while the last
    rate passed and is the best passing one so far."""
    passing = [o for o in outcomes if o.passed]
    return not passing or (outcomes[-1].passed and choose(outcomes)[0] == outcomes[-1].lr)


@dataclass
class ProbeResult:
    """The chosen rate (None when every rate diverged or failed), whether it passed, every
    rate tried, the rung-0 result of the chosen rate (of the last rate tried when there is
    none), and the seconds of every rate's run together (the probe's cost)."""

    lr: float | None
    passed: bool
    outcomes: list[RateOutcome]
    result: TrainResult
    seconds: float

    def note(self) -> str | None:
        """Why no rate passed, rate by rate (None when one did)."""
        if self.passed:
            return None
        return "no rate passed the probe: " + "; ".join(
            f"lr {o.lr:g}: {o.reason}" for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        """Strict JSON (non-finite losses and perplexities become null)."""
        return json_safe({"lr": self.lr, "passed": self.passed,
                          "outcomes": [asdict(o) for o in self.outcomes],
                          "result": self.result.to_json()})


def unigram_ppl(corpus: Corpus, eval_tokens: int | None = None) -> float:
    """Perplexity of the validation split (its first ``eval_tokens``, as evaluation reads it)
    under the unigram distribution of the training split's token counts."""
    counts = torch.bincount(corpus.train, minlength=corpus.vocab_size).double()
    valid = corpus.valid if eval_tokens is None else corpus.valid[: eval_tokens + 1]
    log_p = (counts / counts.sum()).log()[valid]
    return math.exp(-log_p.mean().item())


def judge(result: TrainResult, first_loss: float, unigram: float) -> RateOutcome:
    """Whether a rung-0 run learned stably (see the module docstring)."""
    last = result.curve[-1]["train_loss"] if result.curve else math.nan
    if result.status != "ok":
        reason = f"{result.status}: {result.error}"
    elif not last < first_loss:
        reason = f"training loss did not fall ({first_loss:.4g} at the start, {last:.4g} last)"
    elif not result.val_ppl < unigram:
        reason = f"validation {result.val_ppl:.4g} is not below the unigram {unigram:.4g}"
    else:
        reason = None
    return RateOutcome(result.config.learning_rate, result.status, result.val_ppl,
                       first_loss, last, reason)


def probe(cell: Node | str, ladder: Ladder, seed: int, checkpoint_root: str | Path,
          data_dir: str | Path | None = None, lr: float | None = None,
          scales: tuple[float, ...] = SCALES) -> ProbeResult:
    """Try ``lr`` (default: the preset's) times each of ``scales`` at rung 0, largest first,
    while `descend` says so, and pick a rate by `choose`. Runs checkpoint under
    ``checkpoint_root`` as `train_rung`'s do, so a rerun reads finished runs back from
    their checkpoints."""
    corpus = load_corpus(ladder.base.task, data_dir)
    top = ladder.base.learning_rate if lr is None else lr
    config: TrainConfig = ladder.configs(cell, corpus, top, seed)[0]
    first = initial_loss(cell, config, corpus)
    unigram = unigram_ppl(corpus, config.eval_tokens)
    outcomes, results = [], {}
    for scale in scales:
        result = train_rung(cell, ladder, 0, top * scale, seed, checkpoint_root, data_dir)
        results[result.config.learning_rate] = result
        outcomes.append(judge(result, first, unigram))
        if not descend(outcomes):
            break
    rate, passed = choose(outcomes)
    return ProbeResult(rate, passed, outcomes, results.get(rate, result),
                       sum(r.seconds for r in results.values()))
