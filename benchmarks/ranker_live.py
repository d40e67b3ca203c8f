"""Live ranking quality: the ranker inside a search, with the NAS-Bench-NLP prior and without.

Two arms per seed, each in its own fresh zoo and run directory, same search seed,
task and budget: ``--ranker-prior default`` (pre-trained, fine-tuned on the
search's results) and ``--ranker-prior none`` (cold, fitted once the zoo holds 8
ok runs). Every candidate the ranker scored before it was trained has a line in
its run's ``ranker_log.jsonl`` (predicted and true log perplexity); the script
prints Kendall tau per round (mean over seeds), over the first rounds and over
all scored candidates (per seed, then the mean), the median validation
perplexity of the candidates the ranker let through, and the best validation
perplexity after n trained cells (mean over seeds).

    OMP_NUM_THREADS=1 python benchmarks/ranker_live.py --task synthetic --evaluations 60 \\
        --seeds 4

A finished run directory is reused, an interrupted one continued (the search's
resume), so the benchmark can be run again in pieces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from search_vs_random import curves, search_arguments, search_base

from cellzoo.cli.evolve import make_ranker
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.progress import progress_frame
from cellzoo.evolve.search import Search
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.plot import load_log, round_correlations

ARMS = ("default", "none")


def run_arm(prior: str, seed: int, base: SearchConfig, out: Path) -> Path:
    """One search with ranker prior ``prior`` and ``seed`` in its own zoo; its run directory."""
    name = f"{prior}-seed{seed}"
    config = base.changed(ranker=True, ranker_prior=prior, seed=seed,
                          zoo=str(out / f"{name}.h5"))
    start = time.perf_counter()
    Search.open(config, out / name, ranker=make_ranker(config)).run()
    print(f"  prior {prior} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return out / name


def log_summary(run_dir: Path, first: int) -> dict:
    """Kendall tau per round, over rounds 1..``first`` and over all scored candidates; the
    median validation perplexity of the scored candidates that finished."""
    log = load_log(run_dir)
    early = log[log["round"] <= first]
    return {"per_round": round_correlations(log).set_index("round")["tau"],
            "first": rank_metrics(early["predicted"], early["true_log_ppl"])["tau"],
            "all": rank_metrics(log["predicted"], log["true_log_ppl"])["tau"],
            "median_ppl": float(np.exp(np.nanmedian(log["true_log_ppl"]))),
            "scored": len(log), "first_round": int(log["round"].min()) if len(log) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    search_arguments(parser, evaluations=60, seeds=2, population=SearchConfig.population,
                     out="bench-ranker-live", every=10)
    parser.add_argument("--first", type=int, default=3, help="rounds counted as early")
    args = parser.parse_args()

    out, base = search_base(args)
    print(f"task {args.task}, {args.evaluations} trainings per run, population "
          f"{args.population}, seeds 0..{args.seeds - 1}, proxy {base.train_config().key()}",
          flush=True)
    dirs = {arm: [run_arm(arm, s, base, out) for s in range(args.seeds)] for arm in ARMS}
    results = {arm: [log_summary(d, args.first) for d in dirs[arm]] for arm in ARMS}

    per_round = pd.DataFrame({f"tau {arm}": pd.concat([r["per_round"] for r in results[arm]],
                                                      axis=1).mean(axis=1) for arm in ARMS})
    print("\nKendall tau per round of the candidates the ranker scored before training "
          "(mean over seeds)")
    print((per_round.round(3) + 0.0).to_string())
    print(f"\n{'prior':8s} {'first scored round':>18s} {'scored':>7s} "
          f"{'tau rounds 1-' + str(args.first):>14s} {'tau all':>8s} {'median ppl':>10s}  "
          f"(tau all per seed)")
    summary = {}
    for arm in ARMS:
        rs = results[arm]
        summary[arm] = {k: [r[k] for r in rs] for k in ("first_round", "scored", "first", "all",
                                                          "median_ppl")}
        print(f"{arm:8s} {str(summary[arm]['first_round']):>18s} "
              f"{np.mean(summary[arm]['scored']):7.1f} "
              f"{np.nanmean(summary[arm]['first']):14.3f} {np.nanmean(summary[arm]['all']):8.3f}"
              f" {np.mean(summary[arm]['median_ppl']):10.3f}"
              f"  {[round(t, 3) for t in summary[arm]['all']]}")

    table = curves({arm: progress_frame(dirs[arm]) for arm in ARMS}, args.evaluations)
    rows = [n for n in table.index if n % args.every == 0 or n == args.evaluations]
    print("\nbest validation perplexity after n trained cells (mean over seeds)")
    print(table.loc[rows].round(4).to_string())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"args": vars(args), "per_round": per_round.to_dict(), "summary": summary,
             "best_after_n": table.to_dict()}, default=str))


if __name__ == "__main__":
    main()
