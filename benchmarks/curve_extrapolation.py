"""Curve extrapolation: does a straight line through two early points of a learning curve
(log perplexity against log tokens, extended to the end of the run) rank cells better than
the later of the two points does?

A cell at a low learning rate starts slowly and gains later, so an early point ranks it too
low; the slope between two early points might say how much it will still gain. This checks
that on results already measured, without training anything:

- NAS-Bench-NLP's PTB logs (every finished cell, 50 epochs, one recipe and rate for all):
  pairs of epochs, extrapolated to epoch 50, against the final test perplexity;
- the PTB fidelity table (``--rows``, docs/data/ptb-fidelity-cells.json: the fidelity
  ladder's rungs and the full runs' epoch points of cells at their probed rates), pairs of
  points extrapolated to the full run's tokens, against its test perplexity.

Kendall tau (`rank_metrics`) of each pair's extrapolation beside that of its later point alone.

    python benchmarks/curve_extrapolation.py [--data DIR] [--rows FILE] [--ladder TOML] [--json]

The table's rung columns are read as the rungs of ``--ladder`` (default
configs/ptb-ladder.toml) on its corpus (from ``$CELLZOO_DATA``); its last rung is the full run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cellzoo.evolve.config import load_toml, resolve
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.nbnlp import load_runs
from cellzoo.train.corpus import load_corpus

REPO = Path(__file__).resolve().parent.parent
ROWS = REPO / "docs" / "data" / "ptb-fidelity-cells.json"
LADDER = REPO / "configs" / "ptb-ladder.toml"  # the ladder the fidelity table's rungs are of
NB_EPOCHS = 50
NB_PAIRS = [(1, 2), (1, 3), (2, 5), (1, 5), (3, 10), (5, 10)]


def extrapolate(log_a: np.ndarray, log_b: np.ndarray, at_a: float, at_b: float,
                at: float) -> np.ndarray:
    """The line through (log at_a, log_a) and (log at_b, log_b), read at log ``at``."""
    slope = (log_b - log_a) / (math.log(at_b) - math.log(at_a))
    return log_b + slope * (math.log(at) - math.log(at_b))


def tau(pred: np.ndarray, true: np.ndarray) -> float:
    return rank_metrics(pred, true)["tau"]


def nas_bench_rows(data: str | None) -> list[dict]:
    """Per pair of epochs (a, b): tau of epoch b's validation loss and of the extrapolation
    to epoch 50, over all finished cells and over the better half (by final test)."""
    runs = [r for r in load_runs(data) if r.finished and len(r.val_losses) >= NB_EPOCHS
            and all(map(math.isfinite, r.val_losses[:NB_EPOCHS]))]
    curves = np.array([r.val_losses[:NB_EPOCHS] for r in runs])
    final = np.array([r.test_ppl for r in runs])
    better = final <= np.median(final)  # as ranker_evidence.py
    rows = []
    for a, b in NB_PAIRS:
        line = extrapolate(curves[:, a - 1], curves[:, b - 1], a, b, NB_EPOCHS)
        raw = curves[:, b - 1]
        rows.append({"points": f"epochs {a} and {b}", "cost": b / NB_EPOCHS, "cells": len(runs),
                     "tau later point": tau(raw, final), "tau extrapolated": tau(line, final),
                     "better half: later point": tau(raw[better], final[better]),
                     "better half: extrapolated": tau(line[better], final[better])})
    return rows


def rung_tokens(ladder_toml: Path = LADDER) -> list[int]:
    """Training tokens of each rung of a search config's ladder on its corpus, the full run
    (the top rung) last."""
    ladder = resolve(load_toml(ladder_toml), {}).make_ladder()
    return ladder.budgets(load_corpus(ladder.base.task))


def point_tokens(name: str, rungs: Sequence[int]) -> int:
    """Training tokens at a fidelity-table column ("rung 1", "point 929,560")."""
    if found := re.fullmatch(r"rung (\d+)", name):
        return rungs[int(found.group(1))]
    return int(re.fullmatch(r"point ([\d,]+)", name).group(1).replace(",", ""))


def fidelity_rows(path: Path, rungs: Sequence[int]) -> list[dict]:
    """Per pair of points of the PTB fidelity table: tau of the later point and of the
    extrapolation to the full run (the last of ``rungs``), over the cells that have both."""
    cells = json.loads(path.read_text())
    names = sorted((k for k in cells[0] if k.startswith(("rung ", "point "))),
                   key=lambda name: point_tokens(name, rungs))
    rows = []
    for a, b in itertools.combinations(names, 2):
        have = [c for c in cells if c.get(a) and c.get(b)]
        log_a, log_b = (np.log([c[k] for c in have]) for k in (a, b))
        test = np.array([c["test"] for c in have])
        at_a, at_b = point_tokens(a, rungs), point_tokens(b, rungs)
        line = extrapolate(log_a, log_b, at_a, at_b, rungs[-1])
        rows.append({"points": f"{a} and {b}", "cost": at_b / rungs[-1],
                     "cells": len(have), "tau later point": tau(log_b, test),
                     "tau extrapolated": tau(line, test)})
    return rows


def print_table(title: str, rows: Sequence[dict]) -> None:
    print(f"\n{title}")
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{v:.1%}" if k == "cost" else f"{v:.3f}" if isinstance(v, float)
                         else str(v) for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="folder of the NAS-Bench-NLP logs (default: "
                                       "$CELLZOO_DATA/nas-bench-nlp)")
    parser.add_argument("--rows", type=Path, default=ROWS, help="the PTB fidelity table's rows")
    parser.add_argument("--ladder", type=Path, default=LADDER,
                        help="the search config whose ladder the table's rungs are of")
    parser.add_argument("--json", action="store_true", help="print both tables as JSON")
    args = parser.parse_args()
    rungs = rung_tokens(args.ladder)
    tables = {"nas-bench-nlp": nas_bench_rows(args.data),
              "ptb-ladder": fidelity_rows(args.rows, rungs)}
    if args.json:
        print(json.dumps(tables, indent=1))
        return
    print_table("NAS-Bench-NLP, PTB: epochs a and b extrapolated to epoch 50, against the final "
                "test perplexity", tables["nas-bench-nlp"])
    print_table(f"PTB fidelity table ({args.rows.name}): two points extrapolated to the full "
                f"run's {rungs[-1]:,} tokens, against its test perplexity",
                tables["ptb-ladder"])


if __name__ == "__main__":
    main()
