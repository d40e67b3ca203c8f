"""The search's seams with the real ranker (pre-filter) and RL controller (proposer)
plugged in: controller cells reach the zoo with origin "controller", the ranker's
scores are logged, both states go into the checkpoint and come back on resume."""

from __future__ import annotations

import json

import pytest
import torch

from cellzoo.cli.evolve import make_proposer, make_ranker
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.rundir import RANKER_LOG
from cellzoo.evolve.search import Search, SearchError
from cellzoo.zoo import Zoo

pytestmark = pytest.mark.slow

TINY_TRAIN = {"hidden": 8, "budget_tokens": 1000, "eval_tokens": 300, "batch_size": 4,
              "bptt": 10}


def plugins(config: SearchConfig) -> dict:
    try:
        return {"ranker": make_ranker(config), "proposer": make_proposer(config)}
    except SearchError as err:
        pytest.skip(str(err))


def test_ranker_and_controller_in_a_search(tmp_path):
    config = SearchConfig(zoo=str(tmp_path / "z.h5"), evaluations=14, population=4, sample=2,
                          ranker=True, controller=True, controller_share=0.5,
                          train=TINY_TRAIN)
    search = Search.open(config, tmp_path / "run", **plugins(config)).run()
    with Zoo.open(config.zoo, "r") as zoo:
        origins = [r.origin for r in zoo.runs()]
    assert "controller" in origins and "mutation" in origins
    assert len(origins) == 14
    log = [json.loads(line) for line in (tmp_path / "run" / RANKER_LOG).read_text()
           .splitlines()]
    assert log, "the ranker was fitted once 8 runs were in the zoo and scored later rounds"
    assert set(log[0]) >= {"round", "hash", "predicted", "true_log_ppl"}
    assert all(row["round"] >= 2 for row in log)

    again = Search.open(config, tmp_path / "run", **plugins(config))
    assert again.resumed and again.ranker_ready
    before, after = search.proposer.state_dict(), again.proposer.state_dict()
    assert (after["updates"], after["proposed"], after["baseline"]) == \
        (before["updates"], before["proposed"], before["baseline"])
    assert before["updates"] >= 1  # it learned from its own trained candidates
    assert torch.equal(after["rng"], before["rng"])
    for name, tensor in before["policy"].items():
        assert torch.equal(after["policy"][name], tensor)
    ranker_state = search.ranker.state_dict()["model"]
    for name, tensor in again.ranker.state_dict()["model"].items():
        assert torch.equal(tensor, ranker_state[name])
