"""`cellzoo train` and `cellzoo data` through click's test runner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.train import TrainConfig

TINY = ["--task", "synthetic", "--hidden", "8", "--budget-tokens", "600", "--eval-tokens", "400",
        "--batch-size", "4", "--bptt", "10", "--device", "cpu"]
KEYS = {"hash", "expr", "status", "val_ppl", "test_ppl", "params", "tokens_per_s", "seconds",
        "config", "config_key", "curve", "tokens_trained", "device", "error"}


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.delenv("CELLZOO_DATA", raising=False)
    monkeypatch.setenv("CELLZOO_CACHE", str(tmp_path / "cache"))

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args))

    return invoke


def test_train_json_prints_one_valid_object(run):
    result = run("train", "tanh-RNN", *TINY, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert KEYS <= set(data) and data["status"] == "ok"
    assert data["expr"] == "Tanh(Add(MM(h), MM(x)))" and data["val_ppl"] > 1
    config = TrainConfig.from_dict(data["config"])
    assert config.hidden == 8 and config.budget_tokens == 600 and config.key() == data["config_key"]


def test_train_plain_output_and_dsl_text(run):
    result = run("train", "Tanh(Add(MM(x), MM(h)))", *TINY)
    assert result.exit_code == 0, result.output
    assert "valid ppl" in result.stdout and "status    ok" in result.stdout


def test_diverged_run_gives_null_perplexities(run):
    result = run("train", "tanh-RNN", *TINY, "--optimizer", "sgd", "--lr", "1e6", "--clip", "1e9",
                 "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "diverged" and data["val_ppl"] is None and data["test_ppl"] is None


@pytest.mark.parametrize("args, message", [
    (["Tanh(Add(MM(x), MM(h))", *TINY], "column"),
    (["Tanh(MM(x))", *TINY], "state"),
    (["tanh-RNN", *TINY, "--epochs", "1"], "not both"),
    (["tanh-RNN", "--task", "ptb", "--data", "/nonexistent"], "cellzoo data fetch ptb"),
    ([], "missing CELL"),
    (["tanh-RNN", *TINY, "--eval-at", "100,0"], "each number must be at least 1 (got 0)"),
    (["tanh-RNN", *TINY, "--eval-at", "1e5"], "expected whole numbers"),
])
def test_errors_exit_2_with_a_message(run, args, message):
    result = run("train", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_checkpoint_then_resume_by_folder(run, tmp_path):
    first = run("train", "GRU", *TINY, "--json", "--checkpoint", str(tmp_path / "ck"))
    assert first.exit_code == 0, first.output
    again = run("train", "--resume", str(tmp_path / "ck"), "--json")
    assert again.exit_code == 0, again.output
    a, b = json.loads(first.stdout), json.loads(again.stdout)
    assert (a["hash"], a["val_ppl"], a["curve"]) == (b["hash"], b["val_ppl"], b["curve"])
    refused = run("train", "--resume", str(tmp_path / "ck"), "--hidden", "9")
    assert refused.exit_code == 2 and "--hidden" in refused.output
    empty = run("train", "--resume", str(tmp_path / "nothing"))
    assert empty.exit_code == 2 and "no checkpoint" in empty.output


def test_match_params_sets_the_hidden_width(run):
    args = [*TINY[:2], *TINY[4:], "--json"]  # the proxy's hidden width, 32
    lstm = json.loads(run("train", "LSTM", *args).stdout)
    result = run("train", "tanh-RNN", *args, "--match-params", "LSTM")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert TrainConfig.from_dict(data["config"]).hidden > 32
    assert abs(data["params"] / lstm["params"] - 1) <= 0.05
    both = run("train", "tanh-RNN", *TINY, "--match-params", "LSTM")
    assert both.exit_code == 2 and "not both" in both.output


def test_matched_hidden_refuses_an_unreachable_count():
    from cellzoo.dsl.library import resolve_cell
    from cellzoo.train.model import matched_hidden

    config = TrainConfig.proxy("synthetic").replace(hidden=3, emb=2)
    tanh, lstm = resolve_cell("tanh-RNN"), resolve_cell("LSTM")
    with pytest.raises(ValueError, match="within 0%"):
        matched_hidden(tanh, lstm, 5, config, tolerance=0.0)


def test_zoo_option_stores_the_run(run, tmp_path):
    from cellzoo.zoo import Zoo

    path = tmp_path / "z.h5"
    result = run("train", "tanh-RNN", *TINY, "--json", "--zoo", str(path))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    with Zoo.open(path) as zoo:
        assert zoo.has_run(data["hash"], data["config_key"])
        assert zoo.run(data["run_id"]).hash == data["hash"]
    without_zoo = json.loads(run("train", "tanh-RNN", *TINY, "--json").stdout)
    assert "run_id" not in without_zoo


def test_data_path_lists_the_search(run, tmp_path, monkeypatch):
    missing = run("data", "path", "ptb")
    assert missing.exit_code == 2 and str(tmp_path / "cache" / "ptb") in missing.output
    folder = tmp_path / "corpus"
    folder.mkdir()
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("a b\n")
    found = run("data", "path", "ptb", "--data", str(folder))
    assert found.exit_code == 0 and f"found   {folder}" in found.output


def test_a_checkpoint_that_cannot_be_written_exits_2_naming_the_file(run, tmp_path):
    folder = tmp_path / "ck"
    (folder / "checkpoint.pt").mkdir(parents=True)  # the rename onto it fails, as on a full disk
    result = run("train", "tanh-RNN", *TINY, "--checkpoint", str(folder))
    assert result.exit_code == 2, result.output
    assert f"cannot write the checkpoint {folder / 'checkpoint.pt'}" in result.output
    assert "--resume" in result.output and "Traceback" not in result.output


def test_a_failed_run_is_printed_and_exits_1(run, monkeypatch):
    from cellzoo.train.loop import Trainer

    def broken(self):
        raise RuntimeError("injected failure inside training")

    monkeypatch.setattr(Trainer, "_epoch", broken)
    result = run("train", "tanh-RNN", *TINY, "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "failed" and "injected failure" in data["error"]


def test_a_result_that_cannot_be_saved_is_still_stored(run, tmp_path, monkeypatch):
    import errno

    from cellzoo.zoo import Zoo, pending

    def full_disk(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pending, "atomic_write", full_disk)
    saved = tmp_path / "result.pt"
    result = run("train", "tanh-RNN", *TINY, "--json", "--zoo", str(tmp_path / "z.h5"),
                 "--save-result", str(saved))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    with Zoo.open(tmp_path / "z.h5") as zoo:
        assert zoo.has_run(data["hash"], data["config_key"])
    assert not saved.exists()


def test_a_resumed_library_cell_is_stored_as_library(run, tmp_path):
    from cellzoo.zoo import Zoo

    first = run("train", "GRU", *TINY, "--checkpoint", str(tmp_path / "ck"))
    assert first.exit_code == 0, first.output
    for cell, zoo in ((["--resume", str(tmp_path / "ck")], "a.h5"),
                      (["Tanh(Add(MM(x), MM(h)))", *TINY], "b.h5")):
        stored = run("train", *cell, "--zoo", str(tmp_path / zoo))
        assert stored.exit_code == 0, stored.output
    with Zoo.open(tmp_path / "a.h5") as a, Zoo.open(tmp_path / "b.h5") as b:
        # the checkpoint holds only the text; the text of a library cell is the library's
        assert [r.origin for r in a.runs()] == ["library"]
        assert [r.origin for r in b.runs()] == ["manual"]  # typed as text, not resumed
