"""Judge the ranker and the baseline on NAS-Bench-NLP: same splits, same metrics, side by side.

Per seed: shuffle the architectures, train on the first ``train_size`` (targets:
final validation perplexity; divergence: status other than OK), test on the next
``test_size``. Kendall tau and Spearman rho compare predicted log perplexity with
the true final *test* perplexity over the test cells that finished; the
divergence AUC uses every test cell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from cellzoo.ranker.baseline import CountBaseline
from cellzoo.ranker.fit import Examples, Ranker, RankerConfig
from cellzoo.ranker.graph import pack
from cellzoo.ranker.metrics import divergence_auc, rank_metrics
from cellzoo.ranker.nbnlp import NBRun, recipe_to_graph

METRICS = ("tau", "rho", "auc")


def nbnlp_examples(runs: list[NBRun]) -> tuple[Examples, np.ndarray]:
    """All runs as ranker `Examples` (targets: log final val ppl) and their log test ppl."""
    packed = pack([recipe_to_graph(r.recipe) for r in runs])
    log_val = np.array([math.log(r.val_ppl) if r.finished else math.nan for r in runs])
    log_test = np.array([math.log(r.test_ppl) if r.finished else math.nan for r in runs])
    diverged = np.array([not r.finished for r in runs])
    return Examples(packed, log_val, diverged, ["ptb"] * len(runs)), log_test


def _subset(data: Examples, idx: np.ndarray) -> Examples:
    return Examples(data.packed.take(idx), data.log_ppl[idx], data.diverged[idx],
                    [data.tasks[i] for i in idx])


def _judge(log_ppl: np.ndarray, p_div: np.ndarray, log_test: np.ndarray,
           diverged: np.ndarray) -> dict[str, float]:
    return {**rank_metrics(log_ppl, log_test), "auc": divergence_auc(p_div, diverged)}


def eval_nbnlp(runs: list[NBRun], train_size: int = 1000, test_size: int = 2000, seeds: int = 1,
               config: RankerConfig | None = None, baseline: bool = True,
               progress: Callable[[str], None] | None = None) -> dict:
    """Train and test on random splits for each seed; per-seed and mean metrics of both models."""
    if train_size < 2 or test_size < 2:
        raise ValueError("train and test sizes must be at least 2")
    if train_size + test_size > len(runs):
        raise ValueError(f"train size {train_size} + test size {test_size} exceed the "
                         f"{len(runs)} architectures available")
    config = config or RankerConfig()
    data, log_test = nbnlp_examples(runs)
    per_seed = []
    for seed in range(seeds):
        order = np.random.default_rng(seed).permutation(len(runs))
        train, test = order[:train_size], order[train_size: train_size + test_size]
        trained, tested = _subset(data, train), _subset(data, test)
        row = {"seed": seed, "test_finished": int(np.isfinite(log_test[test]).sum())}
        start = time.perf_counter()
        ranker = Ranker(RankerConfig(**{**config.to_dict(), "seed": seed}))
        ranker.fit(trained)
        pred, p = ranker.predict(tested.packed)
        row["ranker"] = {**_judge(pred, p, log_test[test], tested.diverged),
                         "seconds": time.perf_counter() - start, "epochs": len(ranker.history)}
        if baseline:
            start = time.perf_counter()
            rf = CountBaseline(seed=seed).fit(trained.packed, trained.log_ppl, trained.diverged)
            pred, p = rf.predict(tested.packed)
            row["baseline"] = {**_judge(pred, p, log_test[test], tested.diverged),
                               "seconds": time.perf_counter() - start}
        per_seed.append(row)
        if progress:
            progress(_line(row))
    models = ["ranker", "baseline"] if baseline else ["ranker"]
    return {
        "train_size": train_size, "test_size": test_size, "seeds": seeds,
        "config": config.to_dict(),
        "mean": {m: {k: _mean([r[m][k] for r in per_seed]) for k in METRICS} for m in models},
        "per_seed": per_seed,
    }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _line(row: dict) -> str:
    parts = [f"seed {row['seed']}"]
    for m in ("ranker", "baseline"):
        if m in row:
            r = row[m]
            parts.append(f"{m}: tau {r['tau']:.3f} rho {r['rho']:.3f} auc {r['auc']:.3f}")
    return " | ".join(parts)
