"""The learning-rate probe at rung 0 of the synthetic ladder."""

from __future__ import annotations

import math

import pytest
import torch

from cellzoo.evolve.ladder import Ladder
from cellzoo.evolve.probe import RateOutcome, choose, descend, judge, probe, unigram_ppl
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
    found = probe("LSTM", LADDER, 0, tmp_path)  # 1/2 passes too, with a worse result: stop
    assert found.lr == 1.0 and found.passed and [o.passed for o in found.outcomes] == [True] * 2
    assert found.outcomes[1].val_ppl > found.outcomes[0].val_ppl
    assert found.note() is None
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
    assert found.lr == 0.125 and found.passed
    assert [o.status for o in found.outcomes] == ["diverged"] * 3 + ["ok"]
    assert all("diverged" in o.reason for o in found.outcomes[:3])
    assert found.result.config.lr == 0.125 and found.result.val_ppl == found.outcomes[-1].val_ppl
    again = probe(linear, LADDER, 0, tmp_path)  # rerun: read back from the checkpoints
    assert again.to_json() == found.to_json() | {"result": again.to_json()["result"]}
    assert again.result.val_ppl == found.result.val_ppl


def test_the_probe_descends_while_the_rung0_result_improves(tmp_path):
    # the tanh-RNN diverges at 1, learns at 1/2, better at 1/4, worse again at 1/8
    found = probe("tanh-RNN", LADDER, 0, tmp_path)
    vals = [o.val_ppl for o in found.outcomes]
    assert [o.lr for o in found.outcomes] == [1.0, 0.5, 0.25, 0.125]
    assert found.outcomes[0].status == "diverged" and vals[1] > vals[2] < vals[3]
    assert found.lr == 0.25 and found.passed and found.result.val_ppl == vals[2]


def test_a_result_above_the_unigram_level_fails():
    config = TrainConfig.preset("synthetic-small")
    result = TrainResult("x", "h", "ok", 17.0, 17.0, 1, 1.0, 1.0, 1, [{"train_loss": 2.0}],
                         "cpu", None, config)
    assert "not below the unigram 16" in judge(result, 2.8, 16.0).reason
    assert judge(result.__class__(**{**result.__dict__, "val_ppl": 15.0}), 2.8, 16.0).passed


def test_a_cell_no_rate_passes_gets_its_best_non_diverged_rate(tmp_path):
    # the ReLU-RNN learns at rung 0 but stays at the unigram level (16.0) at 1, 1/2, 1/4
    found = probe("ReLU-RNN", LADDER, 0, tmp_path, scales=(1.0, 0.5, 0.25))
    assert not found.passed and [o.status for o in found.outcomes] == ["ok"] * 3
    assert all("not below the unigram" in o.reason for o in found.outcomes)
    vals = {o.lr: o.val_ppl for o in found.outcomes}
    assert found.lr == min(vals, key=vals.get) and found.result.config.lr == found.lr
    assert found.result.status == "ok" and found.result.val_ppl == vals[found.lr]
    assert found.note().startswith("no rate passed the probe: lr 1: validation")
    assert found.to_json()["passed"] is False
    # tried in another order (read back from the checkpoints), the best run is still the
    # result, not the last one tried
    again = probe("ReLU-RNN", LADDER, 0, tmp_path, scales=(0.25, 1.0, 0.5))
    assert again.lr == found.lr == 0.25 and again.result.val_ppl == vals[0.25] < vals[0.5]


def test_a_cell_that_diverges_at_every_rate_has_none(tmp_path):
    found = probe("Add(MM(x), MM(h))", LADDER, 0, tmp_path, scales=(1.0, 0.5))
    assert found.lr is None and not found.passed
    assert found.result.status == "diverged" and found.result.config.lr == 0.5  # the last


def outcome(lr: float, status: str, val: float, reason: str | None) -> RateOutcome:
    return RateOutcome(lr, status, val, 2.8, 2.0, reason)


def test_the_rule_picks_the_best_passing_rate_then_the_best_run():
    diverged = outcome(1.0, "diverged", math.nan, "diverged: loss exploded")
    # the GRU on PTB's rung 0: both rates pass, the lower one ran better
    gru = [outcome(1.0, "ok", 601.4, None), outcome(0.5, "ok", 579.6, None)]
    assert choose(gru) == (0.5, True) and descend(gru) and not descend(gru[::-1])
    assert choose([outcome(1.0, "ok", 5.0, None), outcome(0.5, "ok", 5.0, None)]) == (1.0, True)
    assert descend([diverged]) and not descend([*gru, outcome(0.25, "failed", math.nan, "x")])
    above = [outcome(0.5, "ok", 735.0, "above"), outcome(0.25, "ok", 727.0, "above"),
             outcome(0.125, "ok", 746.0, "above")]
    assert choose([diverged, *above]) == (0.25, False)  # PTB's peephole-LSTM, say
    assert choose([diverged, above[0], outcome(0.25, "ok", 600.0, None)]) == (0.25, True)
    failed = outcome(0.5, "failed", math.nan, "failed: boom")
    assert choose([diverged, failed]) == (None, False)
    assert choose([RateOutcome.from_json(
        {"lr": 1.0, "status": "diverged", "val_ppl": None, "first_loss": 2.8,
         "last_loss": None, "reason": "diverged"}), above[2]]) == (0.125, False)
