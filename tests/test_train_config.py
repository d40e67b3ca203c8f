"""TrainConfig identity, validation, presets and the JSON form of TrainResult."""

from __future__ import annotations

import json
import math

import pytest

from cellzoo.train import PRESETS, PROXIES, TrainConfig, TrainResult


def test_key_ignores_device_and_unset_defaults():
    base = TrainConfig(hidden=32)
    assert base.key() == TrainConfig(hidden=32, emb=32, lr=3e-3, device="cpu").key()
    assert base.key() != TrainConfig(hidden=32, seed=1).key()
    assert base.replace(hidden=64).emb_size == 64  # emb follows hidden unless set
    assert len(base.key()) == 16


def test_round_trip_and_unknown_fields():
    config = TrainConfig.preset("zaremba-small")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown TrainConfig fields \\['colour'\\]"):
        TrainConfig.from_dict({"colour": "red"})


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "rmsprop"}, "choose one of sgd, adam"),
    ({"loss": "max"}, "choose one of mean, sum"),
    ({"task": "imagenet"}, "choose one of"),
    ({"hidden": 0}, "hidden must be at least 1"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_values_name_the_choices(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_zaremba_small_is_the_published_recipe():
    z = PRESETS["zaremba-small"]
    assert (z.task, z.layers, z.hidden, z.epochs) == ("ptb", 2, 200, 13)
    assert (z.optimizer, z.lr) == ("sgd", 1.0)
    assert (z.batch_size, z.bptt, z.clip, z.init_range, z.dropout) == (20, 20, 5, 0.1, 0)
    assert (z.loss, z.tie_weights, z.lr_decay, z.decay_after) == ("sum", False, 0.5, 4)
    assert set(PROXIES) == {"synthetic", "ptb", "ptb-char", "wikitext-2"}
    with pytest.raises(ValueError, match="zaremba-small"):
        TrainConfig.preset("nope")


def test_result_json_is_strict_and_round_trips():
    result = TrainResult(expr="Tanh(Add(MM(h), MM(x)))", hash="0" * 16, status="diverged",
                         val_ppl=math.nan, test_ppl=math.inf, params=10, tokens_per_s=5.0,
                         seconds=1.0, tokens_trained=100,
                         curve=[{"tokens": 50, "train_loss": 2.0, "val_ppl": math.nan}],
                         device="cpu", error="non-finite loss", config=TrainConfig())
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["val_ppl"] is None and data["curve"][0]["val_ppl"] is None
    back = TrainResult.from_json(data)
    assert math.isnan(back.val_ppl) and back.config == result.config and back.state_dict is None
