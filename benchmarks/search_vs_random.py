"""Search quality: evolution against random search, same task, budget and number of trainings.

Every arm runs once per seed into its own fresh zoo (no arm reuses another's
results). For each arm the script prints the best validation perplexity reached
after each number of trained candidates (mean over seeds), and for each arm
against random search the number of trainings it needs to reach random
search's final best (per seed, then as a ratio of the budget).

    python benchmarks/search_vs_random.py --task synthetic --evaluations 40 --seeds 3
    python benchmarks/search_vs_random.py --task ptb --hidden 32 --budget-tokens 20000 \\
        --evaluations 30 --seeds 2 --arms random,evolution
    python benchmarks/search_vs_random.py --arms random,evolution,evolution+ranker

Arms are entries of `ARMS` (search-configuration overrides); arms whose plug-in
(ranker, controller) cannot be imported are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cellzoo.cli.evolve import make_proposer, make_ranker
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.progress import progress_frame
from cellzoo.evolve.search import Search, SearchError

#: arm name -> SearchConfig overrides. "random" is the baseline every arm is measured against.
ARMS: dict[str, dict] = {
    "random": {"strategy": "random", "library": False},
    "evolution": {"strategy": "aging", "library": False},
    "evolution+library": {"strategy": "aging", "library": True},
    "evolution+ranker": {"strategy": "aging", "library": False, "ranker": True},
    "controller": {"strategy": "random", "library": False, "controller": True,
                   "controller_share": 1.0},
    "evolution+controller": {"strategy": "aging", "library": False, "controller": True},
}


def run_arm(arm: str, seed: int, base: SearchConfig, out: Path) -> Path:
    """One search of ``arm`` with ``seed`` in its own zoo; returns its run directory."""
    run_dir = out / f"{arm}-seed{seed}"
    config = base.changed(**ARMS[arm], seed=seed, zoo=str(out / f"{arm}-seed{seed}.h5"))
    plugins = {"ranker": make_ranker(config) if config.ranker else None,
               "proposer": make_proposer(config) if config.controller else None}
    start = time.perf_counter()
    Search.open(config, run_dir, **plugins).run()
    print(f"  {arm} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return run_dir


def curves(frames: dict[str, pd.DataFrame], evaluations: int) -> pd.DataFrame:
    """Mean best-so-far val ppl over seeds, per arm (columns) and training number (rows)."""
    table = {}
    for arm, frame in frames.items():
        wide = frame.pivot(index="n", columns="run", values="best_so_far")
        table[arm] = wide.reindex(range(1, evaluations + 1)).ffill().mean(axis=1)
    return pd.DataFrame(table)


def evaluations_to_reach(curve: pd.Series, target: float) -> float:
    """First training number whose best-so-far is at or below ``target`` (inf if never)."""
    hit = curve[curve <= target + 1e-12]
    return float(hit.index[0]) if len(hit) else math.inf


def compare(frames: dict[str, pd.DataFrame], evaluations: int) -> dict[str, dict]:
    """Per arm: trainings needed to reach random search's final best, per seed and mean."""
    randoms = {run.split("-seed")[1]: g.set_index("n")["best_so_far"]
               for run, g in frames["random"].groupby("run")}
    summary = {}
    for arm, frame in frames.items():
        needed = []
        for run, g in frame.groupby("run"):
            seed = run.split("-seed")[1]
            target = randoms[seed].dropna().iloc[-1]
            needed.append(evaluations_to_reach(g.set_index("n")["best_so_far"], target))
        reached = [n for n in needed if math.isfinite(n)]
        finals = frame.groupby("run")["best_so_far"].last()
        summary[arm] = {
            "final_best_mean": float(finals.mean()), "final_best_per_seed": finals.tolist(),
            "needed_per_seed": needed,
            "ratio_mean": float(np.mean(reached) / evaluations) if reached else math.inf,
            "reached": f"{len(reached)}/{len(needed)}"}
    return summary


def search_arguments(parser: argparse.ArgumentParser, evaluations: int, seeds: int,
                     population: int, out: str, every: int) -> None:
    """The options every search benchmark takes (task, budget, seeds, proxy, outputs), with
    the benchmark's own defaults."""
    parser.add_argument("--task", default="synthetic")
    parser.add_argument("--evaluations", type=int, default=evaluations)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--population", type=int, default=population)
    parser.add_argument("--hidden", type=int, default=None, help="proxy width (default: task's)")
    parser.add_argument("--budget-tokens", type=int, default=None,
                        help="proxy training tokens (default: the task's)")
    parser.add_argument("--out", default=out, help="folder for zoos and run dirs")
    parser.add_argument("--every", type=int, default=every, help="rows of the printed table")
    parser.add_argument("--json", dest="json_out", default=None, help="write results here")


def search_base(args: argparse.Namespace, **settings) -> tuple[Path, SearchConfig]:
    """The output folder (created) and the arms' shared search settings from those options."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out, SearchConfig(task=args.task, evaluations=args.evaluations,
                             population=args.population, hidden=args.hidden,
                             budget_tokens=args.budget_tokens, **settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    search_arguments(parser, evaluations=40, seeds=3, population=10, out="bench-search",
                     every=5)
    parser.add_argument("--arms", default="random,evolution,evolution+library")
    parser.add_argument("--sample", type=int, default=3)
    parser.add_argument("--ops", default="core")
    args = parser.parse_args()

    out, base = search_base(args, sample=args.sample, ops=args.ops)
    arms = [a.strip() for a in args.arms.split(",")]
    unknown = [a for a in arms if a not in ARMS]
    if unknown or "random" not in arms:
        parser.error(f"arms must include random and come from {sorted(ARMS)}; got {unknown}")
    print(f"task {args.task}, {args.evaluations} trainings per run, seeds 0..{args.seeds - 1}, "
          f"proxy {base.train_config().key()}: {base.train_config()}", flush=True)
    frames = {}
    for arm in arms:
        try:
            dirs = [run_arm(arm, seed, base, out) for seed in range(args.seeds)]
        except SearchError as err:
            print(f"  skipped arm {arm}: {err}")
            continue
        frames[arm] = progress_frame(dirs)
    table = curves(frames, args.evaluations)
    rows = [n for n in table.index if n % args.every == 0 or n == args.evaluations]
    print("\nbest validation perplexity after n trainings (mean over seeds)")
    print(table.loc[rows].round(3).to_string())
    summary = compare(frames, args.evaluations)
    print("\ntrainings needed to reach random search's final best (per seed), ratio to budget")
    for arm, s in summary.items():
        print(f"  {arm:22s} final best {s['final_best_mean']:.3f}  needed {s['needed_per_seed']}"
              f"  reached {s['reached']}  mean ratio {s['ratio_mean']:.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"args": vars(args), "curves": table.to_dict(), "summary": summary}, default=str))


if __name__ == "__main__":
    main()
