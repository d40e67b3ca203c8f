"""`cellzoo train --zoo` then `cellzoo zoo list/show/export/import/stats/repair`."""

import csv
import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.train import TrainConfig, load_corpus
from cellzoo.zoo import Zoo

TRAIN = ["--task", "synthetic", "--hidden", "8", "--batch-size", "4", "--bptt", "10",
         "--budget-tokens", "400", "--eval-tokens", "200"]


def cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory):
    """A zoo filled by `cellzoo train --zoo`: the LSTM and a tanh RNN child of it."""
    path = tmp_path_factory.mktemp("zoo") / "z.h5"
    cli("train", "LSTM", *TRAIN, "--zoo", path)
    cli("train", "Tanh(Add(MM(x), MM(h)))", *TRAIN, "--seed", "3", "--zoo", path)
    return path


def _runs(path):
    return json.loads(cli("zoo", "list", path, "--format", "json"))


def test_list_formats(zoo_path):
    rows = _runs(zoo_path)
    assert len(rows) == 2 and [r["origin"] for r in rows] == ["library", "manual"]
    assert {"hash", "expr", "task", "status", "val_ppl", "test_ppl", "params", "config",
            "config_key", "parents", "seconds", "device"} <= set(rows[0])
    table = cli("zoo", "list", zoo_path)
    assert rows[0]["hash"] in table and "..." in table  # the LSTM's text is shortened
    assert rows[0]["expr"] not in table
    parsed = list(csv.DictReader(io.StringIO(cli("zoo", "list", zoo_path, "--format", "csv"))))
    assert [r["hash"] for r in parsed] == [r["hash"] for r in rows]
    assert parsed[1]["config.seed"] == "3"
    best = min(rows, key=lambda r: r["val_ppl"])
    top = json.loads(cli("zoo", "list", zoo_path, "--top", "1", "--format", "json"))
    assert [r["run_id"] for r in top] == [best["run_id"]]
    assert json.loads(cli("zoo", "list", zoo_path, "--status", "failed", "--format", "json")) == []
    with_curves = json.loads(cli("zoo", "list", zoo_path, "--format", "json", "--curves"))
    assert len(with_curves[0]["curve"]) == 5


def test_show_draws_tree_runs_curves_and_lineage(zoo_path):
    rnn = _runs(zoo_path)[1]
    text = cli("zoo", "show", zoo_path, rnn["hash"][:6])
    assert rnn["expr"] in text
    assert "  Tanh\n    Add\n      MM\n        h\n      MM\n        x\n" in text
    assert f"run {rnn['run_id']}" in text and "train_loss" in text and "400" in text
    assert "\nlineage\n" in text and "manual" in text


def _stepwise_ppl(model, data, config):
    """Perplexity of the exported model over `data`, one token per call: plain torch only,
    batched and capped as cellzoo.train.evaluate does."""
    data = data[: config["eval_tokens"] + 1]
    batch = min(config["eval_batch_size"], max(1, data.size(0) // 2))
    rows = data.size(0) // batch
    source = data[: rows * batch].view(batch, rows).t()
    meta_shapes = model.state_shapes
    state = tuple(torch.zeros(batch, *shape[1:]) for shape in meta_shapes)
    total = 0.0
    with torch.no_grad():
        for i in range(rows - 1):
            logits, state = model(source[i], state)
            total += F.cross_entropy(logits, source[i + 1], reduction="sum").item()
    return math.exp(total / ((rows - 1) * batch))


def test_export_reproduces_stored_val_ppl(zoo_path, tmp_path):
    lstm = _runs(zoo_path)[0]
    out = tmp_path / "export"
    listed = cli("zoo", "export", zoo_path, lstm["hash"][:8], "--out", out).split()
    assert sorted(p.rsplit("/", 1)[1] for p in listed) == sorted(
        ["cell.dsl", "config.json", "run.json", "vocab.json", "README.txt", "state_dict.pt",
         "model.pt2"])
    assert (out / "cell.dsl").read_text().strip() == lstm["expr"]
    config = json.loads((out / "config.json").read_text())
    meta = json.loads((out / "run.json").read_text())
    model = torch.export.load(out / "model.pt2").module()
    model.state_shapes = meta["state_shapes"]
    state_dict = torch.load(out / "state_dict.pt", weights_only=True)
    assert torch.equal(state_dict["decoder.bias"], model.lm.decoder.bias)
    assert json.loads((out / "vocab.json").read_text())["tokens"][:2] == ["s0", "s1"]
    valid = load_corpus("synthetic").valid
    assert _stepwise_ppl(model, valid, config) == pytest.approx(lstm["val_ppl"], rel=1e-5)
    assert TrainConfig.from_dict(config).key() == lstm["config_key"]


def test_import_and_stats(zoo_path, tmp_path):
    merged = tmp_path / "merged.h5"
    out = cli("zoo", "import", merged, zoo_path, zoo_path)
    assert "2 runs added, 0 already" in out and "0 runs added, 2 already" in out
    stats = json.loads(cli("zoo", "stats", merged, "--json"))
    assert stats["runs"] == 2 and stats["cells"] == 2 and stats["by_status"] == {"ok": 2}
    assert stats["by_origin"] == {"library": 1, "manual": 1}
    assert stats["bytes"] == merged.stat().st_size
    assert stats["best"]["synthetic"]["val_ppl"] == min(r["val_ppl"] for r in _runs(zoo_path))
    assert "2 runs of 2 cells" in cli("zoo", "stats", merged)
    assert "2 runs, all readable" in cli("zoo", "repair", merged)


def test_cli_errors_exit_2_and_name_the_file(tmp_path, zoo_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    assert f"{junk} is not an HDF5 file" in cli("zoo", "list", junk, code=2)
    assert "no zoo file at" in cli("zoo", "stats", tmp_path / "none.h5", code=2)
    assert "no cell hash starting with 'zz'" in cli("zoo", "show", zoo_path, "zz", code=2)
    with Zoo.open(zoo_path, "a"):
        out = cli("train", "LSTM", *TRAIN, "--zoo", zoo_path, code=2)
        assert "open for writing by pid" in out
        assert "open for writing by pid" in cli("zoo", "import", zoo_path, junk, code=2)
