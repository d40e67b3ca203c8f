"""benchmarks/ranker_replay.py on a small synthetic ladder search with the ranker on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellzoo.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ranker_replay.py"


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    done = CliRunner().invoke(main, [
        "evolve", "--ladder", "synthetic-small", "--rungs", "2", "--eta", "2",
        "--top-tokens", "20000", "--evaluations", "10", "--population", "4", "--sample", "2",
        "--ranker", "--ranker-prior", "default", "--zoo", str(tmp / "z.h5"), "--run-dir",
        str(tmp / "run"), "--executor", "inline"])
    assert done.exit_code == 0, done.output
    return tmp / "run"


def _replay(run_dir: Path, *args: str) -> dict:
    replayed = subprocess.run([sys.executable, str(SCRIPT), str(run_dir), "--json", *args],
                              capture_output=True, text=True, timeout=600,
                              env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert replayed.returncode == 0, replayed.stderr
    return json.loads(replayed.stdout)


def test_the_prior_arm_replays_the_searchs_own_predictions(search):
    out = _replay(search)
    rounds = out["per_round"]
    assert rounds and all(r["fitted_on"] > 0 for r in rounds)
    # fitted on the same results from the same prior and seed, the replay predicts as the
    # search did (inline: a round's results are all in before the next round is bred)
    assert out["all"]["prior"] == out["all"]["live"]
    assert out["all"]["cold"]["n"] <= out["all"]["live"]["n"]  # the cold one starts later


def test_every_result_in_groups_starts_from_the_priors_zero_shot_ranking(search):
    out = _replay(search, "--every", "3")
    rows = [json.loads(line) for line in (search / "evaluations.jsonl").open()]
    finished = [r for r in rows if r["rung"] == 0 and r["status"] == "ok"]
    groups = out["per_round"]
    assert groups[0]["round"] == 0 and groups[0]["fitted_on"] == 0  # zero-shot
    assert [g["round"] for g in groups] == sorted(g["round"] for g in groups)
    assert sum(g["n"] for g in groups) == len(finished) == out["all"]["prior"]["n"]
    assert out["all"]["live"]["n"] == 0  # nothing live to compare in this mode
    assert out["all"]["cold"]["n"] < out["all"]["prior"]["n"]  # the cold arm waits for 8


def test_a_folder_that_is_no_ranker_search_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "not the run directory of a search" in done.stderr
