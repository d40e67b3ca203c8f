"""`Ranker`: fit the TreeRNN on trained cells, predict and score new ones.

This is the contract of the evolution's pre-filter seam:

* ``fit(runs)`` takes zoo ``Run`` records (objects with ``.expr``, ``.status``,
  ``.val_ppl``, ``.task``) or tuples ``(cell, val_ppl_or_nan, status[, task])``.
  Status ``ok`` trains both heads, ``diverged`` only the divergence head;
  ``failed`` runs (crashes, not the cell's fault) are skipped.
* ``score(cells)`` returns one float per cell, higher = more promising:
  ``-z - div_penalty * p_diverge``, where z is the predicted log perplexity in
  standard deviations of the training runs of its task, and p_diverge the
  predicted probability of divergence.
* ``predict(cells, task)`` returns (log perplexity, p_diverge) as numpy arrays.

Targets are log perplexities standardised per task. A held-out share of the
runs picks the epoch (early stopping on Kendall tau, or on the loss when the
share holds too few finished runs). Same seed and data -> same ranker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cellzoo.common.io import atomic_write
from cellzoo.ranker.graph import Packed, pack, plan
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.model import ModelConfig, TreeRNN

LOSSES = ("mse", "pairwise")
DEFAULT_TASK = "default"
FORMAT = 1


@dataclass(frozen=True)
class RankerConfig:
    """How to train. ``loss``: 'mse' (Huber on standardised log ppl) or 'pairwise'
    (logistic loss on ordered pairs plus 0.1 x the regression loss, which keeps
    predicted perplexities on scale)."""

    dim: int = 64
    loss: str = "pairwise"
    lr: float = 3e-3
    weight_decay: float = 1e-5
    epochs: int = 150
    patience: int = 20
    batch_size: int = 128
    val_fraction: float = 0.15
    div_weight: float = 0.5
    div_penalty: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Examples:
    """Training data in the ranker's terms: packed cells, targets, task of each."""

    packed: Packed
    log_ppl: np.ndarray  # nan unless finished
    diverged: np.ndarray  # bool
    tasks: list[str]


def examples(runs: Iterable) -> Examples:
    """Normalise zoo runs or tuples into `Examples` (failed runs are dropped)."""
    cells, y, div, tasks = [], [], [], []
    for run in runs:
        if isinstance(run, tuple):
            cell, ppl, status, *rest = run
            task = rest[0] if rest else DEFAULT_TASK
        else:
            cell, ppl, status, task = run.expr, run.val_ppl, run.status, run.task
        if status == "failed":
            continue
        if status not in ("ok", "diverged"):
            raise ValueError(f"unknown run status {status!r}: expected ok, diverged or failed")
        finished = status == "ok" and ppl is not None and math.isfinite(ppl) and ppl > 0
        cells.append(cell)
        y.append(math.log(ppl) if finished else math.nan)
        div.append(status == "diverged")
        tasks.append(str(task))
    return Examples(pack(cells), np.asarray(y, dtype=np.float64), np.asarray(div, dtype=bool),
                    tasks)


class Ranker:
    """The TreeRNN ranker with its training state (see the module docstring)."""

    def __init__(self, config: RankerConfig = RankerConfig()):
        self.config = config
        self.model = self._new_model()
        self.task_stats: dict[str, tuple[float, float]] = {}
        self.history: list[dict] = []

    def _new_model(self) -> TreeRNN:
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            return TreeRNN(ModelConfig(dim=self.config.dim))

    # --- training -----------------------------------------------------------------------

    def fit(self, runs: Iterable, epochs: int | None = None, warm: bool = False) -> Ranker:
        """Train on runs. ``warm=True`` continues from the current weights and task
        statistics (a cheap refit as results arrive); otherwise start afresh."""
        data = runs if isinstance(runs, Examples) else examples(runs)
        if len(data.tasks) == 0:
            raise ValueError("no usable runs to fit the ranker on (all failed, or none given)")
        if not warm:
            self.model, self.task_stats, self.history = self._new_model(), {}, []
        self._update_stats(data)
        z = self._standardise(data.log_ppl, data.tasks)
        rng = np.random.default_rng(self.config.seed + len(self.history))
        train, val = self._split(len(z), rng)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed + len(self.history))
            self._train(data, z, train, val, epochs or self.config.epochs, rng)
        return self

    def _update_stats(self, data: Examples) -> None:
        tasks, finished = np.asarray(data.tasks), np.isfinite(data.log_ppl)
        for task in sorted(set(data.tasks)):
            if task in self.task_stats:
                continue
            mask = (tasks == task) & finished
            y = data.log_ppl[mask]
            std = float(y.std()) if len(y) > 1 else 1.0
            self.task_stats[task] = (float(y.mean()) if len(y) else 0.0, std if std > 1e-6 else 1.0)

    def _standardise(self, log_ppl: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
        mean = np.array([self.task_stats[t][0] for t in tasks])
        std = np.array([self.task_stats[t][1] for t in tasks])
        return (log_ppl - mean) / std

    def _split(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(n)
        n_val = int(round(self.config.val_fraction * n)) if n >= 20 else 0
        return order[n_val:], order[:n_val]

    def _train(self, data: Examples, z: np.ndarray, train: np.ndarray, val: np.ndarray,
               epochs: int, rng: np.random.Generator) -> None:
        cfg = self.config
        opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, waited = -math.inf, None, 0
        for epoch in range(epochs):
            self.model.train()
            losses = []
            for start in range(0, len(train), cfg.batch_size):
                batch = train[start: start + cfg.batch_size]
                loss = self._loss(data.packed.take(batch), z[batch], data.diverged[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            rng.shuffle(train)
            score = self._val_score(data, z, val)
            self.history.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                                 "val_score": score})
            if score > best:
                best, waited = score, 0
                best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
            else:
                waited += 1
                if len(val) and waited >= cfg.patience:
                    break
        if best_state is not None and len(val):
            self.model.load_state_dict(best_state)

    def _loss(self, batch: Packed, z: np.ndarray, diverged: np.ndarray) -> torch.Tensor:
        pred, logit = self.model(plan(batch))
        target = torch.as_tensor(z, dtype=torch.float32)
        done = torch.isfinite(target)
        loss = self.config.div_weight * F.binary_cross_entropy_with_logits(
            logit, torch.as_tensor(diverged, dtype=torch.float32))
        if done.sum() >= 1:
            reg = F.smooth_l1_loss(pred[done], target[done])
            if self.config.loss == "pairwise":
                reg = 0.1 * reg + _pairwise_loss(pred[done], target[done])
            loss = loss + reg
        return loss

    def _val_score(self, data: Examples, z: np.ndarray, val: np.ndarray) -> float:
        """Higher is better: Kendall tau on finished held-out runs, else minus the loss."""
        if len(val) == 0:
            return 0.0
        done = val[np.isfinite(z[val])]
        if len(done) >= 5:
            pred, _ = self._raw(data.packed.take(done))
            tau = rank_metrics(pred, z[done])["tau"]
            if not math.isnan(tau):
                return tau
        self.model.eval()
        with torch.no_grad():
            return -float(self._loss(data.packed.take(val), z[val], data.diverged[val]))

    # --- inference ----------------------------------------------------------------------

    def _raw(self, packed: Packed, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Standardised log ppl and divergence probability for packed cells."""
        self.model.eval()
        zs, ps = [], []
        with torch.no_grad():
            for start in range(0, len(packed), chunk):
                part = packed.take(np.arange(start, min(start + chunk, len(packed))))
                pred, logit = self.model(plan(part))
                zs.append(pred.numpy())
                ps.append(torch.sigmoid(logit).numpy())
        if not zs:
            return np.empty(0), np.empty(0)
        return np.concatenate(zs).astype(np.float64), np.concatenate(ps).astype(np.float64)

    def predict(self, cells: Sequence | Packed,
                task: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(predicted log perplexity for ``task``, probability of divergence) per cell.
        ``task`` defaults to the only task seen, or the first in sorted order."""
        z, p = self._raw(_packed(cells))
        mean, std = self.task_stats.get(self._task(task), (0.0, 1.0))
        return mean + std * z, p

    def score(self, cells: Sequence | Packed) -> np.ndarray:
        """One float per cell, higher = more promising (see the module docstring)."""
        z, p = self._raw(_packed(cells))
        return -z - self.config.div_penalty * p

    def _task(self, task: str | None) -> str:
        if task is None:
            return sorted(self.task_stats)[0] if self.task_stats else DEFAULT_TASK
        if task not in self.task_stats:
            known = ", ".join(sorted(self.task_stats)) or "none"
            raise ValueError(f"the ranker was not trained on task {task!r} (known: {known})")
        return task

    # --- persistence --------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to rebuild this ranker: plain values and tensors only."""
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "task_stats": {t: list(s) for t, s in self.task_stats.items()},
            "epochs_trained": len(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("format") != FORMAT:
            raise ValueError(f"unsupported ranker format {state.get('format')!r}")
        self.config = RankerConfig(**state["config"])
        self.model = TreeRNN(ModelConfig.from_dict(state["model_config"]))
        self.model.load_state_dict(state["model"])
        self.task_stats = {t: (float(s[0]), float(s[1])) for t, s in state["task_stats"].items()}
        self.history = [{} for _ in range(int(state.get("epochs_trained", 0)))]

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically and durably (`cellzoo.common.io.atomic_write`)."""
        state = self.state_dict()
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ranker:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ranker = cls()
        ranker.load_state_dict(state)
        return ranker


def _packed(cells: Sequence | Packed) -> Packed:
    return cells if isinstance(cells, Packed) else pack(cells)


def _pairwise_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Logistic loss over all ordered pairs (i worse than j => pred_i > pred_j)."""
    diff_t = target.unsqueeze(1) - target.unsqueeze(0)
    diff_p = pred.unsqueeze(1) - pred.unsqueeze(0)
    mask = diff_t > 0
    if not mask.any():
        return pred.sum() * 0.0
    return F.softplus(-diff_p[mask]).mean()
