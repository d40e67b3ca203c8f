"""`Ranker`: fit the TreeRNN on trained cells, predict and score new ones.

This is the contract of the evolution's pre-filter seam:

* ``fit(runs)`` takes zoo ``Run`` records (objects with ``.expr``, ``.status``,
  ``.val_ppl``, ``.task`` and optionally ``.rung``) or tuples
  ``(cell, val_ppl_or_nan, status[, task[, rung]])``. Status ``ok`` trains both
  heads, ``diverged`` only the divergence head; ``failed`` runs (crashes, not the
  cell's fault) are skipped. Each (task, rung) is its own *target* with its own
  head and its own standardisation: results of different fidelity are never
  mixed as one target.
* ``score(cells, task=None)`` returns one float per cell, higher = more
  promising: ``-z - div_penalty * p_diverge``, where z is the predicted log
  perplexity in standard deviations of the training runs of the target, and
  p_diverge the predicted probability of divergence.
* ``predict(cells, task=None)`` returns (log perplexity, p_diverge) as numpy arrays.
* ``cellzoo.ranker.prior.from_prior(path | None, task=...)`` starts from a pre-trained prior
  (the NAS-Bench-NLP one shipped in the package by default, `cellzoo.ranker.prior`);
  later ``fit`` calls fine-tune from the prior instead of starting cold.

Targets are log perplexities standardised per target. A held-out share of the
runs picks the epoch (early stopping on Kendall tau, or on the loss when the
share holds too few finished runs). Same seed and data -> same ranker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cellzoo.common.io import atomic_write
from cellzoo.ranker.graph import Packed, concat, pack, plan
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.model import SOURCE_NAMES, ModelConfig, TreeRNN

LOSSES = ("mse", "pairwise")
DEFAULT_TASK = "default"
FORMAT = 3
ANY_TASK = "*"
MIN_HELD_OUT = 20  # fewer runs than this: no held-out share, no early stopping


@dataclass(frozen=True)
class RankerConfig:
    """How to train. ``loss``: 'mse' (Huber on standardised log ppl) or 'pairwise'
    (logistic loss on ordered pairs plus 0.1 x the regression loss, which keeps
    predicted perplexities on scale). ``finetune_*`` apply when the ranker starts
    from a prior; ``finetune_epochs_few`` when it has too few runs to hold some out
    (more epochs then overfit them and rank worse than the prior alone)."""

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
    finetune_lr: float = 1e-3
    finetune_epochs: int = 30
    finetune_epochs_few: int = 3
    members: int = 1

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RankerConfig:
        """Known keys only, so that rankers saved by older versions still load."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def target_key(task: str, rung: int | None = None) -> str:
    """The head a result trains: its task, or its task at one ladder rung."""
    return str(task) if rung is None else f"{task}@rung{int(rung)}"


def task_of(target: str) -> str:
    return target.split("@rung")[0]


@dataclass
class Examples:
    """Training data in the ranker's terms: packed cells, targets, the target of each."""

    packed: Packed
    log_ppl: np.ndarray  # nan unless finished
    diverged: np.ndarray  # bool
    targets: list[str]

    def take(self, idx: np.ndarray) -> Examples:
        return Examples(self.packed.take(idx), self.log_ppl[idx], self.diverged[idx],
                        [self.targets[i] for i in idx])


def join(parts: Sequence[Examples]) -> Examples:
    """Several `Examples` as one, in order."""
    return Examples(concat([p.packed for p in parts]),
                    np.concatenate([p.log_ppl for p in parts]),
                    np.concatenate([p.diverged for p in parts]),
                    [t for p in parts for t in p.targets])


def examples(runs: Iterable) -> Examples:
    """Normalise zoo runs or tuples into `Examples` (failed runs are dropped)."""
    cells, y, div, targets = [], [], [], []
    for run in runs:
        if isinstance(run, tuple):
            cell, ppl, status, *rest = run
            task = rest[0] if rest else DEFAULT_TASK
            rung = rest[1] if len(rest) > 1 else None
        else:
            cell, ppl, status, task = run.expr, run.val_ppl, run.status, run.task
            rung = getattr(run, "rung", None)
        if status == "failed":
            continue
        if status not in ("ok", "diverged"):
            raise ValueError(f"unknown run status {status!r}: expected ok, diverged or failed")
        finished = status == "ok" and ppl is not None and math.isfinite(ppl) and ppl > 0
        cells.append(cell)
        y.append(math.log(ppl) if finished else math.nan)
        div.append(status == "diverged")
        targets.append(target_key(task, rung))
    return Examples(pack(cells), np.asarray(y, dtype=np.float64), np.asarray(div, dtype=bool),
                    targets)


class Ranker:
    """The TreeRNN ranker with its training state (see the module docstring)."""

    def __init__(self, config: RankerConfig = RankerConfig()):
        self.config = config
        self.model = self._new_model()
        self.task_stats: dict[str, tuple[float, float]] = {}  # per target: mean, std of log ppl
        self.history: list[dict] = []
        self.task: str | None = None  # the default task of score and predict
        self.like: dict[str, str] = {}  # task (or ANY_TASK) -> head a new target starts from
        self.prior: dict | None = None  # the state every non-warm fit starts from

    def _new_model(self) -> TreeRNN:
        return TreeRNN(ModelConfig(dim=self.config.dim, seed=self.config.seed,
                                   members=self.config.members))

    @property
    def pretrained(self) -> bool:
        """Does the ranker carry a prior (so it can score before any fit)?"""
        return self.prior is not None

    def adopt(self, task: str) -> None:
        """Make ``task`` the default; give it a head (copied from a related one) if it has none."""
        self._ensure_target(task)
        self.task = task

    def _ensure_target(self, target: str) -> None:
        if target in self.model.targets:
            return
        like = self._like(target)
        self.model.add_target(target, like)
        if like is not None and like in self.task_stats:
            self.task_stats[target] = self.task_stats[like]

    def _like(self, target: str) -> str | None:
        """The head a new target starts from: the same task at another rung, the head the
        prior names for its task or for any task, else None (fresh)."""
        task = task_of(target)
        same = sorted((t for t in self.model.targets if task_of(t) == task), key=_rung)
        if same:
            return same[-1]
        for key in (task, ANY_TASK):
            if self.like.get(key) in self.model.targets:
                return self.like[key]
        return None

    # --- training -----------------------------------------------------------------------

    def fit(self, runs: Iterable, epochs: int | None = None, warm: bool = False,
            progress: Callable[[dict], None] | None = None) -> Ranker:
        """Train on runs. ``warm=True`` continues from the current weights (a cheap refit as
        results arrive); otherwise start afresh: from the prior if there is one (fine-tuning,
        at ``finetune_lr`` for at most ``finetune_epochs``), else from initial weights.
        ``progress`` gets each epoch's history entry as it ends."""
        data = runs if isinstance(runs, Examples) else examples(runs)
        if len(data.targets) == 0:
            raise ValueError("no usable runs to fit the ranker on (all failed, or none given)")
        if not warm:
            self._restart()
        for target in sorted(set(data.targets)):
            self._ensure_target(target)
        if self.task is None:
            self.task = task_of(sorted(set(data.targets))[0])
        self._update_stats(data)
        z = self._standardise(data.log_ppl, data.targets)
        rng = np.random.default_rng(self.config.seed + len(self.history))
        train, val = self._split(len(z), rng)
        cfg = self.config
        lr = cfg.finetune_lr if self.pretrained else cfg.lr
        if not self.pretrained:
            epochs = epochs or cfg.epochs
        else:
            epochs = epochs or (cfg.finetune_epochs if len(val) else cfg.finetune_epochs_few)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed + len(self.history))
            self._train(data, z, train, val, epochs, lr, rng, progress)
        return self

    def _restart(self) -> None:
        """Back to initial weights, or to the prior's (keeping this ranker's training config)."""
        if self.prior is None:
            self.model, self.task_stats, self.history = self._new_model(), {}, []
            return
        config = self.config
        self.load_state_dict({**self.prior, "prior": self.prior})
        self.config = config

    def _update_stats(self, data: Examples) -> None:
        """Mean and std of log ppl per target, from the data's finished runs (two or more);
        a target with fewer keeps what it had, or borrows its starting head's."""
        targets, finished = np.asarray(data.targets), np.isfinite(data.log_ppl)
        for target in sorted(set(data.targets)):
            y = data.log_ppl[(targets == target) & finished]
            if len(y) >= 2:
                std = float(y.std())
                self.task_stats[target] = (float(y.mean()), std if std > 1e-6 else 1.0)
            elif target not in self.task_stats:
                self.task_stats[target] = (float(y[0]), 1.0) if len(y) else (0.0, 1.0)

    def _standardise(self, log_ppl: np.ndarray, targets: Sequence[str]) -> np.ndarray:
        mean = np.array([self.task_stats[t][0] for t in targets])
        std = np.array([self.task_stats[t][1] for t in targets])
        return (log_ppl - mean) / std

    def _head_index(self, targets: Sequence[str]) -> np.ndarray:
        index = {t: i for i, t in enumerate(self.model.targets)}
        return np.array([index[t] for t in targets], dtype=np.int64)

    def _split(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(n)
        n_val = int(round(self.config.val_fraction * n)) if n >= MIN_HELD_OUT else 0
        return order[n_val:], order[:n_val]

    def _train(self, data: Examples, z: np.ndarray, train: np.ndarray, val: np.ndarray,
               epochs: int, lr: float, rng: np.random.Generator,
               progress: Callable[[dict], None] | None = None) -> None:
        cfg = self.config
        heads = self._head_index(data.targets)
        opt = torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        best, best_state, waited = -math.inf, None, 0
        for epoch in range(epochs):
            self.model.train()
            losses = []
            for start in range(0, len(train), cfg.batch_size):
                batch = train[start: start + cfg.batch_size]
                loss = self._loss(data.packed.take(batch), z[batch], data.diverged[batch],
                                  heads[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            rng.shuffle(train)
            score = self._val_score(data, z, val, heads)
            self.history.append({"epoch": epoch, "train_loss": float(np.mean(losses)),
                                 "val_score": score})
            if progress is not None:
                progress(self.history[-1])
            if score > best:
                best, waited = score, 0
                best_state = {k: v.clone() for k, v in self.model.state_dict().items()}
            else:
                waited += 1
                if len(val) and waited >= cfg.patience:
                    break
        if best_state is not None and len(val):
            self.model.load_state_dict(best_state)

    def _loss(self, batch: Packed, z: np.ndarray, diverged: np.ndarray,
              heads: np.ndarray) -> torch.Tensor:
        head = torch.from_numpy(heads)
        preds, logits = self.model(plan(batch), head)
        target = torch.as_tensor(z, dtype=torch.float32)
        done = torch.isfinite(target)
        flags = torch.as_tensor(diverged, dtype=torch.float32)
        losses = []
        for pred, logit in zip(preds, logits, strict=True):  # each member on its own loss
            loss = self.config.div_weight * F.binary_cross_entropy_with_logits(logit, flags)
            if done.sum() >= 1:
                reg = F.smooth_l1_loss(pred[done], target[done])
                if self.config.loss == "pairwise":
                    reg = 0.1 * reg + _pairwise_loss(pred[done], target[done], head[done])
                loss = loss + reg
            losses.append(loss)
        return torch.stack(losses).mean()

    def _val_score(self, data: Examples, z: np.ndarray, val: np.ndarray,
                   heads: np.ndarray) -> float:
        """Higher is better: Kendall tau on finished held-out runs (standardised per target),
        else minus the loss."""
        if len(val) == 0:
            return 0.0
        done = val[np.isfinite(z[val])]
        if len(done) >= 5:
            pred, _ = self._raw(data.packed.take(done), heads[done])
            tau = rank_metrics(pred, z[done])["tau"]
            if not math.isnan(tau):
                return tau
        self.model.eval()
        with torch.no_grad():
            return -float(self._loss(data.packed.take(val), z[val], data.diverged[val],
                                     heads[val]))

    # --- inference ----------------------------------------------------------------------

    def _raw(self, packed: Packed, heads: np.ndarray | int,
             chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Standardised log ppl and divergence probability for packed cells."""
        heads = np.broadcast_to(np.asarray(heads, dtype=np.int64), (len(packed),))
        self.model.eval()
        zs, ps = [], []
        with torch.no_grad():
            for start in range(0, len(packed), chunk):
                part = np.arange(start, min(start + chunk, len(packed)))
                preds, logits = self.model(plan(packed.take(part)),
                                           torch.from_numpy(np.ascontiguousarray(heads[part])))
                zs.append(preds.mean(dim=0).numpy())  # the members' mean
                ps.append(torch.sigmoid(logits).mean(dim=0).numpy())
        if not zs:
            return np.empty(0), np.empty(0)
        return np.concatenate(zs).astype(np.float64), np.concatenate(ps).astype(np.float64)

    def predict(self, cells: Sequence | Packed, task: str | None = None,
                rung: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(predicted log perplexity, probability of divergence) per cell, for ``task`` at
        ``rung`` (see `target`)."""
        target = self.target(task, rung)
        z, p = self._raw(_packed(cells), self.model.targets.index(target))
        mean, std = self.task_stats.get(target, (0.0, 1.0))
        return mean + std * z, p

    def score(self, cells: Sequence | Packed, task: str | None = None,
              rung: int | None = None) -> np.ndarray:
        """One float per cell, higher = more promising (see the module docstring)."""
        z, p = self._raw(_packed(cells), self.model.targets.index(self.target(task, rung)))
        return -z - self.config.div_penalty * p

    def target(self, task: str | None = None, rung: int | None = None) -> str:
        """The head that answers for ``task`` (default: the ranker's task, else the first
        known) at ``rung`` (default: the highest rung the task has a head for)."""
        task = task or self.task or (task_of(self.model.targets[0]) if self.model.targets
                                     else DEFAULT_TASK)
        if rung is not None:
            wanted = target_key(task, rung)
            if wanted in self.model.targets:
                return wanted
        else:
            mine = sorted((t for t in self.model.targets if task_of(t) == task), key=_rung)
            if mine:
                return mine[-1]
        known = ", ".join(self.model.targets) or "none"
        raise ValueError(f"the ranker was not trained on task {target_key(task, rung)!r} "
                         f"(known: {known})")

    # --- persistence --------------------------------------------------------------------

    def state_dict(self, with_prior: bool = True) -> dict:
        """Everything needed to rebuild this ranker: plain values and tensors only."""
        return {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "model_config": self.model.config.to_dict(),
            "model": {k: v.clone() for k, v in self.model.state_dict().items()},
            "task_stats": {t: list(s) for t, s in self.task_stats.items()},
            "task": self.task,
            "like": dict(self.like),
            "epochs_trained": len(self.history),
            "prior": self.prior if with_prior else None,
        }

    def load_state_dict(self, state: dict) -> list[str]:
        """Load a saved state; returns the node types that are newer than it (they keep
        their seeded initial weights). Rankers saved in formats 1 and 2 are converted."""
        state = _upgrade(state)
        if state.get("format") != FORMAT:
            raise ValueError(f"unsupported ranker format {state.get('format')!r}")
        self.config = RankerConfig.from_dict(state["config"])
        self.model = TreeRNN(ModelConfig.from_dict(state["model_config"]))
        newer = self.model.load_by_name(state["model"])
        self.task_stats = {t: (float(s[0]), float(s[1])) for t, s in state["task_stats"].items()}
        self.task = state.get("task")
        self.like = dict(state.get("like") or {})
        self.history = [{} for _ in range(int(state.get("epochs_trained", 0)))]
        self.prior = state.get("prior")
        return newer

    def save(self, path: str | os.PathLike, with_prior: bool = True) -> None:
        """Write atomically and durably (`cellzoo.common.io.atomic_write`)."""
        state = self.state_dict(with_prior)
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ranker:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        ranker = cls()
        ranker.load_state_dict(state)
        return ranker


def _rung(target: str) -> int:
    return int(target.split("@rung")[1]) if "@rung" in target else -1


def _upgrade(state: dict) -> dict:
    """A saved state of an older format in the current one."""
    if state.get("format") == 1:
        state = _from_format_1(state)
    if state.get("format") == 2:
        state = _from_format_2(state)
    return state


def _from_format_1(state: dict) -> dict:
    """Format 1 kept source vectors as rows of one table in vocabulary order and one
    regression and one divergence head shared by every task: give each task a copy."""
    vocab = list(state["model_config"]["vocab"])
    old = state["model"]
    model = {k: v for k, v in old.items() if k.startswith("fns.")}
    for name in SOURCE_NAMES:
        if name in vocab:
            model[f"source.{name}"] = old["source.weight"][vocab.index(name)].clone()
    tasks = sorted(state["task_stats"]) or [DEFAULT_TASK]
    for i in range(len(tasks)):
        model[f"heads.{i}.weight"] = torch.cat([old["reg_head.weight"], old["div_head.weight"]])
        model[f"heads.{i}.bias"] = torch.cat([old["reg_head.bias"], old["div_head.bias"]])
    config = state["config"]
    return {**state, "format": 2, "model": model, "task": tasks[0],
            "model_config": {"dim": state["model_config"]["dim"], "seed": config["seed"],
                             "targets": tasks}}


def _from_format_2(state: dict) -> dict:
    """Format 2 held one network: it is member 0 of a one-member ensemble."""
    prior = state.get("prior")
    return {**state, "format": FORMAT,
            "model": {f"nets.0.{k}": v for k, v in state["model"].items()},
            "model_config": {**state["model_config"], "members": 1},
            "prior": None if prior is None else _upgrade(prior)}


def _packed(cells: Sequence | Packed) -> Packed:
    return cells if isinstance(cells, Packed) else pack(cells)


def _pairwise_loss(pred: torch.Tensor, target: torch.Tensor,
                   head: torch.Tensor) -> torch.Tensor:
    """Logistic loss over all ordered pairs of one target (i worse than j => pred_i > pred_j)."""
    diff_t = target.unsqueeze(1) - target.unsqueeze(0)
    diff_p = pred.unsqueeze(1) - pred.unsqueeze(0)
    mask = (diff_t > 0) & (head.unsqueeze(1) == head.unsqueeze(0))
    if not mask.any():
        return pred.sum() * 0.0
    return F.softplus(-diff_p[mask]).mean()
