"""What functional dedup would have spared a finished search: read its evaluations log, tell
each cell's behaviour (`cellzoo.dsl.function`), and add up the training time of every
result that ``dedup = "function"`` would not have trained: cells that ignore their input,
and cells that compute what an earlier cell of the log computes (with their promotions).

    python benchmarks/functional_duplicates.py [LOG ...]  # default: the PTB ladder arms' logs

No training: a few milliseconds a cell. The search would have trained other cells in their
place, so the hours are what the duplicates cost, not what a dedup search would have saved
at the same budget of cells.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cellzoo.dsl.function import behaviour
from cellzoo.evolve.progress import own_seconds

DATA = Path(__file__).resolve().parents[1] / "docs" / "data"
LOGS = [DATA / "ptb-ladder-evaluations.jsonl", DATA / "ptb-ladder-random-evaluations.jsonl"]


def classify(rows: Sequence[dict]) -> pd.DataFrame:
    """One row per logged result: rung, its own training seconds (`own_seconds`), and
    ``kind``: ``ignores input``, ``duplicate of <hash>`` (the first cell of the log that
    computes the same) or ``new``."""
    first: dict[str, str] = {}  # fingerprint -> the first cell computing it
    out = []
    for row, seconds in zip(rows, own_seconds(rows), strict=True):
        seen = behaviour(row["expr"])
        owner = first.setdefault(seen.fingerprint, row["hash"])
        kind = ("ignores input" if not seen.reads_input
                else "new" if owner == row["hash"] else f"duplicate of {owner[:8]}")
        out.append({"hash": row["hash"][:8], "rung": row["rung"], "status": row["status"],
                    "val_ppl": row["val_ppl"], "seconds": seconds, "kind": kind})
    return pd.DataFrame(out)


def summary(name: str, frame: pd.DataFrame) -> dict:
    spared = frame[frame["kind"] != "new"]
    hours = frame["seconds"].sum() / 3600
    return {"log": name, "cells": frame.loc[frame["rung"] == 0, "hash"].nunique(),
            "trainings": len(frame), "hours": round(hours, 2),
            "ignore input (cells)": spared.loc[spared["kind"] == "ignores input",
                                               "hash"].nunique(),
            "duplicates (cells)": spared.loc[spared["kind"] != "ignores input",
                                             "hash"].nunique(),
            "spared trainings": len(spared),
            "spared hours": round(spared["seconds"].sum() / 3600, 2),
            "share": f"{spared['seconds'].sum() / 3600 / hours:.1%}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="*", type=Path, default=LOGS)
    parser.add_argument("--cells", action="store_true", help="also list the spared results")
    args = parser.parse_args()
    table = []
    for path in args.logs:
        frame = classify([json.loads(line) for line in path.open()])
        table.append(summary(path.name, frame))
        if args.cells:
            print(frame[frame["kind"] != "new"].to_string(index=False), end="\n\n")
    print(pd.DataFrame(table).to_string(index=False))


if __name__ == "__main__":
    main()
