"""benchmarks/ranker_replay.py on a small synthetic ladder search with the ranker on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cellzoo.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ranker_replay.py"


def test_the_prior_arm_replays_the_searchs_own_predictions(tmp_path):
    done = CliRunner().invoke(main, [
        "evolve", "--ladder", "synthetic-small", "--rungs", "2", "--eta", "2",
        "--top-tokens", "20000", "--evaluations", "10", "--population", "4", "--sample", "2",
        "--ranker", "--ranker-prior", "default", "--zoo", str(tmp_path / "z.h5"), "--run-dir",
        str(tmp_path / "run"), "--executor", "inline"])
    assert done.exit_code == 0, done.output
    replayed = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "run"), "--json"],
                              capture_output=True, text=True, timeout=600,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert replayed.returncode == 0, replayed.stderr
    out = json.loads(replayed.stdout)
    rounds = out["per_round"]
    assert rounds and all(r["fitted_on"] > 0 for r in rounds)
    # fitted on the same results from the same prior and seed, the replay predicts as the
    # search did (inline: a round's results are all in before the next round is bred)
    assert out["all"]["prior"] == out["all"]["live"]
    assert out["all"]["cold"]["n"] <= out["all"]["live"]["n"]  # the cold one starts later


def test_a_folder_that_is_no_ranker_search_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "not the run directory of a search" in done.stderr
