"""The fidelity ladder: rung budgets and configurations, exact promotion, ASHA's rule."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from cellzoo.evolve.config import FIELDS, SearchConfig
from cellzoo.evolve.ladder import (
    DEFAULT_RUNG0_TOKENS,
    Asha,
    Ladder,
    prune_rungs,
    rung_dir,
    train_rung,
)
from cellzoo.train import TrainConfig, train_cell
from cellzoo.train.config import PRESETS
from cellzoo.train.corpus import load_corpus
from cellzoo.train.loop import epoch_tokens

SYNTH = load_corpus("synthetic")


def test_zaremba_small_default_ladder_has_five_rungs_from_about_a_cpu_minute(shared_data):
    ladder = Ladder("zaremba-small")
    ptb = load_corpus("ptb", shared_data)
    assert ladder.full_tokens(ptb) == 13 * 929_560
    assert ladder.budgets(ptb) == [149_188, 447_565, 1_342_697, 4_028_093, 12_084_280]
    assert Ladder("zaremba-small", rungs=5).budgets(ptb) == ladder.budgets(ptb)


def test_rung_configs_share_the_recipe_and_the_top_rung_is_the_preset():
    ladder = Ladder("synthetic-small", rungs=3)
    preset = TrainConfig.preset("synthetic-small")
    configs = ladder.configs("LSTM", SYNTH)
    assert [c.budget_tokens for c in configs] == [26_659, 79_978, None]
    assert [c.schedule_tokens for c in configs] == [239_936, 239_936, None]  # the full run's
    compressed = Ladder("synthetic-small", rungs=3, schedule="compressed").configs("LSTM", SYNTH)
    assert [c.schedule_tokens for c in compressed] == [26_659, 79_978, None]
    assert compressed[-1] == configs[-1]
    assert configs[-1] == preset and configs[-1].key() == preset.key()
    same = {k: v for k, v in preset.to_dict().items()
            if k not in ("budget_tokens", "schedule_tokens")}
    assert all({k: c.to_dict()[k] for k in same} == same for c in configs)
    gru = ladder.configs("GRU", SYNTH, lr=0.5, seed=3)
    assert {(c.hidden, c.lr, c.seed) for c in gru} == {(ladder.width("GRU", SYNTH), 0.5, 3)}
    assert 32 < ladder.width("GRU", SYNTH) < ladder.width("tanh-RNN", SYNTH)  # fewer weights


@pytest.mark.parametrize("fields, message", [
    ({"eta": 1}, "eta must be an integer of at least 2"),
    ({"rungs": 12}, "rungs do not grow"),
    ({"top_tokens": 10**9}, "top rung .* exceeds the preset"),
    ({"rung0_tokens": 10**6}, "rung 0 .* exceeds its top rung"),
    ({"rungs": 2, "rung0_tokens": 1000}, "not both"),
    ({"preset": "huge"}, "unknown preset"),
])
def test_bad_ladders_are_value_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        Ladder(**{"preset": "synthetic-small", **fields}).budgets(SYNTH)


def test_rung0_tokens_picks_the_nearest_rung_count_and_top_tokens_shortens():
    assert len(Ladder("synthetic-small", rung0_tokens=9_000).budgets(SYNTH)) == 4
    short = Ladder("synthetic-small", rungs=2, top_tokens=30_000)
    assert short.budgets(SYNTH) == [10_000, 30_000]
    assert short.configs("LSTM", SYNTH)[-1].schedule_tokens == 239_936
    short = Ladder("synthetic-small", rungs=2, top_tokens=30_000, schedule="compressed")
    assert short.configs("LSTM", SYNTH)[-1].schedule_tokens == 30_000


def test_promotion_continues_exactly_and_the_top_rung_is_the_preset_run(tmp_path):
    # 26,659, 79,978 and 239,936 tokens, each rung decaying early
    ladder = Ladder("synthetic-small", rungs=3, schedule="compressed")
    results, first_tokens = [], []
    for rung in range(3):
        tokens = []
        results.append(train_rung("LSTM", ladder, rung, None, 0, tmp_path,
                                  progress=lambda update, seen=tokens: seen.append(update.tokens)))
        first_tokens.append(tokens[0])
    assert [r.status for r in results] == ["ok"] * 3
    assert results[0].val_ppl > results[1].val_ppl > results[2].val_ppl  # rising to the full run
    # each promotion started at the rung below's branch (its decay onset: 2 of 4 "epochs")
    assert first_tokens[1] > 26_659 / 2 and first_tokens[2] > 79_978 / 2
    top, alone = results[2], train_cell("LSTM", TrainConfig.preset("synthetic-small"))
    assert (top.val_ppl, top.test_ppl, top.curve) == (alone.val_ppl, alone.test_ppl, alone.curve)
    assert top.config.key() == alone.config.key()
    again = train_rung("LSTM", ladder, 2, None, 0, tmp_path)  # finished: read back
    assert (again.val_ppl, again.test_ppl) == (top.val_ppl, top.test_ppl)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"rung{k}-lr1.0" for k in range(3)]
    assert rung_dir(tmp_path, 1, 1.0) == tmp_path / "rung1-lr1.0"


def test_a_prefix_rung_past_the_decay_onset_promotes_to_the_full_run(tmp_path, monkeypatch):
    """zaremba-small decays after 4 of 13 epochs, so its rung 3 (a third of the run) takes
    decayed steps: its branch checkpoint is at the onset, and the top rung continues there.
    The same here: decay after 1 of 4 epochs, rung 1 at a third of the run."""
    early = TrainConfig.preset("synthetic-small", decay_after=1)
    monkeypatch.setitem(PRESETS, "synthetic-early-decay", early)
    ladder = Ladder("synthetic-early-decay", rungs=3)
    tokens: list[int] = []
    below = train_rung("LSTM", ladder, 1, None, 0, tmp_path)
    assert {e["lr"] for e in below.curve} == {1.0, 0.5}  # past the onset
    top = train_rung("LSTM", ladder, 2, None, 0, tmp_path,
                     progress=lambda update: tokens.append(update.tokens))
    full = train_cell("LSTM", early)
    assert top.status == "ok", top.error
    assert (top.val_ppl, top.test_ppl, top.curve) == (full.val_ppl, full.test_ppl, full.curve)
    assert tokens[0] > epoch_tokens(SYNTH, early)  # continued from the onset, not from 0


def test_pruning_keeps_the_branch_a_promotion_needs_and_the_run_under_way(tmp_path):
    for rung, lr in ((0, 1.0), (0, 0.5), (0, 0.25), (1, 0.5), (2, 0.5)):
        folder = rung_dir(tmp_path, rung, lr)
        folder.mkdir()
        for name in ("checkpoint.pt", "branch.pt"):
            (folder / name).write_bytes(b"x")
    prune_rungs(tmp_path, 1, 0.5)  # recorded at rung 1, rung 2 under way
    kept = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.pt"))
    assert kept == ["rung1-lr0.5/branch.pt", "rung2-lr0.5/branch.pt", "rung2-lr0.5/checkpoint.pt"]
    prune_rungs(tmp_path, 0, None)  # a cell that ran at no rate keeps nothing
    assert list(tmp_path.iterdir()) == []


def test_train_rung_refuses_a_rung_off_the_ladder(tmp_path):
    with pytest.raises(ValueError, match="rung 3 is not on the ladder"):
        train_rung("LSTM", Ladder("synthetic-small", rungs=3), 3, None, 0, tmp_path)


def test_asha_promotes_the_best_third_from_the_highest_rung_first():
    asha = Asha(eta=3, rungs=3)
    for cell, value in [("a", 10.0), ("b", 5.0), ("c", math.nan)]:
        asha.record(0, cell, value)
    assert asha.promotable(0) == ["b"]
    assert asha.next_promotion() == ("b", 1) and asha.next_promotion() is None
    for cell, value in [("d", 4.0), ("e", None), ("f", 6.0)]:
        asha.record(0, cell, value)
    assert asha.promotable(0) == ["d"]  # best 2 of 6: d and b; b went up already
    asha.record(1, "b", 3.0)
    asha.record(1, "d", 2.0)
    asha.record(1, "x", 9.0)
    assert asha.next_promotion() == ("d", 2)  # rung 1 before rung 0
    assert asha.next_promotion() is None  # d is on rung 1 already
    asha.record(2, "d", 1.0)
    assert asha.next_promotion() is None  # nothing is promoted from the top rung


def test_asha_never_promotes_a_diverged_cell():
    asha = Asha(eta=2, rungs=2)
    asha.record(0, "a", None)
    asha.record(0, "b", math.inf)
    assert asha.next_promotion() is None


def test_asha_state_is_plain_json_and_refuses_another_ladder():
    asha = Asha(eta=3, rungs=3)
    for i, value in enumerate([3.0, 1.0, None, 2.0, 7.0, 5.0]):
        asha.record(0, f"c{i}", value)
    asha.next_promotion()
    state = json.loads(json.dumps(asha.state_dict(), allow_nan=False))
    copy = Asha(eta=3, rungs=3)
    copy.load_state_dict(state)
    assert copy.state_dict() == asha.state_dict()
    assert copy.next_promotion() == asha.next_promotion() == ("c3", 1)
    with pytest.raises(ValueError, match="another ladder"):
        Asha(eta=2, rungs=3).load_state_dict(state)


def test_the_shipped_ptb_ladder_config_is_todays_settings_plus_a_ladder():
    path = Path(__file__).resolve().parents[1] / "configs" / "ptb-ladder.toml"
    settings = tomllib.loads(path.read_text())
    table = settings.pop("ladder")
    assert SearchConfig.from_dict(settings).task == "ptb" and set(settings) <= FIELDS
    scales = table.pop("probe")
    assert scales == [1.0, 0.5, 0.25, 0.125]
    assert Ladder(**table) == Ladder("zaremba-small", rung0_tokens=DEFAULT_RUNG0_TOKENS)


def test_prefix_rungs_are_the_first_tokens_of_the_full_run(tmp_path):
    ladder = Ladder("synthetic-small", rungs=3)  # the default schedule
    assert ladder.schedule == "prefix"
    corpus = load_corpus("synthetic")
    configs = ladder.configs("LSTM", corpus)
    assert configs[-1] == Ladder("synthetic-small", rungs=3).configs("LSTM", corpus)[-1]
    results = [train_rung("LSTM", ladder, rung, None, 0, tmp_path) for rung in range(3)]
    # a prefix rung is a budget run of the preset (the full run's schedule, cut short) ...
    alone = train_cell("LSTM", TrainConfig.preset("synthetic-small", budget_tokens=79_978))
    assert (results[1].val_ppl, results[1].test_ppl) == (alone.val_ppl, alone.test_ppl)
    assert {e["lr"] for e in results[1].curve} == {1.0}  # before the full run's decay onset
    # ... and each promotion continued the rung below at its end, to the full run's result
    full = train_cell("LSTM", TrainConfig.preset("synthetic-small"))
    assert (results[2].val_ppl, results[2].test_ppl) == (full.val_ppl, full.test_ppl)
    with pytest.raises(ValueError, match="schedule must be one of prefix, compressed"):
        Ladder("synthetic-small", schedule="cosine")
