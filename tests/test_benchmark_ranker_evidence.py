"""benchmarks/ranker_evidence.py on a small split of the real NAS-Bench-NLP logs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from cellzoo.ranker.nbnlp import load_runs

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ranker_evidence.py"


def test_finished_runs_carry_their_whole_learning_curve(nbnlp_data):
    runs = load_runs(nbnlp_data, limit=200)
    finished = [r for r in runs if r.finished]
    assert finished and all(len(r.val_losses) == 50 for r in finished)
    # the curve ends at the run's final validation result
    assert all(math.isclose(r.val_losses[-1], math.log(r.val_ppl), rel_tol=1e-6) for r in finished)


def test_the_blend_of_architecture_and_early_loss_is_measured_per_epoch(nbnlp_data):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(nbnlp_data), "--train-size", "150",
         "--combine-size", "50", "--test-size", "300", "--seeds", "1", "--epochs", "1", "10",
         "--json"], capture_output=True, text=True, timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    row = out["per_seed"][0]
    assert row["fit_cells"] == 100 and 0 < row["test_cells"] <= 300
    assert 0 <= row["epoch1"]["weight"] <= 1 and 0 <= row["epoch10"]["weight"] <= 1
    # a later point of the learning curve ranks the final results better than an earlier one
    assert row["epoch10"]["early"]["tau"] > row["epoch1"]["early"]["tau"] > 0
    models = [(r["early epoch"], r["model"]) for r in out["mean"]]
    assert models == [("-", "arch"), (1, "early"), (1, "both"), (10, "early"), (10, "both")]


def test_a_combining_share_as_large_as_the_training_set_is_refused(nbnlp_data):
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", str(nbnlp_data),
                           "--train-size", "100", "--combine-size", "100"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--combine-size must be" in done.stderr
