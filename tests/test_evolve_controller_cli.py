"""`cellzoo controller sample`: fresh policies, saved controllers, search checkpoints."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.dsl import cell_hash, is_valid, parse
from cellzoo.evolve.controller import Controller, checkpoint_path
from cellzoo.evolve.rundir import RunDir


def sample(*args: str):
    return CliRunner().invoke(main, ["controller", "sample", *args])


def test_sample_json_prints_valid_cells():
    out = sample("-n", "40", "--json", "--no-pretrain", "--seed", "2")
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert len(rows) == 40
    assert all(is_valid(parse(r["expr"])) and r["hash"] == cell_hash(r["expr"]) for r in rows)
    again = json.loads(sample("-n", "40", "--json", "--no-pretrain", "--seed", "2").stdout)
    assert again == rows


def test_sample_from_saved_controller_and_search_checkpoint(tmp_path):
    controller = Controller(pretrain=False, hidden=16, seed=4)
    controller.save(checkpoint_path(tmp_path / "file"))
    expected = [r.strip() for r in map(str, Controller.load(
        checkpoint_path(tmp_path / "file")).sample(5))]
    out = sample("-n", "5", "--checkpoint", str(checkpoint_path(tmp_path / "file")))
    assert out.exit_code == 0, out.output
    assert [line.split("  ", 1)[1] for line in out.output.splitlines()] == expected
    RunDir(tmp_path / "run").save_checkpoint(1, {"counters": {}},
                                             {"proposer": controller.state_dict()})
    out = sample("-n", "5", "--checkpoint", str(tmp_path / "run"), "--level", "extended")
    assert out.exit_code == 0, out.output
    assert len(out.output.splitlines()) == 5


def test_sample_errors_exit_2(tmp_path):
    assert sample("--checkpoint", str(tmp_path)).exit_code == 2  # no checkpoint there
    RunDir(tmp_path).save_checkpoint(1, {}, {"proposer": None})
    out = sample("--checkpoint", str(tmp_path))
    assert out.exit_code == 2 and "without --controller" in out.output
    assert sample("--max-depth", "2", "--no-pretrain").exit_code == 2
    assert sample("--checkpoint", str(tmp_path), "--max-nodes", "9").exit_code == 2
