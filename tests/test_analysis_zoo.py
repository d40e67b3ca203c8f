"""Analysis on a real zoo trained in the test: activations, ensembles, and the two commands."""

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from cellzoo.analysis import ensemble as ens
from cellzoo.analysis.activations import activations, record, split_text, tokenize, user_text
from cellzoo.analysis.cache import AnalysisCache, AnalysisError
from cellzoo.analysis.selection import labels, select_runs
from cellzoo.cli import main
from cellzoo.train import TrainConfig, evaluate, load_corpus, train_cell
from cellzoo.zoo import Zoo

CELLS = ("LSTM", "GRU", "tanh-RNN", "QRNN")
CONFIG = TrainConfig(task="synthetic", hidden=16, batch_size=16, bptt=20, lr=1e-2,
                     budget_tokens=5000, eval_tokens=1000)
#: evaluate on the first tokens of each split only: the test stays small
LAYOUT = ens.Layout(tokens=2000)


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("analysis") / "zoo.h5"
    with Zoo.open(path, "a") as zoo:
        for cell in CELLS:
            result = train_cell(cell, CONFIG)
            assert result.status == "ok"
            zoo.add_run(result, lineage={"origin": "library"})
    return path


@pytest.fixture
def zoo(zoo_path):
    with Zoo.open(zoo_path) as z:
        yield z


@pytest.fixture(scope="module")
def corpus():
    return load_corpus("synthetic")


def test_select_and_label(zoo):
    runs = select_runs(zoo, top=3)
    assert len(runs) == 3 and [r.val_ppl for r in runs] == sorted(r.val_ppl for r in runs)
    assert sorted(labels(select_runs(zoo, top=10))) == sorted(CELLS)
    lstm = next(r for r in zoo.runs() if labels([r]) == ["LSTM"])
    assert select_runs(zoo, cells=[lstm.hash[:6]]) == [lstm]
    with pytest.raises(AnalysisError, match="no ok run with weights on task 'ptb'"):
        select_runs(zoo, top=2, task="ptb")


def test_a_copy_of_a_run_takes_no_place_in_the_top_pool(zoo, tmp_path):
    # the tanh-RNN with dead code: h + h * (h - h) is h, so the same training repeats its run
    copy = train_cell("Tanh(Add(MM(x), MM(Add(h, Mult(h, Sub(h, h))))))", CONFIG)
    tanh = next(r for r in zoo.runs() if labels([r]) == ["tanh-RNN"])
    assert copy.hash != tanh.hash and copy.val_ppl == pytest.approx(tanh.val_ppl, rel=1e-5)
    path = tmp_path / "copies.h5"
    with Zoo.open(path, "a") as copies:
        copies.import_from(zoo.path)
        copied = copies.add_run(copy)
    with Zoo.open(path) as copies:
        chosen = select_runs(copies, top=10)  # the better of the two, and the three others
        assert len(chosen) == len(CELLS)
        assert len({r.hash for r in chosen} & {copy.hash, tanh.hash}) == 1
        assert len(select_runs(copies, runs=[copied, tanh.run_id])) == 2  # asked for


def test_record_matches_the_models_own_forward(zoo, corpus):
    run = next(zoo.runs())
    model = zoo.rebuild(run.run_id)
    text = split_text(corpus, "valid", 50)
    arrays = record(model, text.ids)
    assert arrays["layer0"].shape == (50, CONFIG.hidden)
    with torch.no_grad():
        inputs = torch.from_numpy(text.ids[:-1]).view(-1, 1)
        logits, _ = model(inputs, model.init_state(1))
    expected = torch.log_softmax(logits[:, 0].double(), -1)
    expected = expected.gather(1, torch.from_numpy(text.ids[1:]).view(-1, 1))[:, 0]
    np.testing.assert_allclose(arrays["target_logp"], expected.numpy(), rtol=1e-5)


def test_activations_are_cached(zoo, corpus, tmp_path):
    runs = select_runs(zoo, top=2)
    text = split_text(corpus, "test", 40)
    cache = AnalysisCache(tmp_path / "a.h5")
    first = activations(zoo, runs, text, cache)
    with h5py.File(tmp_path / "a.h5") as f:
        assert sorted(f) == sorted(r.run_id for r in runs)
        assert f"acts-{text.key}" in f[runs[0].run_id]
    again = activations(zoo, runs, text, cache)
    for run in runs:
        np.testing.assert_array_equal(first[run.run_id]["layer0"], again[run.run_id]["layer0"])


def test_user_text_uses_the_vocabulary(corpus):
    assert tokenize("s1 s2\n\ns3\n", corpus.vocab).tolist() == [1, 2, 3]  # no <eos> there
    ids = tokenize("s1 s2\n\ns3\n", ["<eos>", "s1", "s2", "s3", "<unk>"])
    assert ids.tolist() == [1, 2, 0, 3, 0]
    assert tokenize("s1 zebra\n", ["<eos>", "s1", "<unk>"]).tolist() == [1, 2, 0]
    with pytest.raises(AnalysisError, match="not in the vocabulary.*'zebra'"):
        user_text(corpus, "s1 zebra", "mine.txt")


def test_ensemble_of_one_equals_its_member(zoo, corpus):
    run = select_runs(zoo, top=1)[0]
    result = ens.evaluate_weights(zoo, [run], [1], "top", corpus, ens.Layout(),
                                  AnalysisCache(None))
    config = TrainConfig.from_dict(run.config).replace(eval_tokens=None, eval_batch_size=10,
                                                       bptt=35)
    direct = evaluate(zoo.rebuild(run.run_id), corpus.test, config)
    assert result.test_ppl == pytest.approx(direct, rel=1e-6)
    assert result.test_ppl == result.best_member_test_ppl == result.uniform_test_ppl
    assert result.gain == pytest.approx(0.0)


def test_greedy_is_never_worse_on_validation(zoo):
    result = ens.build(zoo, top=4, select="greedy", size=8, layout=LAYOUT)
    assert len(result.pool) == 4 and result.members
    assert result.val_ppl <= min(m.val_ppl for m in result.pool) + 1e-9
    assert all(isinstance(m.weight, int) and m.weight > 0 for m in result.members)


def test_top_selection_is_the_uniform_pool(zoo):
    result = ens.build(zoo, top=3, select="top", layout=LAYOUT)
    assert [m.weight for m in result.members] == [1, 1, 1]
    assert result.test_ppl == pytest.approx(result.uniform_test_ppl)


def test_save_and_load(zoo, tmp_path):
    built = ens.build(zoo, top=4, size=6, layout=LAYOUT)
    ens.save(built, tmp_path / "e.json")
    loaded = ens.load(zoo, tmp_path / "e.json")
    assert loaded.test_ppl == pytest.approx(built.test_ppl)
    assert [(m.run_id, m.weight) for m in loaded.members] == [
        (m.run_id, m.weight) for m in built.members]
    spec = json.loads((tmp_path / "e.json").read_text())
    spec["pool"][0]["hash"] = "0" * 16
    (tmp_path / "bad.json").write_text(json.dumps(spec))
    with pytest.raises(AnalysisError, match="expects 0000"):
        ens.load(zoo, tmp_path / "bad.json")


def test_members_must_share_a_task(zoo, shared_data, tmp_path):
    ptb = train_cell("ReLU-RNN", TrainConfig(task="ptb", hidden=8, batch_size=4, bptt=10,
                                             budget_tokens=200, eval_tokens=100), shared_data)
    path = tmp_path / "mixed.h5"
    with Zoo.open(path, "a") as mixed:
        mixed.import_from(zoo.path)
        mixed.add_run(ptb)
    with Zoo.open(path) as mixed:
        synthetic = select_runs(mixed, top=1, task="synthetic")[0]
        with pytest.raises(AnalysisError, match="no task in common"):
            select_runs(mixed, cells=[synthetic.hash, ptb.hash])
        with pytest.raises(AnalysisError, match="no ok run with weights on task 'synthetic'"):
            select_runs(mixed, cells=[synthetic.hash, ptb.hash], task="synthetic")
        with pytest.raises(AnalysisError, match="2 tasks.*--task"):
            ens.build(mixed)
        with pytest.raises(AnalysisError, match="must share one task"):
            ens.check_same_task(list(mixed.runs()))


# --- the commands ----------------------------------------------------------------------------


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_compare_command(zoo_path, tmp_path):
    out = tmp_path / "out"
    result = _invoke("compare", zoo_path, "--top", 4, "--tokens", 300, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)  # progress goes to stderr
    for name in ("heatmaps", "clustermap", "diversity"):
        data = Path(paths[name]).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    for name in ("cka", "svcca"):
        matrix = pd.read_csv(paths[name], index_col=0)
        assert sorted(matrix.index) == sorted(matrix.columns) == sorted(CELLS)
        np.testing.assert_allclose(np.diag(matrix.loc[:, matrix.index]), 1.0, atol=1e-6)
        assert ((matrix.to_numpy() >= -1e-9) & (matrix.to_numpy() <= 1 + 1e-9)).all()
    pairs = pd.read_csv(paths["pairs"])
    assert len(pairs) == 6 and pairs["pair_ppl"].gt(0).all()
    stats = json.loads(Path(paths["diversity_stats"]).read_text())
    assert stats["pairs"] == 6 and -1 <= stats["rho"] <= 1
    assert stats["partial_rho"] is None or -1 <= stats["partial_rho"] <= 1  # None: undefined
    cells = pd.read_csv(paths["cells"])
    assert cells["tokens"].eq(300).all() and cells["text_ppl"].gt(1).all()
    assert zoo_path.with_name("zoo.h5.analysis.h5").is_file()


def test_compare_on_user_text(zoo_path, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("s1 s2 s3 s1 s2 s3\ns4 s4 s5\n")
    hashes = labels_to_hash(zoo_path)
    result = _invoke("compare", zoo_path, "--cells", f"{hashes['LSTM'][:8]},{hashes['GRU']}",
                     "--text", text, "--out", tmp_path / "o", "--no-cache")
    assert result.exit_code == 0, result.output
    assert "heatmaps" in result.output
    cells = pd.read_csv(tmp_path / "o" / "cells.csv")
    assert cells["cell"].tolist() == ["LSTM", "GRU"] and cells["tokens"].eq(8).all()


def labels_to_hash(zoo_path) -> dict[str, str]:
    with Zoo.open(zoo_path) as z:
        runs = list(z.runs())
        return dict(zip(labels(runs), (r.hash for r in runs), strict=True))


def test_compare_errors_exit_2(zoo_path, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("s1 zebra\n")
    runner = CliRunner()
    bad_text = runner.invoke(main, ["compare", str(zoo_path), "--text", str(text), "--out",
                                    str(tmp_path / "o"), "--no-cache"])
    assert bad_text.exit_code == 2 and "zebra" in bad_text.output
    for both in (["--cells", "ab", "--top", "2"], ["--cells", "ab", "--runs", "cd"]):
        refused = runner.invoke(main, ["compare", str(zoo_path), *both, "--out",
                                       str(tmp_path / "o")])
        assert refused.exit_code == 2 and "one of --cells, --runs and --top" in refused.output
    missing = runner.invoke(main, ["compare", str(zoo_path), "--cells", "ffffffff", "--out",
                                   str(tmp_path / "o")])
    assert missing.exit_code == 2 and "no cell hash starting with 'ffffffff'" in missing.output


def test_ensemble_command(zoo_path, tmp_path):
    saved = tmp_path / "e.json"
    result = _invoke("ensemble", zoo_path, "--top", 4, "--size", 6, "--eval-tokens", 2000,
                     "--save", saved, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert {"members", "pool", "test_ppl", "best_member_test_ppl", "uniform_test_ppl",
            "gain"} <= set(data)
    assert data["val_ppl"] <= min(m["val_ppl"] for m in data["pool"]) + 1e-9
    assert math.isclose(sum(m["weight"] > 0 for m in data["members"]), len(data["members"]))
    again = _invoke("ensemble", zoo_path, "--load", saved)
    assert again.exit_code == 0, again.output
    assert f"{data['test_ppl']:9.2f}" in again.output
    assert "best member test ppl" in again.output and "uniform top-4" in again.output
    clash = CliRunner().invoke(main, ["ensemble", str(zoo_path), "--load", str(saved),
                                      "--top", "2"])
    assert clash.exit_code == 2 and "--load" in clash.output


def test_runs_chosen_by_id_ensemble_two_seeds_of_one_cell(tmp_path):
    path = tmp_path / "seeds.h5"
    with Zoo.open(path, "a") as zoo:
        ids = [zoo.add_run(train_cell("tanh-RNN", CONFIG.replace(seed=seed))) for seed in (0, 1)]
    # --cells can only name the cell (its best run); --runs names each seed's run
    result = _invoke("ensemble", path, "--runs", f"{ids[0][:8]},{ids[1][:8]}", "--select", "top",
                     "--eval-tokens", 2000, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert sorted(m["run_id"] for m in data["members"]) == sorted(ids)
    assert len({m["label"] for m in data["pool"]}) == 2  # one cell, two labelled runs
    assert data["test_ppl"] < max(m["test_ppl"] for m in data["pool"])
    out = tmp_path / "cmp"
    compared = _invoke("compare", path, "--runs", ",".join(ids), "--out", out, "--tokens", 200)
    assert compared.exit_code == 0, compared.output
    assert len(pd.read_csv(out / "cells.csv")) == 2
    for bad, message in ((["--runs", "ffff"], "no run id starting with 'ffff'"),
                         (["--runs", f"{ids[0]},{ids[0]}"], "chosen twice"),
                         (["--runs", ids[0], "--top", "2"], "--top or --runs")):
        failed = _invoke("ensemble", path, *bad)
        assert failed.exit_code == 2 and message in failed.output, failed.output
