"""The run directory: one reader and writer of a search's files, for the search, resume,
`plot progress` and the report (which shows the training the search stored, not one derived
again from today's proxy defaults)."""

from __future__ import annotations

import json

import pytest

from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.rundir import EVALUATIONS_LOG, RANKER_LOG, CheckpointError, RunDir
from cellzoo.evolve.search import Search
from cellzoo.report.cells import best_cells
from cellzoo.report.context import load_search_runs
from cellzoo.train import PROXIES
from cellzoo.zoo import Zoo

TINY_TRAIN = {"hidden": 8, "budget_tokens": 1000, "eval_tokens": 300, "batch_size": 4,
              "bptt": 10}


def test_report_reads_the_training_key_the_search_stored(tmp_path, monkeypatch):
    config = SearchConfig(zoo=str(tmp_path / "z.h5"), evaluations=4, population=4, sample=2,
                          train=TINY_TRAIN)
    search = Search.open(config, tmp_path / "run").run()
    files = RunDir(tmp_path / "run")
    assert files.config() == config
    assert files.training() == (search.key, search.train_config.to_dict())
    monkeypatch.setitem(PROXIES, "synthetic", PROXIES["synthetic"].replace(lr=0.5))
    assert config.train_config().key() != search.key  # the proxy defaults changed
    run = load_search_runs([tmp_path / "run"])[0]
    assert run.problem is None and run.proxy_key == search.key
    with Zoo.open(config.zoo, "r") as zoo:
        assert len(best_cells(zoo, "synthetic", {run.proxy_key}, 10)) >= 1


def test_checkpoint_keeps_one_tensor_file_and_rejects_foreign_ones(tmp_path):
    files = RunDir(tmp_path / "run")
    assert files.load_checkpoint() is None and files.training() is None
    for seq in (1, 2):
        files.save_checkpoint(seq, {"config_key": "k", "train_config": {}}, {"seq": seq})
    assert sorted(p.name for p in files.path.iterdir()) == ["checkpoint-000002.pt",
                                                           "checkpoint.json"]
    state, tensors = files.load_checkpoint()
    assert state["tensors"] == "checkpoint-000002.pt" and tensors == {"seq": 2}
    (files.path / "checkpoint.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="format 99"):
        files.load_checkpoint()
    (files.path / "checkpoint.json").write_text("{torn")
    with pytest.raises(CheckpointError, match="not a readable"):
        files.state()


def test_cut_logs_keeps_what_the_checkpoint_covers(tmp_path):
    files = RunDir(tmp_path)
    for n in range(4):
        files.log_evaluation({"n": n})
        files.log_ranker({"n": n})
    with open(tmp_path / EVALUATIONS_LOG, "a") as f:
        f.write('{"n": 4, "tor')  # a kill mid-write
    files.cut_logs(2)
    assert files.evaluations() == [{"n": 0}, {"n": 1}]
    assert (tmp_path / RANKER_LOG).read_text().splitlines() == ['{"n": 0}', '{"n": 1}']


def test_a_ladder_stored_before_schedules_reads_back_as_compressed(tmp_path):
    config = SearchConfig(ladder={"preset": "synthetic-small", "rungs": 2})
    assert config.ladder["schedule"] == "prefix"  # today's default
    RunDir(tmp_path).write_config(config)
    stored = json.loads((tmp_path / "config.json").read_text())
    del stored["ladder"]["schedule"]  # as a search of an older version wrote it
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert RunDir(tmp_path).config().make_ladder().schedule == "compressed"


def test_a_search_stored_before_dedup_reads_back_as_structural(tmp_path):
    assert SearchConfig().dedup == "function"  # today's default
    RunDir(tmp_path).write_config(SearchConfig())
    stored = json.loads((tmp_path / "config.json").read_text())
    del stored["dedup"]  # as a search of an older version wrote it
    (tmp_path / "config.json").write_text(json.dumps(stored))
    assert RunDir(tmp_path).config().dedup == "structure"
