"""Candidates trained per hour by each executor (inline, process pool, Ray) at one budget.

Every executor trains the same candidates (the library cells, cycled with a new training
seed per pass) on the synthetic task, kept busy the way the search keeps it: a new job
is submitted as soon as a slot frees. The wall time includes starting and stopping the
workers (a spawned pool, a local Ray instance), which a real search pays once.

    python benchmarks/executor_throughput.py                      # 12 candidates, 2 workers
    python benchmarks/executor_throughput.py --candidates 40 --workers 4 --json
    python benchmarks/executor_throughput.py --executors ray --address auto   # a cluster

Prints, per executor: seconds, candidates per hour, and the per-hour rate without the
startup (from the first finished candidate on).
"""

from __future__ import annotations

import argparse
import json
import time

from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.executors import Job, make_executor
from cellzoo.train import TrainConfig


def make_jobs(n: int, hidden: int, budget_tokens: int) -> list[Job]:
    cells = [cell.expr for cell in LIBRARY.values()]
    return [Job(i, cells[i % len(cells)],
                TrainConfig.proxy("synthetic", hidden=hidden, budget_tokens=budget_tokens,
                                  eval_tokens=2000, seed=i // len(cells)).to_dict())
            for i in range(n)]


def measure(name: str, workers: int, jobs: list[Job], **ray_options) -> dict:
    """Train ``jobs`` with at most ``workers`` in flight; times in seconds."""
    start = time.perf_counter()
    executor = make_executor(name, workers, **ray_options)
    todo, finished, first, last = list(jobs), [], None, None
    try:
        while len(finished) < len(jobs):
            while todo and len(jobs) - len(todo) - len(finished) < executor.slots:
                executor.submit(todo.pop(0))
            for _, result in executor.completed():
                finished.append(result)
                last = time.perf_counter()
                first = first or last
    finally:
        executor.close()
    seconds = time.perf_counter() - start
    steady = (len(jobs) - 1) / (last - first) if last > first else float("nan")
    return {"executor": name, "workers": executor.slots, "candidates": len(jobs),
            "ok": sum(r.status == "ok" for r in finished), "seconds": round(seconds, 2),
            "per_hour": round(len(jobs) / seconds * 3600, 1),
            "per_hour_after_first": round(steady * 3600, 1),
            "train_seconds_mean": round(sum(r.seconds for r in finished) / len(jobs), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--budget-tokens", type=int, default=20_000)
    parser.add_argument("--executors", default="inline,process,ray",
                        help="comma-separated, from inline, process, ray")
    parser.add_argument("--address", default=None, help="Ray cluster to join (default local)")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    args = parser.parse_args()
    jobs = make_jobs(args.candidates, args.hidden, args.budget_tokens)
    rows = []
    for name in args.executors.split(","):
        options = {"address": args.address} if name == "ray" else {}
        rows.append(measure(name, 1 if name == "inline" else args.workers, jobs, **options))
        if not args.json:
            r = rows[-1]
            print(f"{r['executor']:>8} x{r['workers']}: {r['candidates']} candidates "
                  f"({r['ok']} ok) in {r['seconds']:.1f} s = {r['per_hour']:.0f}/h "
                  f"({r['per_hour_after_first']:.0f}/h after the first; "
                  f"{r['train_seconds_mean']:.2f} s training each)", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
