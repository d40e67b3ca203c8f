"""benchmarks/ladder_fidelity.py on the synthetic task: a smoke run that stops and continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ladder_fidelity.py"
TINY = ["--task", "synthetic", "--cells", "3", "--rungs", "2", "--top-tokens", "60000"]


def run(out: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ladder_fidelity_runs_breadth_first_and_continues_where_it_stopped(tmp_path):
    first = run(tmp_path, "--max-rung", "0")
    assert first.count("probe ") == 3 and "rung 1 " not in first
    second = run(tmp_path)
    assert "probe " not in second and second.count("rung 1 ") == 2  # ReLU-RNN found no rate
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    kinds = [(r["kind"], r.get("rung")) for r in records]
    assert kinds.count(("probe", None)) == kinds.count(("proxy", None)) == 3
    assert kinds.count(("rung", 0)) == 3 and kinds.count(("rung", 1)) == 2
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["rung"] for r in rows] == [0, 1, "proxy 20k"]
    assert rows[0]["token_share"] == 1 / 3 and -1 <= rows[0]["tau_top"] <= 1
    assert "| 0 | 20,000 |" in second and "| proxy 20k |" in second
    third = run(tmp_path)  # all finished: read back, nothing trained
    assert "rung 1 " not in third and third.split("| rung")[1] == second.split("| rung")[1]
