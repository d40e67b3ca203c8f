"""Proxy fidelity: does the cheap training that judges candidates rank cells the way
ten times more training does?

About 20 diverse cells (the human library plus random valid cells) are trained on
the task's proxy configuration and on the same configuration with ``--factor``
times the token budget; the script reports Kendall tau and Spearman rho between
the two rankings of validation perplexity (diverged cells rank last), and the
seconds per candidate. Every run goes into a zoo, so an interrupted benchmark
continues where it stopped (runs already there are reused).

    python benchmarks/proxy_fidelity.py --task ptb                 # the default PTB proxy
    python benchmarks/proxy_fidelity.py --task ptb --cells 12 --budget-tokens 50000
    python benchmarks/proxy_fidelity.py --task synthetic --factor 5

For scale: in NAS-Bench-NLP's logs, the ranking after 1 of 50 epochs has tau 0.47
with the final one, after 3 epochs 0.63.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from cellzoo.dsl import DEFAULT_LIMITS, canonical_text, cell_hash
from cellzoo.evolve.candidates import library_candidates
from cellzoo.evolve.variation import Variation
from cellzoo.train import TrainConfig, train_cell
from cellzoo.zoo import Zoo


def diverse_cells(n: int, level: str, seed: int) -> list[str]:
    """The library's cells first, then distinct random valid cells, ``n`` in all."""
    cells = [c.expr for c in library_candidates(level, DEFAULT_LIMITS)][:n]
    variation = Variation(level=level, seed=seed)
    while len(cells) < n:
        expr = canonical_text(variation.random_cell())
        if expr not in cells:
            cells.append(expr)
    return cells


def train_or_reuse(zoo: Zoo, expr: str, config: TrainConfig, data_dir: str | None) -> dict:
    run = zoo.find_run(cell_hash(expr), config.key())
    if run is None:
        result = train_cell(expr, config, data_dir)
        zoo.add_run(result, lineage={"origin": "manual"})
        run = zoo.find_run(result.hash, config.key())
    return {"val_ppl": run.val_ppl if run.status == "ok" else math.inf, "status": run.status,
            "seconds": run.seconds}


def rank_agreement(short: list[float], long: list[float]) -> dict[str, float]:
    """Kendall tau and Spearman rho; inf (diverged) ranks last; nan for constant input."""
    a, b = np.array(short, dtype=float), np.array(long, dtype=float)
    big = np.nanmax(np.where(np.isfinite(np.r_[a, b]), np.r_[a, b], np.nan)) * 10
    a, b = np.where(np.isfinite(a), a, big), np.where(np.isfinite(b), b, big)
    if len(set(a)) < 2 or len(set(b)) < 2:
        return {"tau": math.nan, "rho": math.nan}
    return {"tau": float(kendalltau(a, b).statistic), "rho": float(spearmanr(a, b).statistic)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="ptb")
    parser.add_argument("--data", default=None)
    parser.add_argument("--cells", type=int, default=20)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--budget-tokens", type=int, default=None,
                        help="proxy budget (default: the task's proxy)")
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--ops", default="core")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cells")
    parser.add_argument("--zoo", default="bench-proxy.h5")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    changes = {k: v for k, v in (("budget_tokens", args.budget_tokens),
                                 ("hidden", args.hidden)) if v is not None}
    short = TrainConfig.proxy(args.task, **changes)
    long = short.replace(budget_tokens=short.budget_tokens * args.factor)
    cells = diverse_cells(args.cells, args.ops, args.seed)
    print(f"{len(cells)} cells; proxy {short}\nlong: budget_tokens={long.budget_tokens}",
          flush=True)
    rows = []
    with Zoo.open(args.zoo, "a", compact_on_close=False) as zoo:
        for i, expr in enumerate(cells):
            start = time.perf_counter()
            s = train_or_reuse(zoo, expr, short, args.data)
            long_run = train_or_reuse(zoo, expr, long, args.data)
            rows.append({"expr": expr, "short": s["val_ppl"], "long": long_run["val_ppl"],
                         "short_s": s["seconds"], "long_s": long_run["seconds"]})
            print(f"[{i + 1}/{len(cells)}] short {s['val_ppl']:8.2f} ({s['seconds']:5.1f} s)  "
                  f"long {long_run['val_ppl']:8.2f} ({long_run['seconds']:6.1f} s)  "
                  f"[{time.perf_counter() - start:.0f} s]  {expr}", flush=True)
        zoo.compact()  # journal entries into the main file, once, at the end
    agreement = rank_agreement([r["short"] for r in rows], [r["long"] for r in rows])
    seconds = np.mean([r["short_s"] for r in rows])
    print(f"\nKendall tau {agreement['tau']:.3f}   Spearman rho {agreement['rho']:.3f}   "
          f"proxy seconds per candidate {seconds:.1f} (mean), "
          f"{args.factor}x: {np.mean([r['long_s'] for r in rows]):.1f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"args": vars(args), "proxy": short.to_dict(), "rows": rows, **agreement,
             "proxy_seconds_mean": seconds}, default=str))


if __name__ == "__main__":
    main()
