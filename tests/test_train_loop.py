"""The training loop on the synthetic task: learning, divergence, determinism, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch

from cellzoo.dsl import cell_hash
from cellzoo.dsl.library import LIBRARY, resolve_cell
from cellzoo.train import CheckpointError, TrainConfig, batchify, get_batch, train_cell
from cellzoo.train.corpus import SyntheticSpec, synthetic_corpus
from cellzoo.train.loop import Trainer

TINY = TrainConfig(task="synthetic", hidden=16, batch_size=8, bptt=10, lr=1e-2,
                   budget_tokens=2_000, eval_tokens=800, device="cpu")
SMALL_CORPUS = synthetic_corpus(SyntheticSpec(sizes=(1_600, 400, 400)))


def test_batchify_and_get_batch_follow_the_diagram():
    source = batchify(torch.arange(26), 4)
    assert source[:, 0].tolist() == [0, 1, 2, 3, 4, 5] and source[0].tolist() == [0, 6, 12, 18]
    data, target = get_batch(source, 0, 2)
    assert data.tolist() == [[0, 6, 12, 18], [1, 7, 13, 19]]
    assert target.equal(source[1:3])
    last, _ = get_batch(source, 4, 35)
    assert last.size(0) == 1


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_every_library_cell_trains_on_synthetic(name):
    result = train_cell(name, TINY)
    assert result.status == "ok", result.error
    assert math.isfinite(result.val_ppl) and math.isfinite(result.test_ppl)
    assert result.tokens_trained >= TINY.budget_tokens and result.params > 0
    assert result.hash == cell_hash(resolve_cell(name))


def test_a_library_cell_beats_uniform_and_stays_above_the_optimum():
    config = TINY.replace(hidden=32, budget_tokens=12_000)
    result = train_cell("GRU", config)
    corpus = synthetic_corpus()
    assert result.status == "ok"
    assert corpus.best_ppl < result.val_ppl < 0.8 * corpus.vocab_size
    assert [p["tokens"] for p in result.curve] == sorted(p["tokens"] for p in result.curve)
    assert result.curve[-1]["val_ppl"] == result.val_ppl
    assert result.curve[0]["val_ppl"] > result.val_ppl
    assert result.tokens_per_s > 0 and result.seconds > 0 and result.device == "cpu"


@pytest.mark.parametrize("cell, changes", [
    ("tanh-RNN", {"optimizer": "sgd", "lr": 1e6, "clip": 1e9}),
    ("Add(MM(x), Mult(Add(h, h), Add(h, h)))", {}),  # h <- 4 h^2 + W x: overflows at once
    ("Mult(Add(MM(x), MM(h)), Add(MM(h), MM(h)))", {}),  # explodes after a few steps
])
def test_divergence_is_a_result_not_an_exception(cell, changes):
    result = train_cell(cell, TINY.replace(**changes))
    assert result.status == "diverged", (result.status, result.val_ppl, result.error)
    assert math.isnan(result.val_ppl) and math.isnan(result.test_ppl)
    assert result.state_dict is None and result.error
    text = json.dumps(result.to_json(), allow_nan=False)
    assert json.loads(text)["val_ppl"] is None


def test_same_seed_same_result_other_seed_other_result():
    config = TINY.replace(dropout=0.2)
    a, b = train_cell("LSTM", config), train_cell("LSTM", config)
    assert a.val_ppl == b.val_ppl and a.curve == b.curve
    assert all(a.state_dict[k].equal(b.state_dict[k]) for k in a.state_dict)
    other = train_cell("LSTM", config.replace(seed=1))
    assert other.val_ppl != a.val_ppl


def test_summed_loss_is_the_per_token_mean_times_bptt():
    """Zaremba's lr 1 on the summed loss is lr bptt on the mean (clipping off)."""
    base = TINY.replace(optimizer="sgd", clip=1e9, init_range=0.1)
    summed = train_cell("tanh-RNN", base.replace(loss="sum", lr=0.1))
    mean = train_cell("tanh-RNN", base.replace(loss="mean", lr=0.1 * base.bptt))
    assert summed.val_ppl == pytest.approx(mean.val_ppl, rel=1e-4)


def test_tied_and_untied_models():
    tied = train_cell("tanh-RNN", TINY.replace(budget_tokens=100))
    untied = train_cell("tanh-RNN", TINY.replace(budget_tokens=100, tie_weights=False))
    assert untied.params - tied.params == 16 * 16
    narrow = train_cell("tanh-RNN", TINY.replace(budget_tokens=100, emb=8))
    assert "decoder.weight" in narrow.state_dict and narrow.status == "ok"


def test_init_range_bounds_every_weight_but_layernorm():
    from cellzoo.train import build_model

    config = TINY.replace(init_range=0.05, tie_weights=False)
    model = build_model("Tanh(LayerNorm(Add(MM(x), MM(h))))", 16, config)
    for name, p in model.named_parameters():
        if ".ln." in name:
            assert p.abs().max() in (0.0, 1.0), name
        else:
            assert p.abs().max() <= 0.05, name


def run_interrupted(config, corpus, folder, stop_after_points):
    """Train until `stop_after_points` validation points are checkpointed, then 'kill' it."""
    seen = []

    def interrupt(update):
        if update.val_ppl is not None:
            seen.append(update.tokens)
            if len(seen) == stop_after_points:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(resolve_cell("LSTM"), config, corpus, interrupt, folder).run()
    return seen


def test_resumed_run_equals_uninterrupted(tmp_path):
    config = TINY.replace(budget_tokens=None, epochs=3, eval_interval=480, dropout=0.2,
                          optimizer="sgd", lr=2.0, lr_decay=0.5, decay_after=1)
    whole = Trainer(resolve_cell("LSTM"), config, SMALL_CORPUS).run()
    seen = run_interrupted(config, SMALL_CORPUS, tmp_path, stop_after_points=4)
    assert seen[-1] < whole.tokens_trained
    resumed = Trainer(resolve_cell("LSTM"), config, SMALL_CORPUS, None, tmp_path).run()
    assert resumed.status == whole.status == "ok"
    assert resumed.curve == whole.curve
    assert resumed.val_ppl == whole.val_ppl and resumed.test_ppl == whole.test_ppl
    assert all(resumed.state_dict[k].equal(whole.state_dict[k]) for k in whole.state_dict)
    assert {p["lr"] for p in whole.curve} == {2.0, 1.0, 0.5}


def test_eval_at_records_each_prefix_run_and_changes_nothing_else():
    config = TINY.replace(budget_tokens=None, epochs=3, dropout=0.2, optimizer="sgd", lr=2.0,
                          lr_decay=0.5, decay_after=1)
    plain = Trainer(resolve_cell("LSTM"), config, SMALL_CORPUS).run()
    points = config.replace(eval_at=[2_500, 700])
    assert points.eval_at == (700, 2_500) and points.key() == config.key()
    full = Trainer(resolve_cell("LSTM"), points, SMALL_CORPUS).run()
    assert (full.val_ppl, full.test_ppl) == (plain.val_ppl, plain.test_ppl)
    assert len(full.curve) == len(plain.curve) + 2
    for budget in points.eval_at:
        prefix = Trainer(resolve_cell("LSTM"), config.replace(epochs=None, budget_tokens=budget),
                         SMALL_CORPUS).run()
        at = next(p for p in full.curve if p["tokens"] >= budget)
        assert at["tokens"] == prefix.tokens_trained and at["val_ppl"] == prefix.val_ppl
    with pytest.raises(ValueError, match="eval_at"):
        config.replace(eval_at=[0])


def test_checkpoint_of_another_run_is_refused(tmp_path):
    config = TINY.replace(budget_tokens=400, eval_interval=200)
    assert train_cell("LSTM", config, checkpoint_dir=tmp_path).status == "ok"
    again = train_cell("LSTM", config, checkpoint_dir=tmp_path)  # finished: same result
    assert again.status == "ok" and again.tokens_trained == 400
    with pytest.raises(CheckpointError, match="another run"):
        train_cell("GRU", config, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="another run"):
        train_cell("LSTM", config.replace(seed=3), checkpoint_dir=tmp_path)


def test_an_error_inside_training_is_a_failed_result_and_logged(caplog):
    def broken_display(update):
        raise RuntimeError("the display broke")

    result = train_cell("tanh-RNN", TINY, progress=broken_display)
    assert result.status == "failed" and "RuntimeError: the display broke" in result.error
    assert math.isnan(result.val_ppl) and result.state_dict is None
    assert "Traceback" in caplog.text and "the display broke" in caplog.text
