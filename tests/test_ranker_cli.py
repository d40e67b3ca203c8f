"""`cellzoo rank score / eval-nbnlp` and the data step of `cellzoo plot ranker`."""

import json
import math
import random
from itertools import islice

import numpy as np
import pytest
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.ranker.evaluate import curve_examples, curve_target
from cellzoo.ranker.fit import Ranker, RankerConfig
from cellzoo.ranker.nbnlp import TARGETS, load_runs
from cellzoo.ranker.plot import load_log, round_correlations
from cellzoo.ranker.prior import from_prior
from cellzoo.ranker.random_cells import random_tree

RNN = "Tanh(Add(MM(x), MM(h)))"


@pytest.fixture(scope="module")
def ranker_file(tmp_path_factory):
    rng = random.Random(0)
    runs = [(random_tree(rng, 4), math.exp(4 + rng.random()), "ok") for _ in range(40)]
    path = tmp_path_factory.mktemp("r") / "ranker.pt"
    Ranker(RankerConfig(dim=8, epochs=2)).fit(runs).save(path)
    return path


def test_score_prints_json_per_cell(ranker_file):
    result = CliRunner().invoke(main, ["rank", "score", str(ranker_file), RNN, "gru", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["expr"] for r in rows][0] == "Tanh(Add(MM(h), MM(x)))"
    assert len(rows) == 2 and all(0 <= r["p_diverge"] <= 1 and r["predicted_ppl"] > 0 for r in rows)
    assert math.isclose(rows[0]["predicted_ppl"], math.exp(rows[0]["predicted_log_ppl"]))


def test_score_errors_exit_2(ranker_file, tmp_path):
    bad = CliRunner().invoke(main, ["rank", "score", str(ranker_file), "Tanh(MM(x)"])
    assert bad.exit_code == 2 and "cannot parse" in bad.output
    missing = CliRunner().invoke(main, ["rank", "score", str(tmp_path / "no.pt"), RNN])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    foreign = CliRunner().invoke(main, ["rank", "score", str(junk), RNN])
    assert foreign.exit_code == 2 and "not a cellzoo ranker" in foreign.output


@pytest.fixture(scope="module")
def small_nbnlp(tmp_path_factory, nbnlp_data):
    """The first 120 real NAS-Bench-NLP runs, as a --data folder."""
    folder = tmp_path_factory.mktemp("nb")
    with open(nbnlp_data / "ptb_single_run.jsonl") as f:
        (folder / "ptb_single_run.jsonl").write_text("".join(islice(f, 120)))
    with open(nbnlp_data / "wikitext2_single_run.jsonl") as f:
        (folder / "wikitext2_single_run.jsonl").write_text("".join(islice(f, 60)))
    return folder


def test_eval_nbnlp_json(small_nbnlp):
    args = ["rank", "eval-nbnlp", "--train-size", "60", "--test-size", "50", "--seeds", "2",
            "--epochs", "2", "--data", str(small_nbnlp), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.splitlines()[-1])
    assert set(out["mean"]) == {"ranker", "forest", "forest_edges"}
    assert set(out["mean"]["ranker"]) == {"tau", "rho", "auc", "tau_no_twins", "tau_better_half",
                                          "tau_wt2", "tau_wt2_no_twins"}
    seed = out["per_seed"][0]
    assert len(out["per_seed"]) == 2 and seed["test_finished"] > 10
    assert seed["wt2_finished"] > 40 and 0 <= seed["wt2_twins"] <= seed["wt2_finished"]
    assert all(-1 <= v <= 1 for m in out["mean"].values() for v in m.values() if v is not None)


def test_eval_nbnlp_with_members_and_curve_targets(small_nbnlp):
    args = ["rank", "eval-nbnlp", "--train-size", "60", "--test-size", "50", "--epochs", "2",
            "--members", "2", "--curve-epochs", "1,5", "--no-baseline", "--data",
            str(small_nbnlp), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.splitlines()[-1])
    assert out["config"]["members"] == 2 and out["curve_epochs"] == [1, 5]
    assert set(out["mean"]) == {"ranker"} and -1 <= out["mean"]["ranker"]["tau"] <= 1
    bad = CliRunner().invoke(main, args[:-4] + ["--curve-epochs", "1,x", "--json"])
    assert bad.exit_code == 2 and "expected whole numbers" in bad.output


def test_curve_examples_are_the_runs_learning_curves(small_nbnlp):
    runs = load_runs(small_nbnlp)[:30]
    curves = curve_examples(runs, [1, 5])
    reaching = [r for r in runs if len(r.val_losses) >= 5]
    assert curves.targets.count(curve_target("ptb", 5)) == len(reaching)
    fifth = curves.log_ppl[[t == curve_target("ptb", 5) for t in curves.targets]]
    assert list(fifth) == [r.val_losses[4] for r in reaching]
    assert not curves.diverged.any()
    assert curve_target("ptb", 5) not in TARGETS.values()


def test_build_prior_with_members_and_curve_targets(small_nbnlp, tmp_path):
    out = tmp_path / "prior.pt"
    done = CliRunner().invoke(main, ["rank", "build-prior", "--data", str(small_nbnlp),
                                     "--limit", "60", "--epochs", "1", "--members", "2",
                                     "--curve-epochs", "1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "prior fitted on 60 PTB and 60 WikiText-2 runs" in done.output
    assert "epoch 1/1: train loss" in done.output  # progress, one line per epoch
    ranker = from_prior(out, task="ptb")
    assert len(ranker.model.nets) == 2 and ranker.config.members == 2
    assert {curve_target("ptb", 1), curve_target("wikitext-2", 1)} <= set(ranker.model.targets)
    cells = [RNN, "Tanh(Add(MM(x), Mult(MM(h), Sigmoid(MM(x)))))"]
    # a search on ptb starts from the head of the final results, not of a curve point
    assert np.allclose(ranker.score(cells), ranker.score(cells, TARGETS["ptb"]))


def test_eval_nbnlp_errors_exit_2(small_nbnlp, tmp_path):
    too_big = CliRunner().invoke(main, ["rank", "eval-nbnlp", "--train-size", "100",
                                        "--test-size", "100", "--data", str(small_nbnlp)])
    assert too_big.exit_code == 2 and "exceed the 120 architectures" in too_big.output
    absent = CliRunner().invoke(main, ["rank", "eval-nbnlp", "--data", str(tmp_path)])
    assert absent.exit_code == 2 and "not found" in absent.output


def _write_log(run_dir, rows):
    """The ranker log as a search writes it: one JSON line per trained candidate."""
    (run_dir / "ranker_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_plot_data_step(tmp_path):
    rows = [{"round": 0, "hash": f"a{i}", "predicted": float(i), "true_log_ppl": float(i)}
            for i in range(4)]
    rows += [{"round": 1, "hash": f"b{i}", "predicted": float(i), "true_log_ppl": float(-i)}
             for i in range(3)]
    rows.append({"round": 1, "hash": "div", "predicted": 9.0, "true_log_ppl": None})
    _write_log(tmp_path, rows)
    log = load_log(tmp_path)
    assert list(log.columns) == ["round", "hash", "predicted", "true_log_ppl"]
    assert len(log) == 8 and math.isnan(log["true_log_ppl"].iloc[-1])
    per_round = round_correlations(log)
    assert per_round["round"].tolist() == [0, 1] and per_round["n"].tolist() == [4, 3]
    assert per_round["tau"].tolist() == [1.0, -1.0]


def test_a_ladder_logs_rungs_apart(tmp_path):
    """The same prediction against results of two rungs: read one rung at a time."""
    rows = [{"round": 1, "rung": rung, "hash": f"a{i}", "predicted": float(i),
             "true_log_ppl": float(i if rung == 0 else -i)} for rung in (0, 1) for i in range(3)]
    _write_log(tmp_path, rows)
    assert round_correlations(load_log(tmp_path))["tau"].tolist() == [1.0]
    assert round_correlations(load_log(tmp_path, rung=1))["tau"].tolist() == [-1.0]


def test_plot_ranker_command(tmp_path):
    _write_log(tmp_path, [{"round": r, "hash": f"{r}{i}", "predicted": float(i + r),
                           "true_log_ppl": float(i)} for r in range(2) for i in range(3)])
    result = CliRunner().invoke(main, ["plot", "ranker", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ranker.png").stat().st_size > 0
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = CliRunner().invoke(main, ["plot", "ranker", str(empty)])
    assert missing.exit_code == 2 and "ranker_log.jsonl" in missing.output
    (empty / "ranker_log.jsonl").write_text('{"round": 0}\n')
    broken = CliRunner().invoke(main, ["plot", "ranker", str(empty)])
    assert broken.exit_code == 2 and "line 1" in broken.output


@pytest.fixture(scope="module")
def zoo_file(tmp_path_factory):
    """A real zoo of four tiny real training runs on the synthetic task."""
    from cellzoo.train import TrainConfig, train_cell
    from cellzoo.zoo import Zoo

    config = TrainConfig(task="synthetic", hidden=8, batch_size=4, bptt=10, budget_tokens=400,
                         eval_tokens=200)
    cells = [RNN, "Gate3(h, Tanh(MM(x)), Add(MM(x), MM(h)))", "ReLU(Add(MM(x), MM(h)))",
             "Sigmoid(Add(MM(x), Mult(MM(h), MM(h))))"]
    path = tmp_path_factory.mktemp("zoo") / "z.h5"
    with Zoo.open(path, "a") as zoo:
        for i, cell in enumerate(cells):
            zoo.add_run(train_cell(cell, config.replace(seed=i)))
    return path


def test_fit_from_zoo_then_score(zoo_file, tmp_path):
    out = tmp_path / "r.pt"
    result = CliRunner().invoke(main, ["rank", "fit", str(zoo_file), "--out", str(out),
                                       "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["runs"] == 4 and summary["tasks"] == ["synthetic"] and summary["epochs"] == 2
    scored = CliRunner().invoke(main, ["rank", "score", str(out), RNN, "--task", "synthetic"])
    assert scored.exit_code == 0 and "Tanh(Add(MM(h), MM(x)))" in scored.output
    wrong_task = CliRunner().invoke(main, ["rank", "score", str(out), RNN, "--task", "ptb"])
    assert wrong_task.exit_code == 2 and "not trained on task 'ptb'" in wrong_task.output


def test_fit_errors_exit_2(zoo_file, tmp_path):
    none = CliRunner().invoke(main, ["rank", "fit", str(zoo_file), "--out", str(tmp_path / "r"),
                                     "--task", "ptb"])
    assert none.exit_code == 2 and "no runs for task 'ptb'" in none.output
    missing = CliRunner().invoke(main, ["rank", "fit", str(tmp_path / "no.h5"), "--out", "r.pt"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_fit_from_the_shipped_prior_and_a_missing_prior(zoo_file, tmp_path):
    out = tmp_path / "r.pt"
    result = CliRunner().invoke(main, ["rank", "fit", str(zoo_file), "--out", str(out),
                                       "--epochs", "2", "--prior", "default", "--json"])
    assert result.exit_code == 0, result.output
    assert "synthetic" in json.loads(result.output)["tasks"]
    fine_tuned = Ranker.load(out)
    assert fine_tuned.pretrained and fine_tuned.target() == "synthetic"
    missing = CliRunner().invoke(main, ["rank", "fit", str(zoo_file), "--out", str(out),
                                        "--prior", str(tmp_path / "gone.pt")])
    assert missing.exit_code == 2
    assert "gone.pt does not exist" in missing.output and "--ranker-prior none" in missing.output
