"""benchmarks/functional_duplicates.py on a constructed log: the training time of a cell that
ignores its input and of a dead-code duplicate (with its promotion) is counted as spared, the
first cell of a function and a new cell are not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_dsl_function import CONTROLLER, DEAD_CODE_CHILD, IGNORE_INPUT

from cellzoo.dsl import cell_hash
from cellzoo.dsl.library import LIBRARY

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "functional_duplicates.py"


def test_ignoring_and_duplicate_cells_are_counted_as_spared(tmp_path):
    rows = [(CONTROLLER, 0, 1800.0), (LIBRARY["LSTM"].expr, 0, 1800.0),
            (IGNORE_INPUT[0], 0, 900.0), (DEAD_CODE_CHILD, 0, 1800.0),
            (DEAD_CODE_CHILD, 1, 900.0)]
    log = tmp_path / "evaluations.jsonl"
    log.write_text("".join(json.dumps({"hash": cell_hash(expr), "expr": expr, "rung": rung,
                                       "status": "ok", "val_ppl": 500.0, "seconds": seconds,
                                       "branch_seconds": 0.0})
                           + "\n" for expr, rung, seconds in rows))
    done = subprocess.run([sys.executable, str(SCRIPT), str(log), "--cells"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    *listing, header, numbers = done.stdout.strip().splitlines()
    assert header.split()[:4] == ["log", "cells", "trainings", "hours"]
    # 4 cells, 5 trainings, 2 hours; 1 ignores its input, 1 duplicate: 3 trainings, 1 hour
    assert numbers.split() == ["evaluations.jsonl", "4", "5", "2.0", "1", "1", "3", "1.0",
                               "50.0%"]
    assert sum(f"duplicate of {cell_hash(CONTROLLER)[:8]}" in line for line in listing) == 2
