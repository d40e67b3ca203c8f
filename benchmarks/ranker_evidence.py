"""Early results as evidence: does a cell's early validation loss, beside its architecture,
predict its final result better than either alone? Measured on NAS-Bench-NLP (PTB).

A ladder rung is an early point of a cell's learning curve; NAS-Bench-NLP holds the whole
curve (50 epochs) of 11,598 finished cells. Per seed, the split of `cellzoo rank
eval-nbnlp` (train cells, then test cells, from one random permutation): the TreeRNN
ranker fits on the first ``--train-size`` minus ``--combine-size`` training cells, and the
blend of its prediction with the early validation loss is chosen on the rest (cells the
ranker never saw). Then, for each early epoch E, three rankings of the
finished test cells are compared with their final test perplexity (Kendall tau, all and
the better half):

* ``arch``: the ranker alone (no early result);
* ``early``: the validation loss after epoch E alone;
* ``both``: the blend ``(1 - w) * rank(arch) + w * rank(early)`` (ranks as quantiles),
  with ``w`` the grid value (0, 0.1, ..., 1) that ranks the combining cells best. Ranks,
  not values, so that the few cells with a huge early loss do not set the blend.

The early epochs default to 1, 2 and 5 of 50 (2%, 4%, 10% of the run, the share of the
ladder's rungs 0 to 2 on zaremba-small is 1.2%, 3.7% and 11.1%).

    python benchmarks/ranker_evidence.py --seeds 3                  # minutes of CPU
    python benchmarks/ranker_evidence.py --train-size 200 --combine-size 50 --test-size 300
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from scipy.stats import rankdata

from cellzoo.ranker.evaluate import nbnlp_examples
from cellzoo.ranker.fit import Examples, Ranker, RankerConfig
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.nbnlp import NBRun, load_runs


def early_log_loss(runs: list[NBRun], epoch: int) -> np.ndarray:
    """Each run's validation loss after ``epoch`` (1-based; log perplexity), nan if absent."""
    return np.array([r.val_losses[epoch - 1] if len(r.val_losses) >= epoch else math.nan
                     for r in runs])


def taus(pred: np.ndarray, log_test: np.ndarray) -> dict[str, float]:
    """Tau over the finished cells given, and over their better half."""
    better = log_test <= np.median(log_test)
    return {"tau": rank_metrics(pred, log_test)["tau"],
            "tau_better_half": rank_metrics(pred[better], log_test[better])["tau"]}


WEIGHTS = np.linspace(0, 1, 11)


def quantiles(values: np.ndarray) -> np.ndarray:
    return rankdata(values) / len(values)


def blend_weight(arch: np.ndarray, early: np.ndarray, log_test: np.ndarray) -> float:
    """The weight of the early result that ranks these cells best (the smallest on ties)."""
    a, e = quantiles(arch), quantiles(early)
    scores = [rank_metrics((1 - w) * a + w * e, log_test)["tau"] for w in WEIGHTS]
    return float(WEIGHTS[int(np.argmax(scores))])


def one_seed(data: Examples, log_test: np.ndarray, early: dict[int, np.ndarray], seed: int,
             args: argparse.Namespace) -> dict:
    """One split: the ranker, then each early epoch's ranking and blend (``early``: epoch ->
    every run's early log loss)."""
    order = np.random.default_rng(seed).permutation(len(log_test))
    fit_size = args.train_size - args.combine_size
    fit, combine = order[:fit_size], order[fit_size:args.train_size]
    test = order[args.train_size:args.train_size + args.test_size]
    start = time.perf_counter()
    ranker = Ranker(RankerConfig(seed=seed)).fit(data.take(fit))
    seconds = time.perf_counter() - start
    combine = combine[np.isfinite(log_test[combine])]
    test = test[np.isfinite(log_test[test])]
    arch = {"combine": ranker.predict(data.packed.take(combine))[0],
            "test": ranker.predict(data.packed.take(test))[0]}
    row = {"seed": seed, "fit_cells": len(fit), "combine_cells": len(combine),
           "test_cells": len(test), "ranker_seconds": seconds,
           "arch": taus(arch["test"], log_test[test])}
    for epoch, loss in early.items():
        w = blend_weight(arch["combine"], loss[combine], log_test[combine])
        pred = (1 - w) * quantiles(arch["test"]) + w * quantiles(loss[test])
        row[f"epoch{epoch}"] = {"early": taus(loss[test], log_test[test]),
                                "both": taus(pred, log_test[test]), "weight": w}
    return row


def mean_table(rows: list[dict], epochs: list[int]) -> list[dict]:
    """Mean taus over the seeds: the architecture alone, then each epoch's early and blend."""
    def mean(path: tuple[str, ...]) -> dict[str, float]:
        picked = [r[path[0]] if len(path) == 1 else r[path[0]][path[1]] for r in rows]
        return {k: float(np.mean([p[k] for p in picked])) for k in ("tau", "tau_better_half")}

    table = [{"early epoch": "-", "model": "arch", **mean(("arch",))}]
    table += [{"early epoch": e, "model": m, **mean((f"epoch{e}", m))}
              for e in epochs for m in ("early", "both")]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="NAS-Bench-NLP folder (default: "
                        "$CELLZOO_DATA/nas-bench-nlp)")
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--combine-size", type=int, default=200)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 0 < args.combine_size < args.train_size:
        parser.error("--combine-size must be above 0 and below --train-size")
    runs = load_runs(args.data)
    if args.train_size + args.test_size > len(runs):
        parser.error(f"--train-size + --test-size exceed the {len(runs)} runs")
    data, log_test = nbnlp_examples(runs)
    early = {epoch: early_log_loss(runs, epoch) for epoch in args.epochs}
    rows = []
    for seed in range(args.seeds):
        rows.append(one_seed(data, log_test, early, seed, args))
        if not args.json:
            print(json.dumps(rows[-1]), flush=True)
    table = mean_table(rows, args.epochs)
    if args.json:
        print(json.dumps({"per_seed": rows, "mean": table}))
        return
    print(f"\nmean over {args.seeds} seeds (test: finished cells of {args.test_size})")
    print("| early epoch (of 50) | ranking by | tau | tau, better half |")
    print("|---|---|---|---|")
    for r in table:
        print(f"| {r['early epoch']} | {r['model']} | {r['tau']:.3f} | "
              f"{r['tau_better_half']:.3f} |")


if __name__ == "__main__":
    main()
