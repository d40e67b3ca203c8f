"""The learning-rate probe at rung 0 of the synthetic ladder."""

from __future__ import annotations

import math

import pytest
import torch

from cellzoo.evolve.ladder import Ladder
from cellzoo.evolve.probe import judge, probe, unigram_ppl
from cellzoo.train import TrainConfig, TrainResult
from cellzoo.train.corpus import Corpus, load_corpus

LADDER = Ladder("synthetic-small", rungs=3)  # rung 0: 26,659 tokens, about a second


def test_unigram_perplexity_uses_training_counts_on_the_validation_split():
    corpus = Corpus("toy", torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1]), torch.tensor([0]),
                    ["a", "b"])
    assert unigram_ppl(corpus) == pytest.approx(math.exp(-(math.log(0.75) + math.log(0.25)) / 2))
    assert unigram_ppl(corpus, eval_tokens=0) == pytest.approx(1 / 0.75)
    assert unigram_ppl(load_corpus("synthetic")) == pytest.approx(16, rel=0.01)  # uniform


def test_the_lstm_keeps_the_presets_rate(tmp_path):
    found = probe("LSTM", LADDER, 0, tmp_path)
    assert found.lr == 1.0 and [o.passed for o in found.outcomes] == [True]
    assert found.result.status == "ok" and found.result.config == LADDER.configs(
        "LSTM", load_corpus("synthetic"))[0]


def test_a_rate_at_which_the_lstm_does_not_learn_fails(tmp_path):
    found = probe("LSTM", LADDER, 0, tmp_path, lr=2.0)  # stays at the unigram level at 2
    assert found.lr == 1.0
    failed = found.outcomes[0]
    assert failed.status == "ok" and not failed.passed and "did not fall" in failed.reason
    assert failed.val_ppl > 16.0


def test_an_unstable_cell_gets_a_lower_rate_and_its_run_is_the_rung0_result(tmp_path):
    linear = "Add(MM(x), MM(h))"  # an unbounded linear recurrence
    found = probe(linear, LADDER, 0, tmp_path)
    assert found.lr == 0.125
    assert [o.status for o in found.outcomes] == ["diverged"] * 3 + ["ok"]
    assert all("diverged" in o.reason for o in found.outcomes[:3])
    assert found.result.config.lr == 0.125 and found.result.val_ppl == found.outcomes[-1].val_ppl
    again = probe(linear, LADDER, 0, tmp_path)  # rerun: read back from the checkpoints
    assert again.to_json() == found.to_json() | {"result": again.to_json()["result"]}
    assert again.result.val_ppl == found.result.val_ppl


def test_a_result_above_the_unigram_level_fails():
    config = TrainConfig.preset("synthetic-small")
    result = TrainResult("x", "h", "ok", 17.0, 17.0, 1, 1.0, 1.0, 1, [{"train_loss": 2.0}],
                         "cpu", None, config)
    assert "not below the unigram 16" in judge(result, 2.8, 16.0).reason
    assert judge(result.__class__(**{**result.__dict__, "val_ppl": 15.0}), 2.8, 16.0).passed
