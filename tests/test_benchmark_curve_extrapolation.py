"""benchmarks/curve_extrapolation.py on constructed curves: cells whose log perplexity is a
straight line in log tokens, ranked backwards early on, are ranked exactly by the
extrapolation and wrongly by the later point alone. The table's rungs are read as the
shipped PTB ladder's (configs/ptb-ladder.toml on PTB)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "curve_extrapolation.py"
#: (intercept, slope) of log perplexity against log tokens (or epochs): the fast starters
#: (small intercept, flat) end last, the slow starters (steep) first
LINES = [(6.0, -0.1), (6.5, -0.4), (5.8, 0.0), (7.0, -0.5)]
FULL = 12_084_280  # the shipped PTB ladder's top rung: zaremba-small's 13 epochs


def nas_bench_file(folder: Path) -> None:
    rows = [{"id": i, "recipe": "{}", "status": "OK",
             "val_losses": [a + b * math.log(e) for e in range(1, 51)],
             "final_val_ppl": math.exp(a + b * math.log(50)),
             "final_test_ppl": math.exp(a + b * math.log(50))}
            for i, (a, b) in enumerate(LINES)]
    rows.append({"id": 9, "recipe": "{}", "status": "loss is nan!", "val_losses": [6.0],
                 "final_val_ppl": None, "final_test_ppl": None})  # not finished: left out
    folder.mkdir()
    (folder / "ptb_single_run.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def fidelity_file(path: Path) -> None:
    points = {"rung 0": 149_188, "rung 1": 447_565, "point 929,560": 929_560,
              "rung 3": 4_028_093}
    def ppl(a: float, b: float, tokens: int) -> float:  # the line, from rung 0's tokens on
        return math.exp(a + b * math.log(tokens / points["rung 0"]))

    cells = [{"cell": f"c{i}", **{k: ppl(a, b, t) for k, t in points.items()},
              "test": ppl(a, b, FULL)} for i, (a, b) in enumerate(LINES)]
    cells[0]["rung 3"] = None  # a cell without a point is left out of the pairs that need it
    path.write_text(json.dumps(cells))


def test_extrapolation_ranks_straight_curves_exactly(tmp_path, shared_data):
    nas_bench_file(tmp_path / "nb")
    fidelity_file(tmp_path / "cells.json")
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "nb"),
                           "--rows", str(tmp_path / "cells.json"), "--json"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CELLZOO_DATA": str(shared_data)})
    assert done.returncode == 0, done.stderr
    tables = json.loads(done.stdout)
    for row in tables["nas-bench-nlp"] + tables["ptb-ladder"]:
        assert row["tau extrapolated"] == 1.0 >= row["tau later point"], row
    nb = {r["points"]: r for r in tables["nas-bench-nlp"]}
    ptb = {r["points"]: r for r in tables["ptb-ladder"]}
    # the earliest points rank these cells backwards
    assert nb["epochs 1 and 2"]["tau later point"] < 0
    assert ptb["rung 0 and rung 1"]["tau later point"] < 0
    assert nb["epochs 1 and 3"]["cells"] == 4 and nb["epochs 1 and 3"]["cost"] == 3 / 50
    assert set(ptb) == {"rung 0 and rung 1", "rung 0 and point 929,560", "rung 0 and rung 3",
                        "rung 1 and point 929,560", "rung 1 and rung 3",
                        "point 929,560 and rung 3"}
    assert ptb["rung 1 and rung 3"]["cells"] == 3 and ptb["rung 0 and rung 1"]["cells"] == 4
    assert ptb["rung 1 and point 929,560"]["cost"] == 929_560 / FULL
