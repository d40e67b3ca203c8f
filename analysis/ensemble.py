"""Ensembles of zoo runs: average next-token distributions, choose members greedily.

The ensemble's distribution is the weighted mean of its members' distributions
(in probability space). Its log-probability of a target token depends only on
each member's log-probability of that target, so every member is run once per
split, streamed window by window, and only its target log-probs are kept: a
[tokens x members] matrix (cached in the analysis file) from which every
ensemble, greedy selection step and pairwise gain is computed with log-sum-exp.

Greedy forward selection with replacement follows Caruana et al., "Ensemble
selection from libraries of models", ICML 2004: start empty, repeatedly add the
member (possibly again) that most lowers the validation loss, and keep the best
ensemble seen. The counts are integer weights. The first step picks the best
single member, so the result is never worse on validation than it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import logsumexp

from cellzoo.analysis.activations import check_vocab
from cellzoo.analysis.cache import AnalysisCache, AnalysisError, array_key
from cellzoo.analysis.selection import labels, select_runs
from cellzoo.train import Corpus, LanguageModel, batchify, get_batch, load_corpus
from cellzoo.zoo import Run, Zoo, ZooError

FORMAT = "cellzoo-ensemble/1"
SELECTS = ("greedy", "top")


@dataclass(frozen=True)
class Layout:
    """How a split is streamed: batch columns, window length, optional token cap. Every member
    of an ensemble is evaluated under the same layout, so their token rows line up."""

    batch: int = 10
    bptt: int = 35
    tokens: int | None = None


def target_logprobs(model: LanguageModel, data: torch.Tensor, layout: Layout) -> np.ndarray:
    """log p(target) of every token of a 1-D split, state carried across windows; only one
    window's logits exist at a time. Order: window by window, then time, then batch column."""
    if layout.tokens is not None:
        data = data[: layout.tokens + 1]
    source = batchify(data, min(layout.batch, max(1, data.size(0) // 2)))
    model.eval()
    out = []
    with torch.no_grad():
        state = model.init_state(source.size(1))
        for i in range(0, source.size(0) - 1, layout.bptt):
            inputs, targets = get_batch(source, i, layout.bptt)
            logits, state = model(inputs, state)
            logp = F.log_softmax(logits.double(), dim=-1)
            out.append(logp.gather(2, targets.unsqueeze(2)).flatten())
    return torch.cat(out).numpy()


def check_same_task(runs: Sequence[Run]) -> str:
    tasks = sorted({r.task for r in runs})
    if len(tasks) != 1:
        raise AnalysisError(f"ensemble members must share one task and vocabulary; got runs of "
                            f"{', '.join(tasks) or 'no task'}")
    return tasks[0]


def member_logprobs(zoo: Zoo, runs: Sequence[Run], corpus: Corpus, split: str, layout: Layout,
                    cache: AnalysisCache) -> np.ndarray:
    """[tokens, members] target log-probs of each run on a split (cached per run)."""
    check_same_task(runs)
    data = getattr(corpus, split)
    key = f"logp-{split}-{array_key(data.numpy(), layout)}"

    def compute(run: Run) -> dict[str, np.ndarray]:
        model = zoo.rebuild(run.run_id)
        check_vocab(model, run, corpus.vocab_size)
        return {"target_logp": target_logprobs(model, data, layout)}

    columns = [cache.fetch(r.run_id, key, lambda r=r: compute(r))["target_logp"] for r in runs]
    return np.stack(columns, axis=1)


def ensemble_logp(logp: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Per-token log-prob of the weighted mixture of the members (columns of ``logp``)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (logp.shape[1],) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"need {logp.shape[1]} non-negative weights with a positive sum, got {w}")
    used = w > 0
    return logsumexp(logp[:, used] + np.log(w[used] / w.sum()), axis=1)


def perplexity(logp: np.ndarray) -> float:
    nll = -float(np.mean(logp))
    return math.exp(nll) if nll < 700 else math.inf


def greedy_select(logp: np.ndarray, rounds: int) -> np.ndarray:
    """Integer weights from greedy forward selection with replacement on ``logp`` [tokens,
    members]: ``rounds`` additions, the best ensemble seen is returned (ties: lower column),
    its counts divided by their greatest common divisor."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    counts = np.zeros(logp.shape[1], dtype=np.int64)
    log_sum = np.full(logp.shape[0], -np.inf)  # log of the chosen members' summed probabilities
    best_nll, best = math.inf, counts
    for size in range(1, rounds + 1):
        candidates = np.logaddexp(log_sum[:, None], logp)
        nll = -(candidates.mean(axis=0) - math.log(size))
        pick = int(np.argmin(nll))
        counts = counts.copy()
        counts[pick] += 1
        log_sum = candidates[:, pick]
        if nll[pick] < best_nll:
            best_nll, best = nll[pick], counts
    return best // np.gcd.reduce(best)


@dataclass
class Member:
    run_id: str
    hash: str
    label: str
    expr: str
    weight: int
    val_ppl: float
    test_ppl: float


@dataclass
class EnsembleResult:
    """An ensemble and its test perplexity beside its best member's and the uniform pool's."""

    task: str
    select: str
    layout: Layout
    members: list[Member]  # weight > 0
    pool: list[Member]  # the candidates (weights here are the ensemble's, 0 if unused)
    val_ppl: float
    test_ppl: float
    best_member: str  # label of the member with the lowest test perplexity
    best_member_test_ppl: float
    uniform_test_ppl: float  # uniform average of the whole pool

    @property
    def gain(self) -> float:
        """Relative test-perplexity reduction of the ensemble against its best member."""
        return 1.0 - self.test_ppl / self.best_member_test_ppl

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["gain"] = self.gain
        data["pool_size"] = len(self.pool)
        return data

    def spec(self) -> dict[str, Any]:
        """What `save` writes: enough to evaluate the same ensemble again."""
        return {"format": FORMAT, "task": self.task, "select": self.select,
                "layout": asdict(self.layout),
                "members": [{"run_id": m.run_id, "hash": m.hash, "expr": m.expr,
                             "weight": m.weight} for m in self.members],
                "pool": [{"run_id": m.run_id, "hash": m.hash} for m in self.pool]}


def evaluate_weights(zoo: Zoo, pool: Sequence[Run], weights: Sequence[int], select: str,
                     corpus: Corpus, layout: Layout, cache: AnalysisCache,
                     valid: np.ndarray | None = None) -> EnsembleResult:
    """Validation/test perplexities of the weighted ensemble over ``pool``, its members and the
    uniform average of the pool. ``valid``: the pool's validation log-probs, if already at hand."""
    if valid is None:
        valid = member_logprobs(zoo, pool, corpus, "valid", layout, cache)
    test = member_logprobs(zoo, pool, corpus, "test", layout, cache)
    names = labels(pool)
    rows = [Member(r.run_id, r.hash, name, r.expr, int(w), perplexity(valid[:, i]),
                   perplexity(test[:, i]))
            for i, (r, name, w) in enumerate(zip(pool, names, weights, strict=True))]
    members = [m for m in rows if m.weight > 0]
    best = min(members, key=lambda m: m.test_ppl)
    return EnsembleResult(
        task=check_same_task(pool), select=select, layout=layout, members=members, pool=rows,
        val_ppl=perplexity(ensemble_logp(valid, weights)),
        test_ppl=perplexity(ensemble_logp(test, weights)),
        best_member=best.label, best_member_test_ppl=best.test_ppl,
        uniform_test_ppl=perplexity(ensemble_logp(test, np.ones(len(pool)))))


def build(zoo: Zoo, task: str | None = None, top: int = 10, select: str = "greedy",
          size: int | None = None, data_dir: str | Path | None = None,
          cache: AnalysisCache | None = None, layout: Layout = Layout(),
          runs: Sequence[str] | None = None) -> EnsembleResult:
    """Pool = the runs with the id prefixes ``runs`` if given, else the ``top`` runs of the
    task by validation perplexity. ``greedy``: ``size``
    selection rounds (default 2 x pool) on the validation split; ``top``: the first ``size``
    runs of the pool (default all), equal weights."""
    if select not in SELECTS:
        raise ValueError(f"unknown selection {select!r}; choose one of {', '.join(SELECTS)}")
    cache = cache or AnalysisCache(None)
    pool = select_runs(zoo, top=top, task=task, runs=runs)
    corpus = load_corpus(pool[0].task, data_dir)
    valid = None
    if select == "greedy":
        valid = member_logprobs(zoo, pool, corpus, "valid", layout, cache)
        weights = greedy_select(valid, size or 2 * len(pool))
    else:
        weights = np.array([1 if i < (size or len(pool)) else 0 for i in range(len(pool))])
    return evaluate_weights(zoo, pool, weights, select, corpus, layout, cache, valid)


def save(result: EnsembleResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result.spec(), indent=1) + "\n")


def load(zoo: Zoo, path: str | Path, data_dir: str | Path | None = None,
         cache: AnalysisCache | None = None) -> EnsembleResult:
    """Evaluate a saved ensemble again on ``zoo`` (its runs must be there, with their cells)."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise AnalysisError(f"cannot read ensemble file {path}: {err}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise AnalysisError(f"{path} is not a cellzoo ensemble file (format {FORMAT})")
    weights = {m["run_id"]: m["weight"] for m in spec["members"]}
    pool = [_stored_run(zoo, entry, path) for entry in spec["pool"]]
    if pool and pool[0].task != spec["task"]:
        raise AnalysisError(f"{path} is an ensemble for task {spec['task']!r}, but its runs in "
                            f"{zoo.path} are of task {pool[0].task!r}")
    corpus = load_corpus(spec["task"], data_dir)
    return evaluate_weights(zoo, pool, [weights.get(r.run_id, 0) for r in pool], spec["select"],
                            corpus, Layout(**spec["layout"]), cache or AnalysisCache(None))


def _stored_run(zoo: Zoo, entry: dict[str, str], path: str | Path) -> Run:
    try:
        run = zoo.run(entry["run_id"])
    except ZooError:
        raise AnalysisError(f"{path}: run {entry['run_id']} (cell {entry['hash']}) is not in "
                            f"zoo {zoo.path}") from None
    if run.hash != entry["hash"]:
        raise AnalysisError(f"{path}: run {run.run_id} holds cell {run.hash} in {zoo.path}, "
                            f"the ensemble expects {entry['hash']}")
    return run
