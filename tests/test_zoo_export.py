"""`cellzoo zoo export`: the best run within one task, usable without cellzoo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cellzoo.cli import main

TINY = ["--hidden", "8", "--batch-size", "4", "--bptt", "10", "--budget-tokens", "300",
        "--eval-tokens", "300"]

# run in a fresh interpreter: plain torch and the exported files only
SCORE = r"""
import json, math, sys
from pathlib import Path
import torch
import torch.nn.functional as F

out, text_file = Path(sys.argv[1]), sys.argv[2]
model = torch.export.load(out / "model.pt2").module()
vocab = json.loads((out / "vocab.json").read_text())
config = json.loads((out / "config.json").read_text())
shapes = json.loads((out / "run.json").read_text())["state_shapes"]
ids = {token: i for i, token in enumerate(vocab["tokens"])}
tokens = [t for line in open(text_file) for t in line.split() + [vocab["eos"]]]
data = torch.tensor([ids[t] for t in tokens][: config["eval_tokens"] + 1])
batch = min(config["eval_batch_size"], max(1, len(data) // 2))  # as training evaluated
rows = len(data) // batch
source = data[: rows * batch].view(batch, rows).t()
state = tuple(torch.zeros(batch, *shape[1:]) for shape in shapes)
nll = 0.0
with torch.no_grad():
    for i in range(rows - 1):
        logits, state = model(source[i], state)
        nll += F.cross_entropy(logits, source[i + 1], reduction="sum").item()
assert not [m for m in sys.modules if m.startswith("cellzoo")], "cellzoo was imported"
print(math.exp(nll / ((rows - 1) * batch)))
"""


def cli(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_export_scores_text_without_cellzoo(shared_data, tmp_path):
    zoo = tmp_path / "z.h5"
    cli("train", "GRU", "--task", "ptb", *TINY, "--zoo", zoo)
    cli("train", "GRU", "--task", "synthetic", *TINY, "--zoo", zoo)  # lower ppl, other task
    (ptb_run,) = json.loads(cli("zoo", "list", zoo, "--task", "ptb", "--format", "json"))
    ambiguous = cli("zoo", "export", zoo, ptb_run["hash"], "--out", tmp_path / "x", code=2)
    assert "ptb, synthetic" in ambiguous and "--task" in ambiguous
    out = tmp_path / "export"
    listed = cli("zoo", "export", zoo, ptb_run["hash"], "--task", "ptb", "--out", out).split()
    assert {p.rsplit("/", 1)[1] for p in listed} == {
        "cell.dsl", "config.json", "run.json", "vocab.json", "README.txt", "state_dict.pt",
        "model.pt2"}
    assert json.loads((out / "run.json").read_text())["run_id"] == ptb_run["run_id"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scored = subprocess.run([sys.executable, "-c", SCORE, str(out),
                             str(shared_data / "ptb" / "valid.txt")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert scored.returncode == 0, scored.stderr
    assert float(scored.stdout) == pytest.approx(ptb_run["val_ppl"], rel=1e-5)
