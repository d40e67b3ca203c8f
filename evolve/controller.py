"""The RL controller: a grammar-masked LSTM that writes cells token by token, trained by REINFORCE.

The policy emits a cell in prefix order (the order of a DEAP ``PrimitiveTree``); at every
step `cellzoo.evolve.grammar.Grammar` masks the tokens that could not be completed into a
valid cell, so every sample is valid by construction. Each step's input is the sum of
three embeddings: the previous token, the operator whose argument is being written and
the argument's position, so the LSTM knows where in the tree it stands.

Learning follows Zoph & Le (2017): REINFORCE with an exponential-moving-average baseline
and an entropy bonus. The policy can be pre-trained by maximum likelihood on the
human-designed cells (`cellzoo.dsl.library.LIBRARY`), as in Schrimpf, Merity et al. (2017).

The search loop uses `propose` / `update` and keeps `state_dict` in its checkpoint
(`save` / `load`, file ``RUN_DIR/controller.pt``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cellzoo.common.io import atomic_write
from cellzoo.dsl import SOURCES, Limits, Node, canonical_text, parse_cell
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.grammar import ROOT_ARG, START, VOCAB, Grammar, Partial

REWARDS = ("neg_log", "inv_sq")
LEVELS = ("core", "extended")
#: reward of a diverged cell (or one without a finite validation perplexity): three standard
#: deviations below the run's mean for "neg_log", the floor of c / ppl^2 for "inv_sq"
DIVERGED_REWARD = {"neg_log": -3.0, "inv_sq": 0.0}
CHECKPOINT_NAME = "controller.pt"
STATE_VERSION = 1

#: logit head start of the sources in a fresh policy: with it about half of the tokens in
#: a slot are sources, so fresh samples are small trees instead of trees at the size limit
SOURCE_BIAS = math.log(4.0)
PRETRAIN_STEPS = 30
PRETRAIN_LR = 1e-2
GRAD_CLIP = 5.0
SAMPLE_CHUNK = 2048
PROPOSE_ROUNDS = 20


class Policy(nn.Module):
    """An LSTM over (previous token, parent operator, argument position) -> token logits."""

    def __init__(self, hidden: int = 64, emb: int = 32):
        super().__init__()
        self.prev = nn.Embedding(START + 1, emb)
        self.parent = nn.Embedding(START + 1, emb)
        self.arg = nn.Embedding(ROOT_ARG + 1, emb)
        self.lstm = nn.LSTM(emb, hidden, batch_first=True)
        self.head = nn.Linear(hidden, len(VOCAB))
        with torch.no_grad():
            self.head.bias[: len(SOURCES)] += SOURCE_BIAS

    def forward(self, features: torch.Tensor, state=None):
        """features: long [B, T, 3] -> (logits [B, T, V], LSTM state)."""
        x = self.prev(features[..., 0]) + self.parent(features[..., 1]) + self.arg(features[..., 2])
        out, state = self.lstm(x, state)
        return self.head(out), state


class Controller:
    """Proposes cells and learns from how they trained.

    ``level`` "core" or "extended" (operators the policy may use); ``unlock_after``: switch
    from core to extended after that many updates (None: never). ``reward``: "neg_log"
    (-log validation perplexity standardised over the run) or "inv_sq" (``reward_c / ppl^2``).
    """

    def __init__(self, level: str = "core", limits: Limits | None = None, seed: int = 0,
                 reward: str = "neg_log", lr: float = 5e-3, entropy: float = 1e-3,
                 baseline_decay: float = 0.9, pretrain: bool = True,
                 unlock_after: int | None = None, reward_c: float = 80.0**2, hidden: int = 64):
        if level not in LEVELS:
            raise ValueError(f"unknown operator level {level!r}: choose one of {LEVELS}")
        if reward not in REWARDS:
            raise ValueError(f"unknown reward {reward!r}: choose one of {REWARDS}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must lie in [0, 1), got {baseline_decay}")
        if unlock_after is not None and unlock_after < 0:
            raise ValueError(f"unlock_after must be >= 0 or None, got {unlock_after}")
        limits = limits if limits is not None else Limits()
        self.config = {"level": level, "max_depth": limits.max_depth,
                       "max_nodes": limits.max_nodes, "seed": seed, "reward": reward,
                       "lr": lr, "entropy": entropy, "baseline_decay": baseline_decay,
                       "unlock_after": unlock_after, "reward_c": reward_c, "hidden": hidden}
        self.limits = limits
        self.level = level
        self.grammar = Grammar(level, limits)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = Policy(hidden)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None
        self.updates = 0
        self.proposed = 0
        self.reward_stats = [0, 0.0, 0.0]  # Welford count, mean, M2 of -log ppl
        self._optimizer: torch.optim.Optimizer | None = None
        self._optimizer_state: dict[str, Any] | None = None
        self.pretrained_on = self.pretrain() if pretrain else 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The REINFORCE optimiser, built on first use (sampling needs none, and the first
        optimiser a process builds costs seconds of imports)."""
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config["lr"])
            if self._optimizer_state is not None:
                self._optimizer.load_state_dict(self._optimizer_state)
                self._optimizer_state = None
        return self._optimizer

    # -- sampling ------------------------------------------------------------------------

    @torch.no_grad()
    def _sample(self, n: int) -> list[Partial]:
        done: list[Partial] = []
        while len(done) < n:
            done.extend(self._sample_chunk(min(n - len(done), SAMPLE_CHUNK)))
        return done

    def _sample_chunk(self, n: int) -> list[Partial]:
        parts = [self.grammar.start() for _ in range(n)]
        active, state = list(range(n)), None
        while active:
            features = torch.tensor([[parts[i].features()] for i in active])
            logits, state = self.policy(features, state)
            masks = torch.stack([self.grammar.mask(parts[i]) for i in active])
            probs = torch.softmax(logits[:, 0].masked_fill(~masks, -math.inf), dim=-1)
            tokens = torch.multinomial(probs, 1, generator=self.generator)[:, 0].tolist()
            for i, token in zip(active, tokens, strict=True):
                self.grammar.push(parts[i], token)
            keep = [j for j, i in enumerate(active) if not parts[i].done]
            if len(keep) < len(active):
                state = tuple(s[:, keep] for s in state)
                active = [active[j] for j in keep]
        return parts

    def sample(self, n: int) -> list[Node]:
        """``n`` cells drawn from the policy (duplicates possible), no bookkeeping."""
        return [p.tree() for p in self._sample(n)]

    def propose(self, n: int) -> list[Node]:
        """Up to ``n`` distinct cells (by canonical form) for the search to train.

        Fewer come back only when the policy has collapsed so far that
        ``PROPOSE_ROUNDS`` rounds of sampling found fewer distinct cells.
        """
        found: dict[str, Node] = {}
        for _ in range(PROPOSE_ROUNDS):
            if len(found) >= n:
                break
            for tree in self.sample(n - len(found)):
                found.setdefault(canonical_text(tree), tree)
        self.proposed += len(found)
        return list(found.values())

    # -- scoring -------------------------------------------------------------------------

    def _traces(self, trees: Sequence[Node]) -> list[tuple | None]:
        return [self.grammar.trace(tree) for tree in trees]

    def _score(self, traces: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: (sum of log-probabilities, sum of step entropies) per trace."""
        steps = max(len(t[2]) for t in traces)
        features = torch.zeros(len(traces), steps, 3, dtype=torch.long)
        masks = torch.ones(len(traces), steps, len(VOCAB), dtype=torch.bool)
        tokens = torch.zeros(len(traces), steps, dtype=torch.long)
        valid = torch.zeros(len(traces), steps)
        for b, (feats, step_masks, toks) in enumerate(traces):
            features[b, : len(toks)] = torch.tensor(feats)
            masks[b, : len(toks)] = torch.stack(step_masks)
            tokens[b, : len(toks)] = torch.tensor(toks)
            valid[b, : len(toks)] = 1.0
        logits, _ = self.policy(features)
        logp = F.log_softmax(logits.masked_fill(~masks, -math.inf), dim=-1)
        chosen = logp.gather(-1, tokens[..., None])[..., 0] * valid
        entropy = -(logp.exp() * logp.masked_fill(~masks, 0.0)).sum(-1) * valid
        return chosen.sum(1), entropy.sum(1)

    def log_prob(self, trees: Sequence[Node]) -> list[float]:
        """Log-probability of writing each tree (-inf for trees outside the grammar)."""
        traces = self._traces(trees)
        inside = [t for t in traces if t is not None]
        with torch.no_grad():
            scores = iter(self._score(inside)[0].tolist()) if inside else iter(())
        return [next(scores) if t is not None else -math.inf for t in traces]

    # -- learning ------------------------------------------------------------------------

    def pretrain(self, steps: int = PRETRAIN_STEPS) -> int:
        """Maximum likelihood on the library cells this level and these limits can write.

        Returns how many library cells were used (the rest need other operators).
        """
        traces = [t for t in self._traces([parse_cell(c.expr) for c in LIBRARY.values()]) if t]
        if not traces:
            return 0
        tokens = sum(len(t[2]) for t in traces)
        optimizer = torch.optim.Adam(self.policy.parameters(), lr=PRETRAIN_LR)
        for _ in range(steps):
            loss = -self._score(traces)[0].sum() / tokens
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return len(traces)

    def reinforce(self, trees: Sequence[Node], rewards: Sequence[float]) -> dict[str, float]:
        """One REINFORCE step on (tree, reward) pairs; trees outside the grammar are skipped.

        Returns the step's statistics: mean reward, baseline before the step, loss, cells used.
        """
        if len(trees) != len(rewards):
            raise ValueError(f"{len(trees)} trees but {len(rewards)} rewards")
        pairs = [(t, r) for t, r in zip(self._traces(trees), rewards, strict=True)
                 if t is not None]
        if not pairs:
            return {"cells": 0}
        reward = torch.tensor([r for _, r in pairs], dtype=torch.float32)
        mean = float(reward.mean())
        baseline = mean if self.baseline is None else self.baseline
        logp, entropy = self._score([t for t, _ in pairs])
        loss = -((reward - baseline) * logp).mean() - self.config["entropy"] * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), GRAD_CLIP)
        self.optimizer.step()
        decay = self.config["baseline_decay"]
        self.baseline = decay * baseline + (1.0 - decay) * mean
        self.updates += 1
        self._maybe_unlock()
        return {"cells": len(pairs), "reward": mean, "baseline": baseline,
                "loss": float(loss.detach())}

    def update(self, results: Sequence[tuple[Node, Any]]) -> dict[str, float]:
        """Learn from trained cells: (tree, TrainResult) pairs.

        Status "failed" says nothing about the cell (the run broke), so those are left out;
        "diverged" earns `DIVERGED_REWARD`.
        """
        used = [(tree, result) for tree, result in results if result.status != "failed"]
        rewards = self.rewards([result for _, result in used])
        return self.reinforce([tree for tree, _ in used], rewards)

    def rewards(self, results: Sequence[Any]) -> list[float]:
        """The configured reward of each TrainResult (updates the run's statistics)."""
        kind = self.config["reward"]
        ok = [r.status == "ok" and math.isfinite(r.val_ppl) and r.val_ppl > 0 for r in results]
        if kind == "inv_sq":
            return [self.config["reward_c"] / r.val_ppl**2 if good else DIVERGED_REWARD[kind]
                    for r, good in zip(results, ok, strict=True)]
        for r, good in zip(results, ok, strict=True):
            if good:
                self._observe(-math.log(r.val_ppl))
        count, mean, m2 = self.reward_stats
        std = math.sqrt(m2 / (count - 1)) if count > 1 else 1.0
        std = max(std, 1e-6)
        return [(-math.log(r.val_ppl) - mean) / std if good else DIVERGED_REWARD[kind]
                for r, good in zip(results, ok, strict=True)]

    def _observe(self, value: float) -> None:
        count, mean, m2 = self.reward_stats
        count += 1
        delta = value - mean
        mean += delta / count
        self.reward_stats = [count, mean, m2 + delta * (value - mean)]

    def _maybe_unlock(self) -> None:
        after = self.config["unlock_after"]
        if self.level == "core" and after is not None and self.updates >= after:
            self.set_level("extended")

    def set_level(self, level: str) -> None:
        """Switch the operators the policy may use from now on ('core' or 'extended')."""
        if level not in LEVELS:
            raise ValueError(f"unknown operator level {level!r}: choose one of {LEVELS}")
        if level != self.level:
            self.level = level
            self.grammar = Grammar(level, self.limits)

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: config, weights, optimiser, baseline, counters, RNG."""
        return {"version": STATE_VERSION, "config": dict(self.config), "level": self.level,
                "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline, "updates": self.updates, "proposed": self.proposed,
                "pretrained_on": self.pretrained_on, "reward_stats": list(self.reward_stats),
                "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; its stored configuration replaces this one's."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"controller state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}")
        config = state["config"]
        if config["hidden"] != self.config["hidden"]:
            self.policy = Policy(config["hidden"])
        self.config = dict(config)
        self.limits = Limits(config["max_depth"], config["max_nodes"])
        self.level = state["level"]
        self.grammar = Grammar(self.level, self.limits)
        self.policy.load_state_dict(state["policy"])
        self._optimizer, self._optimizer_state = None, state["optimizer"]
        self.baseline = state["baseline"]
        self.updates = state["updates"]
        self.proposed = state["proposed"]
        self.pretrained_on = state["pretrained_on"]
        self.reward_stats = list(state["reward_stats"])
        self.generator.set_state(state["rng"])

    def save(self, path: str | Path) -> None:
        """Write `state_dict` atomically and durably (`cellzoo.common.io.atomic_write`)."""
        state = self.state_dict()
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str | Path) -> Controller:
        """A controller restored from a file written by `save` (no pre-training)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no controller state at {path}")
        state = torch.load(path, weights_only=True)
        config = state["config"]
        controller = cls(level=config["level"],
                         limits=Limits(config["max_depth"], config["max_nodes"]),
                         seed=config["seed"], reward=config["reward"], hidden=config["hidden"],
                         pretrain=False)
        controller.load_state_dict(state)
        return controller


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where a search run keeps its controller state."""
    return Path(run_dir) / CHECKPOINT_NAME
