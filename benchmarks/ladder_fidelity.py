"""Ladder fidelity: does each rung of the fidelity ladder rank cells the way the full run does?

Cells: the human library, the three best cells of the earlier PTB search (docs/results.md,
"The search on PTB"), then seeded random valid cells, ``--cells`` in all (default 16).
Each cell's learning rate is probed at rung 0 (`cellzoo.evolve.probe`); then every cell
with a rate (also one no rate passed: the probe's `choose`) is trained through every
rung, breadth-first (all cells' rung 1, then rung 2, ...), each rung continuing from the
rung below's branch checkpoint. A cell that diverged at every rate counts as worst at
every rung. A probe record of an older journal with no rate (written when a cell had to
pass to climb) gets its rate from its stored outcomes by `choose`, without probing again:
the chosen rate's rung-0 run and an updated probe record are appended. Every result is
appended to
``OUT/results.jsonl``; checkpoints live in ``OUT/runs/<hash>/``. Rerunning the same
command continues: finished runs are read back from the JSONL, unfinished ones continue
from their checkpoints. Checkpoints no longer needed (failed probe rates, finished rungs
below the one in progress) are deleted unless ``--keep-checkpoints``.

It prints, per rung: its tokens and cost as a share of the full run (tokens; seconds as
measured), and Kendall tau / Spearman rho of its validation ranking against the top rung's
test perplexity (where top results exist) and against the next rung's validation ranking;
and beside them the old proxy's tau (`TrainConfig.proxy(task, budget_tokens=20000)`, Adam).
Diverged and failed results rank last.

    python benchmarks/ladder_fidelity.py --task ptb --out runs/ladder-ptb        # hours of CPU
    python benchmarks/ladder_fidelity.py --task ptb --out runs/ladder-ptb --max-rung 1
    python benchmarks/ladder_fidelity.py --task synthetic --out /tmp/lf --cells 3 \\
        --rungs 2 --top-tokens 60000                                             # seconds
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from cellzoo.dsl import canonical_text, cell_hash, parse_cell
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.ladder import Ladder, rung_dir, train_rung
from cellzoo.evolve.probe import RateOutcome, choose, probe
from cellzoo.evolve.variation import Variation
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.train import TrainConfig, TrainResult, load_corpus, train_cell
from cellzoo.train.checkpoint import CHECKPOINT_NAME

PRESETS = {"ptb": "zaremba-small", "synthetic": "synthetic-small"}
#: the three best cells of the PTB search on the 20k-token Adam proxy (docs/results.md)
WINNERS = (
    "Gate3(MM(MM(Gate3(SeLU(Sub(h, MM(x))), Max(MM(x), h), MM(x)))), LayerNorm(MM(x)), MM(x))",
    "Gate3(MM(Gate3(SeLU(Sub(h, MM(x))), MM(Gate3(Sub(h, MM(x)), Max(MM(x), h), MM(x_prev))), "
    "MM(x))), LayerNorm(MM(x)), MM(x))",
    "Gate3(MM(MM(Gate3(SeLU(Sub(h, MM(x))), Max(MM(x), h), MM(x_prev)))), LayerNorm(MM(x)), "
    "MM(x))",
)
PROXY_TOKENS = 20_000


def fidelity_cells(n: int, seed: int) -> list[str]:
    """Library cells, the search's winners, then distinct random valid cells: ``n`` in all."""
    cells = [canonical_text(parse_cell(c.expr)) for c in LIBRARY.values()]
    cells += [canonical_text(parse_cell(expr)) for expr in WINNERS]
    variation = Variation(level="extended", seed=seed)
    while len(cells) < n:
        expr = canonical_text(variation.random_cell())
        if expr not in cells:
            cells.append(expr)
    return cells[:n]


class Journal:
    """The JSONL of finished work: one record per probe, rung run or proxy run."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[tuple, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.records[self.key(record)] = record

    @staticmethod
    def key(record: dict[str, Any]) -> tuple:
        return record["kind"], record["hash"], record.get("rung")

    def get(self, kind: str, cell: str, rung: int | None = None) -> dict[str, Any] | None:
        return self.records.get((kind, cell, rung))

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=False) + "\n")
        self.records[self.key(record)] = record
        return record


def result_record(kind: str, expr: str, rung: int | None, result: TrainResult) -> dict:
    return {"kind": kind, "hash": result.hash, "expr": expr, "rung": rung,
            "lr": result.config.learning_rate, "result": result.to_json()}


def run_probe(expr: str, ladder: Ladder, args: argparse.Namespace, journal: Journal) -> None:
    key = cell_hash(expr)
    if journal.get("probe", key) is not None:
        upgrade_probe(expr, ladder, args, journal)
        return
    if journal.get("skip", key) is not None:
        return
    try:
        ladder.width(expr, load_corpus(ladder.base.task, args.data))
    except ValueError as err:  # no width gives the reference's parameter count
        journal.add({"kind": "skip", "hash": key, "expr": expr, "error": str(err)})
        print(f"skip {expr}: {err}", flush=True)
        return
    root = args.out / "runs" / key
    found = probe(expr, ladder, args.train_seed, root, args.data)
    journal.add(result_record("rung", expr, 0, found.result))
    journal.add({"kind": "probe", "hash": key, "expr": expr, "lr": found.lr,
                 "passed": found.passed, "outcomes": found.to_json()["outcomes"]})
    print(f"probe {key}: lr {found.lr} (passed: {found.passed}) "
          f"val {found.result.val_ppl:.2f} {expr}", flush=True)
    if not args.keep_checkpoints:
        for outcome in found.outcomes:
            if outcome.lr != found.lr:
                shutil.rmtree(rung_dir(root, 0, outcome.lr), ignore_errors=True)
        if found.lr is not None:
            prune(root, 0, found.lr)


def upgrade_probe(expr: str, ladder: Ladder, args: argparse.Namespace,
                  journal: Journal) -> None:
    """An older probe record with no rate gets one from its stored outcomes by `choose`
    (no probing again); when that gives a rate, its rung-0 run (read back from its
    checkpoint, or trained again when it was pruned) and the updated record are appended."""
    record = journal.get("probe", cell_hash(expr))
    if record["lr"] is not None or "passed" in record:
        return
    rate, passed = choose([RateOutcome.from_json(o) for o in record["outcomes"]])
    if rate is not None:
        root = args.out / "runs" / record["hash"]
        journal.add(result_record("rung", expr, 0, train_rung(
            expr, ladder, 0, rate, args.train_seed, root, args.data)))
        print(f"rate {record['hash']}: lr {rate} from the stored outcomes", flush=True)
        if not args.keep_checkpoints:
            prune(root, 0, rate)
    journal.add(record | {"lr": rate, "passed": passed})


def run_rung(expr: str, rung: int, ladder: Ladder, args: argparse.Namespace,
             journal: Journal) -> None:
    key = cell_hash(expr)
    rate = (journal.get("probe", key) or {}).get("lr")
    if rate is None or journal.get("rung", key, rung) is not None:
        return
    root = args.out / "runs" / key
    result = train_rung(expr, ladder, rung, rate, args.train_seed, root, args.data)
    journal.add(result_record("rung", expr, rung, result))
    print(f"rung {rung} {key}: {result.status} val {result.val_ppl:.2f} "
          f"test {result.test_ppl:.2f} ({result.seconds:.0f} s)", flush=True)
    if not args.keep_checkpoints:
        shutil.rmtree(rung_dir(root, rung - 1, rate), ignore_errors=True)
        prune(root, rung, rate)


def prune(root: Path, rung: int, lr: float) -> None:
    """A recorded run needs only its branch checkpoint (for the next promotion)."""
    (rung_dir(root, rung, lr) / CHECKPOINT_NAME).unlink(missing_ok=True)


def run_proxy(expr: str, args: argparse.Namespace, journal: Journal) -> None:
    if journal.get("proxy", cell_hash(expr)) is None:
        config = TrainConfig.proxy(args.task, budget_tokens=PROXY_TOKENS, seed=args.train_seed)
        journal.add(result_record("proxy", expr, None, train_cell(expr, config, args.data)))


def value(record: dict[str, Any] | None, field: str) -> float:
    """A result's perplexity; inf (ranked last) for diverged, failed or missing results."""
    if record is None or record["result"]["status"] != "ok":
        return math.inf
    return float(record["result"][field])


def agreement(a: list[float], b: list[float]) -> dict[str, float]:
    """Kendall tau and Spearman rho, with non-finite values ranked last (tied)."""
    both = np.array([a, b], dtype=float)
    finite = np.isfinite(both)
    worst = 10 * both[finite].max() if finite.any() else 1.0
    ranked_a, ranked_b = np.where(finite, both, worst)
    return rank_metrics(ranked_a, ranked_b)


def summary(cells: list[str], budgets: list[int], journal: Journal) -> list[dict]:
    """One row per rung (and one for the proxy): tokens, cost shares, rank agreements."""
    keys = [cell_hash(c) for c in cells if journal.get("skip", cell_hash(c)) is None]
    top = len(budgets) - 1
    has_top = any(journal.get("rung", k, top) for k in keys)
    top_test = [value(journal.get("rung", k, top), "test_ppl") for k in keys]
    top_seconds = sum(r["result"]["seconds"] for k in keys
                      if (r := journal.get("rung", k, top)) is not None)
    rows = []
    for rung, tokens in enumerate(budgets):
        records = [journal.get("rung", k, rung) for k in keys]
        if not any(records):
            break
        val = [value(r, "val_ppl") for r in records]
        row = {"rung": rung, "tokens": tokens, "token_share": tokens / budgets[-1],
               "cells": sum(r is not None for r in records),
               "seconds": sum(r["result"]["seconds"] for r in records if r is not None)}
        row["seconds_share"] = row["seconds"] / top_seconds if top_seconds else math.nan
        if has_top:
            row |= {f"{k}_top": v for k, v in agreement(val, top_test).items()}
        following = [journal.get("rung", k, rung + 1) for k in keys]
        if rung < top and any(following):
            nxt = [value(r, "val_ppl") for r in following]
            row |= {f"{k}_next": v for k, v in agreement(val, nxt).items()}
        rows.append(row)
    proxies = [journal.get("proxy", k) for k in keys]
    if any(proxies):
        row = {"rung": f"proxy {PROXY_TOKENS // 1000}k", "tokens": PROXY_TOKENS,
               "cells": sum(p is not None for p in proxies),
               "seconds": sum(p["result"]["seconds"] for p in proxies if p is not None)}
        if has_top:
            proxy_val = [value(p, "val_ppl") for p in proxies]
            row |= {f"{k}_top": v for k, v in agreement(proxy_val, top_test).items()}
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    def num(row: dict, key: str, fmt: str = ".3f") -> str:
        v = row.get(key)
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    print("| rung | tokens | tokens / top | seconds / top | cells | tau / rho vs top test | "
          "tau / rho vs next rung |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['rung']} | {r['tokens']:,} | {num(r, 'token_share')} | "
              f"{num(r, 'seconds_share')} | {r['cells']} | {num(r, 'tau_top')} / "
              f"{num(r, 'rho_top')} | {num(r, 'tau_next')} / {num(r, 'rho_next')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(PRESETS), default="ptb")
    parser.add_argument("--preset", default=None, help="default: zaremba-small / synthetic-small")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cells")
    parser.add_argument("--train-seed", type=int, default=0)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--rungs", type=int, default=None)
    parser.add_argument("--rung0-tokens", type=int, default=None)
    parser.add_argument("--top-tokens", type=int, default=None)
    parser.add_argument("--max-rung", type=int, default=None, help="stop after this rung")
    parser.add_argument("--no-proxy", action="store_true", help="skip the 20k-token proxy runs")
    parser.add_argument("--keep-checkpoints", action="store_true")
    args = parser.parse_args()
    try:
        ladder = Ladder(args.preset or PRESETS[args.task], eta=args.eta, rungs=args.rungs,
                        rung0_tokens=args.rung0_tokens, top_tokens=args.top_tokens)
        budgets = ladder.budgets(load_corpus(ladder.base.task, args.data))
    except ValueError as err:
        parser.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    journal = Journal(args.out / "results.jsonl")
    cells = fidelity_cells(args.cells, args.seed)
    print(f"ladder {ladder.preset}: rungs of {budgets} tokens; {len(cells)} cells", flush=True)
    last = len(budgets) - 1 if args.max_rung is None else min(args.max_rung, len(budgets) - 1)
    for expr in cells:
        run_probe(expr, ladder, args, journal)
        if not args.no_proxy:
            run_proxy(expr, args, journal)
    for rung in range(1, last + 1):
        for expr in cells:
            run_rung(expr, rung, ladder, args, journal)
    rows = summary(cells, budgets, journal)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    print_table(rows)


if __name__ == "__main__":
    main()
