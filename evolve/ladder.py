"""The fidelity ladder: a preset's own recipe at budgets growing by ``eta``, and ASHA's rule.

Rung k of an R-rung ladder trains ``B_k = B_top // eta**(R-1-k)`` tokens with the
preset's optimiser, loss, clipping, batch, BPTT length, initialisation and layers. Its
learning-rate schedule (``schedule``) is the full run's own by default (``prefix``: a
rung run is the first ``B_k`` tokens of the full run, at the preset's rate until the full
run's decay onset), or the preset's epoch schedule compressed into ``B_k`` tokens
(``compressed``: each rung decays as a full run does, early). The top rung is the preset
itself, so a top-rung run *is* the full run.

Why prefix: on PTB, for the four cells with a full zaremba-small result (the LSTM, the
GRU at rate 1, two cells of an earlier search), prefix rungs of 1.2% and 3.7% of the full
run rank them at Kendall tau 0.67 and 1.0 against the full run, compressed rungs of 1.2%,
3.7% and 11.1% at 0.0, 0.0 and 0.33: the early decay flatters cells that learn fast and
stall (docs/results.md, "The fidelity ladder"). Over the twelve cells with a full run at
their probed rates, prefix rungs still rank by how fast a cell starts (a cell at a lower
rate starts slower): tau stays at 0.52 or below under a tenth of the run and reaches 0.73 at
rung 2, 11.1% of it (the numbers are in that section). Every cell
is trained at the width that gives it the reference cell's parameter count (the
`--match-params` rule), so a rung compares cells at equal parameters.

A rung run writes a branch checkpoint before its first decayed step (a prefix rung that
ends before the decay onset: at its end); promotion to the next rung continues from it
(the next rung's rate is still undecayed there), so a promoted result equals a
from-scratch run at the higher budget, bit for bit, and skips the shared prefix. See
docs/search.md, "The fidelity ladder".
"""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from cellzoo.dsl.library import resolve_cell
from cellzoo.dsl.tree import Node
from cellzoo.train.checkpoint import BRANCH_NAME, CHECKPOINT_NAME, checkpoint_path
from cellzoo.train.config import TrainConfig, TrainResult
from cellzoo.train.corpus import Corpus, load_corpus
from cellzoo.train.loop import ProgressFn, Trainer, epoch_tokens, run_tokens
from cellzoo.train.model import matched_hidden

#: rung 0's default budget: about one CPU-core minute of zaremba-small (~2,900 tokens/s)
DEFAULT_RUNG0_TOKENS = 150_000
#: a rung's learning-rate schedule: the full run's (the default), or its own, compressed
SCHEDULES = ("prefix", "compressed")


@dataclass(frozen=True)
class Ladder:
    """Rungs of a preset: ``rungs`` of them, or as many as bring rung 0 nearest to
    ``rung0_tokens`` (default `DEFAULT_RUNG0_TOKENS`); the top rung trains ``top_tokens``
    (default and at most: the preset's full run). Widths match ``reference``'s parameters;
    ``schedule`` is one of `SCHEDULES` (see the module doc). ``device`` is where its runs
    train (not part of any configuration key)."""

    preset: str
    eta: int = 3
    rungs: int | None = None
    rung0_tokens: int | None = None
    top_tokens: int | None = None
    reference: str = "LSTM"
    schedule: str = "prefix"
    device: str = "auto"

    def __post_init__(self) -> None:
        TrainConfig.preset(self.preset)  # an unknown name raises, listing the presets
        if self.schedule not in SCHEDULES:
            raise ValueError(f"ladder schedule must be one of {', '.join(SCHEDULES)}, got "
                             f"{self.schedule!r}")
        if not (isinstance(self.eta, int) and self.eta >= 2):
            raise ValueError(f"ladder eta must be an integer of at least 2, got {self.eta!r}")
        for name in ("rungs", "rung0_tokens", "top_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"ladder {name} must be at least 1 (or unset), got {value}")
        if self.rungs is not None and self.rung0_tokens is not None:
            raise ValueError("give the ladder rungs or rung0_tokens, not both")

    @property
    def base(self) -> TrainConfig:
        return TrainConfig.preset(self.preset, device=self.device)

    def full_tokens(self, corpus: Corpus) -> int:
        """The preset's full run in tokens (its epochs of ``corpus``)."""
        return run_tokens(self.base, epoch_tokens(corpus, self.base))

    def budgets(self, corpus: Corpus) -> list[int]:
        """Training tokens of each rung, rung 0 first; ValueError for a ladder that cannot be."""
        full = self.full_tokens(corpus)
        top = full if self.top_tokens is None else self.top_tokens
        if top > full:
            raise ValueError(f"the ladder's top rung ({top:,} tokens) exceeds the preset "
                             f"{self.preset!r}, whose full run is {full:,} tokens")
        count = self.rungs
        if count is None:
            rung0 = self.rung0_tokens or DEFAULT_RUNG0_TOKENS
            if rung0 > top:
                raise ValueError(f"the ladder's rung 0 ({rung0:,} tokens) exceeds its top rung "
                                 f"({top:,} tokens)")
            count = 1 + round(math.log(top / rung0, self.eta))
        budgets = [top // self.eta ** (count - 1 - k) for k in range(count)]
        step = self.base.batch_size * self.base.bptt
        steps = [math.ceil(b / step) for b in budgets]
        if steps[0] < 1 or any(a >= b for a, b in pairwise(steps)):
            raise ValueError(f"the ladder's rungs do not grow: {count} rungs at eta {self.eta} "
                             f"below {top:,} tokens give {budgets} tokens, i.e. {steps} steps "
                             f"of {step} tokens; use fewer rungs")
        return budgets

    def width(self, cell: Node | str, corpus: Corpus) -> int:
        """The hidden width at which ``cell`` has the reference's parameters under the preset."""
        return matched_hidden(resolve_cell(cell), resolve_cell(self.reference),
                              corpus.vocab_size, self.base)[0]

    def configs(self, cell: Node | str, corpus: Corpus, lr: float | None = None,
                seed: int = 0) -> list[TrainConfig]:
        """Each rung's configuration for ``cell`` (at learning rate ``lr``, default the
        preset's). The top rung of a full ladder is the preset with only width, rate and seed
        changed: the LSTM's top rung at the preset's rate and seed 0 has the preset's key."""
        base = self.base
        changes = {"hidden": self.width(cell, corpus), "seed": seed,
                   "lr": base.learning_rate if lr is None else lr}
        full = self.full_tokens(corpus)
        return [base.replace(**changes) if b == full
                else base.replace(budget_tokens=b, **changes,
                                  schedule_tokens=b if self.schedule == "compressed" else full)
                for b in self.budgets(corpus)]


def prefix_point(curve: list[dict[str, Any]], config: TrainConfig,
                 tokens: int | None = None) -> dict[str, Any] | None:
    """The point of a full run's learning curve where a prefix rung of ``config``'s budget
    (or of ``tokens``) would have stopped: the first point at or past it, within one step of
    it (None when the curve has no point there). Evaluation changes nothing in training, so
    on prefix rungs that point's validation is the rung run's (`cellzoo train --eval-at`
    puts points at a ladder's budgets; every epoch's end is one too)."""
    budget = config.budget_tokens if tokens is None else tokens
    step = config.batch_size * config.bptt
    point = next((p for p in curve if p["tokens"] >= budget), None)
    return point if point is not None and point["tokens"] < budget + step else None


def rung_dir(root: str | Path, rung: int, lr: float) -> Path:
    """The checkpoint folder of one cell's run at ``rung`` and rate ``lr`` under ``root``."""
    return Path(root) / f"rung{rung}-lr{lr!r}"


def prune_rungs(root: str | Path, rung: int, lr: float | None) -> None:
    """Delete under a cell's checkpoint ``root`` what its recorded run at ``rung`` and rate
    ``lr`` leaves no job needing: the folders of other rates (the probe's) and of lower
    rungs, and that run's own resume checkpoint. Kept: its branch checkpoint, where a
    promotion starts, and its rate's folders above ``rung`` (a promotion under way). With
    ``lr`` None (the cell ran at no rate) every rung folder goes. Call it only once the
    run's result is recorded where a rerun would read it: a deleted run trains again."""
    for folder in Path(root).glob("rung*-lr*"):
        match = re.fullmatch(r"rung(\d+)-lr(.+)", folder.name)
        if match and (float(match[2]) != lr or int(match[1]) < rung):
            shutil.rmtree(folder, ignore_errors=True)
    if lr is not None:
        (rung_dir(root, rung, lr) / CHECKPOINT_NAME).unlink(missing_ok=True)


def train_rung(cell: Node | str, ladder: Ladder, rung: int, lr: float | None, seed: int,
               checkpoint_root: str | Path, data_dir: str | Path | None = None,
               progress: ProgressFn | None = None) -> TrainResult:
    """Train ``cell`` at ``rung`` and rate ``lr`` (None: the preset's), checkpointing under
    ``checkpoint_root`` (one root per cell and seed). A rerun continues the rung's own
    checkpoint; a first run above rung 0 continues from the rung below's branch checkpoint
    (the promotion) when there is one, else it trains from scratch (the same result)."""
    corpus = load_corpus(ladder.base.task, data_dir)
    configs = ladder.configs(cell, corpus, lr, seed)
    if not 0 <= rung < len(configs):
        raise ValueError(f"rung {rung} is not on the ladder (rungs 0 to {len(configs) - 1})")
    config = configs[rung]
    below = rung_dir(checkpoint_root, rung - 1, config.learning_rate) if rung > 0 else None
    branch = below if below and checkpoint_path(below, BRANCH_NAME).is_file() else None
    folder = rung_dir(checkpoint_root, rung, config.learning_rate)
    return Trainer(resolve_cell(cell), config, corpus, progress, folder, branch).run()


class Asha:
    """Asynchronous successive halving's promotion rule (Li et al. 2020, Algorithm 2).

    Per rung it holds the recorded results (cell hash -> value, lower is better; a diverged
    or failed result is None and counts as worst) and which cells were promoted from it. A
    cell is promotable from rung k when it is among the best ``floor(n / eta)`` of the ``n``
    results recorded there, is not diverged, and was neither promoted nor recorded above;
    `next_promotion` scans from the highest rung below the top down, so a worker first
    takes the job furthest up the ladder.

    Why not a library: Optuna's ``SuccessiveHalvingPruner`` and Ray Tune's
    ``ASHAScheduler`` implement ASHA's *stopping* variant inside their own trial runners: a
    running trial reports at a milestone and is stopped or continues at once, against the
    results present at that moment; nothing waits to be promoted later, and the trial's
    process, storage and checkpoints are theirs. This search submits one job per candidate
    and rung to its own executors (inline, process pool, Ray) and keeps rung state in its
    own checkpoint, so it needs the promotion variant as a small plain-data object.
    """

    def __init__(self, eta: int, rungs: int):
        if eta < 2 or rungs < 1:
            raise ValueError(f"ASHA needs eta >= 2 and at least one rung, got {eta}, {rungs}")
        self.eta, self.rungs = eta, rungs
        self.results: list[dict[str, float | None]] = [{} for _ in range(rungs)]
        self.promoted: list[set[str]] = [set() for _ in range(rungs)]

    def record(self, rung: int, cell_hash: str, value: float | None) -> None:
        """A result at ``rung`` (a perplexity; None, nan or inf for diverged or failed)."""
        self._check(rung)
        finite = value is not None and math.isfinite(value)
        self.results[rung][cell_hash] = float(value) if finite else None

    def promotable(self, rung: int) -> list[str]:
        """The cells ASHA would promote from ``rung`` now, best first."""
        self._check(rung)
        results = self.results[rung]
        ranked = sorted(results, key=lambda h: (results[h] is None, results[h] or 0.0, h))
        best = ranked[: len(results) // self.eta]
        above = self.results[rung + 1] if rung + 1 < self.rungs else {}
        return [h for h in best if results[h] is not None
                and h not in self.promoted[rung] and h not in above]

    def next_promotion(self) -> tuple[str, int] | None:
        """(cell hash, the rung it goes to) for the next promotion, marked as taken; or None
        when no cell is promotable (the caller then starts a new cell at rung 0)."""
        for rung in range(self.rungs - 2, -1, -1):
            ready = self.promotable(rung)
            if ready:
                self.promoted[rung].add(ready[0])
                return ready[0], rung + 1
        return None

    def forget(self, rung: int, cell_hash: str) -> None:
        """Drop ``cell_hash``'s result at ``rung`` (a failed promotion that trains again; its
        promotion from the rung below stays taken)."""
        self._check(rung)
        del self.results[rung][cell_hash]

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON data (diverged results are null, promoted sets sorted lists)."""
        return {"eta": self.eta, "rungs": self.rungs,
                "results": [dict(r) for r in self.results],
                "promoted": [sorted(p) for p in self.promoted]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["eta"], state["rungs"]) != (self.eta, self.rungs):
            raise ValueError(f"the saved ASHA state is of another ladder (eta {state['eta']}, "
                             f"{state['rungs']} rungs; this one: eta {self.eta}, "
                             f"{self.rungs} rungs)")
        self.results = [dict(r) for r in state["results"]]
        self.promoted = [set(p) for p in state["promoted"]]

    def _check(self, rung: int) -> None:
        if not 0 <= rung < self.rungs:
            raise ValueError(f"rung {rung} is not on the ladder (rungs 0 to {self.rungs - 1})")
