"""Judge the ranker and the baselines on NAS-Bench-NLP: same splits, same metrics, side by side.

Per seed: shuffle the PTB architectures, train on the first ``train_size``
(targets: final validation perplexity; divergence: status other than OK), test
on the next ``test_size``. Kendall tau and Spearman rho compare predicted log
perplexity with the true final *test* perplexity over the test cells that
finished; the divergence AUC uses every test cell. Harder views of the same
predictions:

* ``tau_no_twins``: test cells whose graph (up to renaming of nodes,
  `nbnlp.recipe_key`) is also in the training split are removed;
* ``tau_better_half``: only the finished test cells at or below the median test
  perplexity;
* ``tau_wt2`` / ``tau_wt2_no_twins``: the same PTB-trained model ranks
  NAS-Bench-NLP's finished WikiText-2 runs (transfer), with and without the
  runs that have a twin in the PTB training split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from cellzoo.ranker.baseline import CountBaseline
from cellzoo.ranker.fit import Examples, Ranker, RankerConfig, join
from cellzoo.ranker.graph import Packed, pack
from cellzoo.ranker.metrics import divergence_auc, rank_metrics
from cellzoo.ranker.nbnlp import TARGETS, NBRun, recipe_key, recipe_to_graph

METRICS = ("tau", "rho", "auc", "tau_no_twins", "tau_better_half", "tau_wt2", "tau_wt2_no_twins")
BASELINES = {"forest": False, "forest_edges": True}  # name -> edge counts as features


def nbnlp_examples(runs: list[NBRun], dataset: str = "ptb") -> tuple[Examples, np.ndarray]:
    """All runs as ranker `Examples` (targets: log final val ppl; target name per dataset)
    and their log test ppl."""
    packed = pack([recipe_to_graph(r.recipe) for r in runs])
    log_val = np.array([math.log(r.val_ppl) if r.finished else math.nan for r in runs])
    log_test = np.array([math.log(r.test_ppl) if r.finished else math.nan for r in runs])
    diverged = np.array([not r.finished for r in runs])
    return Examples(packed, log_val, diverged, [TARGETS[dataset]] * len(runs)), log_test


def curve_examples(runs: list[NBRun], epochs: Sequence[int],
                   dataset: str = "ptb") -> Examples:
    """Points of the runs' learning curves as extra targets: the validation loss (log
    perplexity) after each of ``epochs``, one target per epoch (`curve_target`), for every
    run whose curve reaches that epoch with a finite loss. They train the shared trunk on
    more of what each training run measured; only the final result's head is judged."""
    graphs = [recipe_to_graph(r.recipe) for r in runs]  # once, not once per epoch
    parts = []
    for epoch in epochs:
        rows = [(i, r.val_losses[epoch - 1]) for i, r in enumerate(runs)
                if len(r.val_losses) >= epoch and math.isfinite(r.val_losses[epoch - 1])]
        index = np.array([i for i, _ in rows], dtype=np.int64)
        parts.append(Examples(pack([graphs[i] for i in index]),
                              np.array([loss for _, loss in rows]),
                              np.zeros(len(rows), dtype=bool),
                              [curve_target(dataset, epoch)] * len(rows)))
    return join(parts)


def curve_target(dataset: str, epoch: int) -> str:
    """The target of a learning-curve point: its own task, never a rung of the final one."""
    return f"{TARGETS[dataset]}/epoch{epoch}"


class _Judge:
    """The test cells of one split (and the WikiText-2 runs) with what each metric needs."""

    def __init__(self, log_test: np.ndarray, diverged: np.ndarray, twin: np.ndarray,
                 wt2: tuple[Packed, np.ndarray, np.ndarray] | None):
        self.log_test, self.diverged, self.twin, self.wt2 = log_test, diverged, twin, wt2
        done = np.isfinite(log_test)
        self.better = done & (log_test <= np.median(log_test[done])) if done.any() else done

    def __call__(self, predict: Callable[[Packed], tuple[np.ndarray, np.ndarray]],
                 packed: Packed) -> dict[str, float]:
        pred, p_div = predict(packed)
        out = {**rank_metrics(pred, self.log_test),
               "auc": divergence_auc(p_div, self.diverged),
               "tau_no_twins": _tau(pred, self.log_test, ~self.twin),
               "tau_better_half": _tau(pred, self.log_test, self.better)}
        if self.wt2 is not None:
            wt2_packed, wt2_log_test, wt2_twin = self.wt2
            wt2_pred = predict(wt2_packed)[0]
            out["tau_wt2"] = _tau(wt2_pred, wt2_log_test, np.ones(len(wt2_twin), dtype=bool))
            out["tau_wt2_no_twins"] = _tau(wt2_pred, wt2_log_test, ~wt2_twin)
        return out


def _tau(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    return rank_metrics(pred[mask], true[mask])["tau"]


def eval_nbnlp(runs: list[NBRun], train_size: int = 1000, test_size: int = 2000, seeds: int = 1,
               config: RankerConfig | None = None, baseline: bool = True,
               progress: Callable[[str], None] | None = None,
               wt2_runs: list[NBRun] | None = None, curve_epochs: Sequence[int] = ()) -> dict:
    """Train and test on random splits for each seed; per-seed and mean metrics of every model.
    With ``wt2_runs``, each PTB-trained model also ranks those (the transfer score). With
    ``curve_epochs``, the ranker also trains on its training runs' learning curves at those
    epochs (`curve_examples`; the forests see final results only)."""
    if train_size < 2 or test_size < 2:
        raise ValueError("train and test sizes must be at least 2")
    if train_size + test_size > len(runs):
        raise ValueError(f"train size {train_size} + test size {test_size} exceed the "
                         f"{len(runs)} architectures available")
    config = config or RankerConfig()
    bench = _Bench(runs, wt2_runs, curve_epochs)
    models = ["ranker", *(BASELINES if baseline else ())]
    per_seed = []
    for seed in range(seeds):
        row = bench.seed_row(seed, train_size, test_size, config, models)
        per_seed.append(row)
        if progress:
            progress(_line(row))
    metrics = [m for m in METRICS if m in per_seed[0]["ranker"]]
    return {
        "train_size": train_size, "test_size": test_size, "seeds": seeds,
        "config": config.to_dict(), "curve_epochs": list(curve_epochs),
        "mean": {m: {k: _mean([r[m][k] for r in per_seed]) for k in metrics} for m in models},
        "per_seed": per_seed,
    }


class _Bench:
    """The architectures (and WikiText-2 runs) every seed's split is drawn from."""

    def __init__(self, runs: list[NBRun], wt2_runs: list[NBRun] | None,
                 curve_epochs: Sequence[int]):
        self.runs, self.curve_epochs = runs, curve_epochs
        self.data, self.log_test = nbnlp_examples(runs)
        self.keys = np.array([recipe_key(r.recipe) for r in runs])
        self.wt2 = _wt2(wt2_runs)

    def seed_row(self, seed: int, train_size: int, test_size: int, config: RankerConfig,
                 models: list[str]) -> dict:
        """One seed's split, and every model's metrics on it (with its seconds)."""
        order = np.random.default_rng(seed).permutation(len(self.runs))
        train, test = order[:train_size], order[train_size: train_size + test_size]
        trained, tested = self.data.take(train), self.data.take(test)
        seen = set(self.keys[train])
        twin = np.array([k in seen for k in self.keys[test]])
        wt2 = self.wt2
        if wt2 is not None:
            wt2 = (*wt2[:2], np.array([k in seen for k in wt2[2]]))
        judge = _Judge(self.log_test[test], tested.diverged, twin, wt2)
        row = {"seed": seed, "test_finished": int(np.isfinite(self.log_test[test]).sum()),
               "test_twins": int(twin.sum())}
        if wt2 is not None:
            row["wt2_finished"] = int(np.isfinite(wt2[1]).sum())
            row["wt2_twins"] = int((wt2[2] & np.isfinite(wt2[1])).sum())
        for name in models:
            start = time.perf_counter()
            model = self._fit(name, seed, train, trained, config)
            row[name] = {**judge(model.predict, tested.packed),
                         "seconds": time.perf_counter() - start}
            if name == "ranker":
                row[name]["epochs"] = len(model.history)
        return row

    def _fit(self, name: str, seed: int, train: np.ndarray, trained: Examples,
             config: RankerConfig):
        """The ranker (on the final results, and the learning curves when asked) or a forest
        baseline, fitted on one split's training runs."""
        if name != "ranker":
            return CountBaseline(seed=seed, edges=BASELINES[name]).fit(
                trained.packed, trained.log_ppl, trained.diverged)
        curves = ([curve_examples([self.runs[i] for i in train], self.curve_epochs)]
                  if self.curve_epochs else [])
        ranker = Ranker(RankerConfig(**{**config.to_dict(), "seed": seed}))
        ranker.fit(join([trained, *curves]))
        ranker.adopt(TARGETS["ptb"])
        return ranker


def _wt2(runs: list[NBRun] | None) -> tuple[Packed, np.ndarray, np.ndarray] | None:
    if not runs:
        return None
    examples, log_test = nbnlp_examples(runs, "wikitext-2")
    return examples.packed, log_test, np.array([recipe_key(r.recipe) for r in runs])


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _line(row: dict) -> str:
    parts = [f"seed {row['seed']}"]
    for m in ("ranker", *BASELINES):
        if m in row:
            r = row[m]
            parts.append(f"{m}: tau {r['tau']:.3f} no-twins {r['tau_no_twins']:.3f} "
                         f"better-half {r['tau_better_half']:.3f}"
                         + (f" wt2 {r['tau_wt2']:.3f}" if "tau_wt2" in r else ""))
    return " | ".join(parts)
