"""The training loop: truncated BPTT to a budget, validation as it goes, divergence as a result.

`train_cell` never raises for a run that goes wrong numerically (status
"diverged") or for an error inside training (status "failed", logged with its
traceback); it does raise for what the caller got wrong before training starts
(an invalid cell, a bad configuration, a missing corpus, a foreign checkpoint).
"""

from __future__ import annotations

import logging
import math
import random
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cellzoo.common.rng import rng_states, set_rng_states
from cellzoo.dsl.canonical import canonical_text, cell_hash
from cellzoo.dsl.library import resolve_cell
from cellzoo.dsl.tree import Node
from cellzoo.train.checkpoint import (
    BRANCH_NAME,
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from cellzoo.train.config import NOT_LEARNED, TrainConfig, TrainResult
from cellzoo.train.corpus import Corpus, load_corpus
from cellzoo.train.model import LanguageModel, build_model, count_params, detach_state

log = logging.getLogger(__name__)

#: a per-token training loss this many times the uniform loss ln(V) counts as exploding
EXPLODE_FACTOR = 3.0
#: validation points over a token budget when `eval_interval` is unset
CURVE_POINTS = 5


class Progress(NamedTuple):
    """One update for a progress display (after every training step)."""

    tokens: int
    total_tokens: int
    epoch: int
    train_loss: float
    val_ppl: float | None  # set at validation points
    lr: float


ProgressFn = Callable[[Progress], None]


class Diverged(Exception):
    """The loss or the gradient became non-finite, or the loss exploded."""


# --- data layout (as in PyTorch's examples/word_language_model) ------------------------------


def batchify(data: Tensor, batch_size: int, device: torch.device | str | None = None) -> Tensor:
    """Cut a 1-D token stream into ``batch_size`` columns, dropping the remainder.

    With the alphabet as the data and batch size 4:
    ┌ a g m s ┐
    │ b h n t │
    │ c i o u │
    │ d j p v │
    │ e k q w │
    └ f l r x ┘
    Columns are treated as independent streams: the model cannot learn that
    'g' follows 'f', but batches are computed efficiently.
    """
    rows = data.size(0) // batch_size
    if rows < 2:
        raise ValueError(f"{data.size(0)} tokens are too few for batch size {batch_size}")
    return data[: rows * batch_size].view(batch_size, rows).t().contiguous().to(device)


def get_batch(source: Tensor, i: int, bptt: int) -> tuple[Tensor, Tensor]:
    """Rows i..i+seq_len of a batchified source and the same rows shifted by one (targets).

    With bptt 2 and i = 0 on the columns above, data is the rows (a g m s),
    (b h n t) and target the rows (b h n t), (c i o u).
    """
    seq_len = min(bptt, source.size(0) - 1 - i)
    return source[i: i + seq_len], source[i + 1: i + 1 + seq_len]


# --- evaluation --------------------------------------------------------------------------------


def evaluate(model: LanguageModel, data: Tensor, config: TrainConfig) -> float:
    """Perplexity of ``model`` on a 1-D split (its first ``config.eval_tokens`` tokens)."""
    loss = evaluate_loss(model, data, config)
    return math.exp(loss) if loss < 700 else math.inf


def evaluate_loss(model: LanguageModel, data: Tensor, config: TrainConfig) -> float:
    """Mean per-token cross-entropy (nats), state carried across windows as in training."""
    device = next(model.parameters()).device
    if config.eval_tokens is not None:
        data = data[: config.eval_tokens + 1]
    batch = min(config.eval_batch_size, max(1, data.size(0) // 2))
    source = batchify(data, batch, device)
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), device=device, dtype=torch.float64), 0
    with torch.no_grad():  # the sum stays on the device: no synchronisation per window
        state = model.init_state(batch, device)
        for i in range(0, source.size(0) - 1, config.bptt):
            inputs, targets = get_batch(source, i, config.bptt)
            logits, state = model(inputs, state)
            total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
            count += targets.numel()
    model.train(was_training)
    return total.item() / count


# --- the loop ----------------------------------------------------------------------------------


@dataclass
class Position:
    """Where the loop stands; with the model, optimiser and RNGs it is a full checkpoint."""

    epoch: int = 0  # completed epochs
    row: int = 0  # next row of the batchified training data within the epoch
    tokens: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    elapsed: float = 0.0  # wall seconds of earlier (interrupted) segments
    branch_elapsed: float = 0.0  # of those, the run's whose branch checkpoint this continues
    loss_sum: float = 0.0  # per-token training loss summed since the last validation point
    loss_steps: int = 0
    next_eval: int = 0
    curve: list[dict[str, float]] = field(default_factory=list)
    branched: bool = False  # the branch checkpoint of a scheduled run is written


def epoch_tokens(corpus: Corpus, config: TrainConfig) -> int:
    """Training tokens in one epoch of ``corpus`` (the rows `batchify` keeps, less one)."""
    return (corpus.train.size(0) // config.batch_size - 1) * config.batch_size


def run_tokens(config: TrainConfig, tokens_per_epoch: int) -> int:
    """The tokens a run trains: its epochs, its token budget, or the smaller of the two."""
    by_epochs = (config.epochs or 1) * tokens_per_epoch
    if config.budget_tokens is None:
        return by_epochs
    return config.budget_tokens if config.epochs is None else min(config.budget_tokens, by_epochs)


def initial_loss(cell: Node | str, config: TrainConfig, corpus: Corpus) -> float:
    """Per-token training loss of the untrained model on the first BPTT window: the loss the
    first step of a run of ``config`` sees (same seed, same weights, same mode)."""
    trainer = Trainer(resolve_cell(cell), config, corpus)
    trainer._setup()
    inputs, targets = get_batch(trainer.train_data, 0, config.bptt)
    with torch.no_grad():
        logits, _ = trainer.model(inputs, trainer.state)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_for_epoch(config: TrainConfig, epoch: int) -> float:
    """Learning rate of the 1-based ``epoch``: decayed by ``lr_decay`` after ``decay_after``."""
    return config.learning_rate * config.lr_decay ** max(epoch - config.decay_after, 0)


def lr_at(config: TrainConfig, tokens: int, epoch: int) -> float:
    """Learning rate of the step taken after ``tokens`` tokens, in 0-based data ``epoch``:
    the epoch's rate, or with ``schedule_tokens`` the rate of the compressed epoch
    ``floor(tokens * epochs / schedule_tokens) + 1``."""
    if config.schedule_tokens is None:
        return lr_for_epoch(config, epoch + 1)
    return lr_for_epoch(config, tokens * config.epochs // config.schedule_tokens + 1)


#: fields in which a run may differ from the run whose branch checkpoint it continues (and
#: `NOT_LEARNED`)
BRANCH_FREE = ("budget_tokens", "schedule_tokens")


class Trainer:
    """One training run of one cell; `run` returns the result record."""

    def __init__(self, cell: Node, config: TrainConfig, corpus: Corpus,
                 progress: ProgressFn | None = None, checkpoint_dir: str | Path | None = None,
                 branch_dir: str | Path | None = None):
        self.cell, self.config, self.corpus = cell, config, corpus
        self.progress = progress
        self.checkpoint_dir = checkpoint_dir
        self.branch_dir = branch_dir
        self.device = resolve_device(config.device)
        self.expr, self.hash = canonical_text(cell), cell_hash(cell)
        self.start = time.perf_counter()
        self.model: LanguageModel | None = None
        self.pos = Position()

    def _setup(self) -> None:
        config = self.config
        seed_everything(config.seed)
        # built from the canonical text, so the weights match the `expr` the result reports
        self.model = build_model(self.expr, self.corpus.vocab_size, config).to(self.device)
        self.optimizer = _make_optimizer(self.model, config)
        self.train_data = batchify(self.corpus.train, config.batch_size, self.device)
        self.pos = Position(next_eval=self._eval_interval())
        self.state = self.model.init_state(config.batch_size, self.device)
        self.explode_loss = EXPLODE_FACTOR * math.log(max(self.corpus.vocab_size, 2))

    # -- budget ---------------------------------------------------------------------------------
    @property
    def tokens_per_epoch(self) -> int:
        return epoch_tokens(self.corpus, self.config)

    @property
    def total_tokens(self) -> int:
        return run_tokens(self.config, self.tokens_per_epoch)

    def _eval_interval(self) -> int:
        if self.config.eval_interval is not None:
            return self.config.eval_interval
        if self.config.budget_tokens is not None and self.config.epochs is None:
            return max(1, math.ceil(self.config.budget_tokens / CURVE_POINTS))
        return self.tokens_per_epoch

    def _done(self) -> bool:
        return self.pos.tokens >= self.total_tokens

    # -- checkpoints ----------------------------------------------------------------------------
    def _resume(self) -> bool:
        """Continue from the checkpoint in `checkpoint_dir` if there is one (it must match)."""
        payload = load_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if payload is None:
            return False
        if payload["hash"] != self.hash or payload["config_key"] != self.config.key():
            raise CheckpointError(
                f"{self.checkpoint_dir} holds a checkpoint of another run (cell {payload['expr']},"
                f" config {payload['config_key']}); use a fresh folder for this one")
        self._load(payload)
        return True

    def _branch(self) -> None:
        """Start from the branch checkpoint in `branch_dir`: a shorter scheduled run of the same
        cell and recipe, saved before its first decayed step. Every step it took ran at the
        undecayed rate, as this run's first steps do, so continuing it is this run exactly."""
        payload = load_checkpoint(self.branch_dir, BRANCH_NAME)
        if payload is None:
            raise CheckpointError(f"no branch checkpoint in {self.branch_dir} (expected "
                                  f"{Path(self.branch_dir) / BRANCH_NAME})")
        branch = TrainConfig.from_dict(payload["config"])
        mine, other = self.config.to_dict(), branch.to_dict()
        differ = sorted(k for k, v in other.items()
                        if k not in BRANCH_FREE + NOT_LEARNED and mine[k] != v)
        pos = Position(**payload["position"])
        if payload["hash"] != self.hash or differ:
            raise CheckpointError(f"{self.branch_dir}: the branch checkpoint is of another cell "
                                  f"or recipe (cell {payload['expr']}, differing in {differ})")
        if not (self._span(self.config) >= self._span(branch)
                or lr_at(self.config, pos.tokens, pos.epoch) == self.config.learning_rate):
            raise CheckpointError(f"{self.branch_dir}: its branch point ({pos.tokens} tokens) "
                                  f"lies past this run's decay onset; it cannot continue there")
        self._load(payload)
        self.pos.branch_elapsed = self.pos.elapsed

    def _span(self, config: TrainConfig) -> float:
        """The tokens a config's rate schedule spreads its epochs over (nan without epochs).
        A run whose span is at least the branch run's (same epochs, decay onset and rates:
        the recipe check) has the undecayed rate wherever the branch run had it, so it
        continues any branch point: prefix rungs share the full run's span, a compressed
        rung's is eta times its rung below's. Else the branch point must precede this
        run's own decay onset."""
        if config.schedule_tokens is not None:
            return config.schedule_tokens
        return config.epochs * epoch_tokens(self.corpus, config) if config.epochs else math.nan

    def _load(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.pos = Position(**payload["position"])
        self.state = [tuple(t.to(self.device) for t in layer) for layer in payload["state"]]
        set_rng_states(payload["rng"])

    def save(self, *names: str) -> None:
        """Checkpoint to `checkpoint_dir` (the main checkpoint, or the files ``names``)."""
        if self.checkpoint_dir is None:
            return
        self.pos.elapsed += time.perf_counter() - self.start
        self.start = time.perf_counter()
        payload = {
            "expr": self.expr, "hash": self.hash, "config": self.config.to_dict(),
            "config_key": self.config.key(), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "position": asdict(self.pos),
            "state": [[t.cpu() for t in layer] for layer in self.state], "rng": rng_states()}
        for name in names or (CHECKPOINT_NAME,):
            save_checkpoint(self.checkpoint_dir, payload, name)

    def _branch_point(self, lr: float | None) -> None:
        """Write the branch checkpoint (and the main one) of a scheduled run before its first
        step at a decayed rate ``lr``, or at its end (``lr`` None) if it never decays."""
        if (self.config.schedule_tokens is None or self.pos.branched
                or lr == self.config.learning_rate):
            return
        self.save(CHECKPOINT_NAME, BRANCH_NAME)  # saved unmarked: a continuation branches anew
        self.pos.branched = True

    # -- training -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        try:
            self._setup()
            if not self._resume() and self.branch_dir is not None:
                self._branch()
            while not self._done():
                self._epoch()
            return self._finish()
        except CheckpointError:
            raise
        except Diverged as why:
            return self._result("diverged", error=str(why))
        except Exception as err:  # a candidate's failure is a result; the traceback goes to the log
            log.exception("training %s failed", self.expr)
            return self._result("failed", error="".join(traceback.format_exception_only(err)))

    def _epoch(self) -> None:
        self.model.train()
        for i in range(self.pos.row, self.train_data.size(0) - 1, self.config.bptt):
            self._step(i)
            if self._done():
                return
        self.pos.epoch += 1
        self.pos.row = 0
        self.state = self.model.init_state(self.config.batch_size, self.device)
        self.save()  # validating once per epoch, its last step did (tokens == next_eval)

    def _step(self, i: int) -> None:
        lr = lr_at(self.config, self.pos.tokens, self.pos.epoch)
        self._branch_point(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        tick = time.perf_counter()
        inputs, targets = get_batch(self.train_data, i, self.config.bptt)
        self.state = detach_state(self.state)
        self.optimizer.zero_grad(set_to_none=True)
        logits, self.state = self.model(inputs, self.state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        objective = loss * inputs.size(0) if self.config.loss == "sum" else loss
        objective.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip)
        value, norm = loss.item(), norm.item()
        if not (math.isfinite(value) and math.isfinite(norm)):
            raise Diverged(f"non-finite {'loss' if not math.isfinite(value) else 'gradient'} "
                           f"after {self.pos.tokens} tokens")
        if value > self.explode_loss:
            raise Diverged(f"training loss {value:.1f} exploded past {self.explode_loss:.1f} "
                           f"({EXPLODE_FACTOR:g} x uniform) after {self.pos.tokens} tokens")
        self.optimizer.step()
        p = self.pos
        p.row, p.steps = i + inputs.size(0), p.steps + 1
        p.tokens += targets.numel()
        p.loss_sum, p.loss_steps = p.loss_sum + value, p.loss_steps + 1
        p.train_seconds += time.perf_counter() - tick
        if self._done():
            self._branch_point(None)
        val = None
        if p.tokens >= p.next_eval or self._done() or self._reached_point(targets.numel()):
            val = self._validate(lr)
        self._report(value, val, lr)

    def _reached_point(self, step_tokens: int) -> bool:
        """Whether the step just taken reached one of the config's `eval_at` token counts."""
        tokens = self.pos.tokens
        return any(tokens - step_tokens < t <= tokens for t in self.config.eval_at)

    def _report(self, train_loss: float, val: float | None, lr: float) -> None:
        if self.progress is not None:
            p = self.pos
            self.progress(Progress(p.tokens, self.total_tokens, p.epoch, train_loss, val, lr))

    def _validate(self, lr: float) -> float:
        """Add a point to the learning curve and checkpoint."""
        p = self.pos
        val = evaluate(self.model, self.corpus.valid, self.config)
        train_loss = p.loss_sum / p.loss_steps if p.loss_steps else math.nan
        p.curve.append({"tokens": p.tokens, "train_loss": train_loss, "val_ppl": val, "lr": lr})
        p.loss_sum, p.loss_steps = 0.0, 0
        while p.next_eval <= p.tokens:
            p.next_eval += self._eval_interval()
        if not math.isfinite(val):
            raise Diverged(f"validation perplexity {val} after {p.tokens} tokens")
        self.save()
        return val

    def _finish(self) -> TrainResult:
        last = self.pos.curve[-1] if self.pos.curve else None
        if last is not None and last["tokens"] == self.pos.tokens:
            val = last["val_ppl"]
        else:
            val = self._validate(self.optimizer.param_groups[0]["lr"])
        test = evaluate(self.model, self.corpus.test, self.config)
        if not math.isfinite(test):
            raise Diverged(f"test perplexity {test}")
        return self._result("ok", val=val, test=test)

    def _result(self, status: str, val: float = math.nan, test: float = math.nan,
                error: str | None = None) -> TrainResult:
        p = self.pos
        ok = status == "ok"
        weights = ({k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
                   if ok else None)
        return TrainResult(
            expr=self.expr, hash=self.hash, status=status, val_ppl=val, test_ppl=test,
            params=count_params(self.model) if self.model is not None else 0,
            tokens_per_s=p.tokens / p.train_seconds if p.train_seconds > 0 else math.nan,
            seconds=p.elapsed + time.perf_counter() - self.start, tokens_trained=p.tokens,
            curve=list(p.curve), device=str(self.device), error=error, config=self.config,
            state_dict=weights, branch_seconds=p.branch_elapsed)


def _make_optimizer(model: LanguageModel, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate)


def train_cell(cell: Node | str, config: TrainConfig, data_dir: str | Path | None = None,
               progress: ProgressFn | None = None,
               checkpoint_dir: str | Path | None = None,
               branch_dir: str | Path | None = None) -> TrainResult:
    """Train ``cell`` (a tree, DSL text or a library name) as a language model on config.task.

    With ``checkpoint_dir`` the run checkpoints there at every validation point
    (at least once per epoch) and, if a checkpoint of the same cell and
    configuration is already there, continues from it to the same total. A run
    with ``schedule_tokens`` also writes ``branch.pt`` there before its first
    step at a decayed rate. With ``branch_dir`` and no checkpoint of its own yet,
    the run starts from the branch checkpoint in ``branch_dir`` (a shorter
    scheduled run of the same cell and recipe, see `Trainer._branch`).
    """
    node = resolve_cell(cell)
    corpus = load_corpus(config.task, data_dir)
    return Trainer(node, config, corpus, progress, checkpoint_dir, branch_dir).run()


def load_run(checkpoint_dir: str | Path) -> tuple[str, TrainConfig, dict[str, Any]]:
    """The cell text, configuration and position stored in a checkpoint folder."""
    payload = load_checkpoint(checkpoint_dir)
    if payload is None:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir} (expected "
                              f"{Path(checkpoint_dir) / 'checkpoint.pt'})")
    return payload["expr"], TrainConfig.from_dict(payload["config"]), payload["position"]
