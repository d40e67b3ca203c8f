"""Compressed learning-rate schedules (`schedule_tokens`) and branch checkpoints."""

from __future__ import annotations

import pytest

from cellzoo.dsl.library import resolve_cell
from cellzoo.train import CheckpointError, TrainConfig, TrainResult
from cellzoo.train.checkpoint import BRANCH_NAME, load_checkpoint
from cellzoo.train.corpus import SyntheticSpec, synthetic_corpus
from cellzoo.train.loop import Trainer

CORPUS = synthetic_corpus(SyntheticSpec(sizes=(2_000, 400, 400)))
#: 13 "epochs" compressed into 1,300 tokens (one epoch of the data is 1,980 tokens)
SCHEDULED = TrainConfig(task="synthetic", hidden=8, batch_size=10, bptt=5, lr=1.0,
                        optimizer="sgd", epochs=13, lr_decay=0.5, decay_after=4,
                        budget_tokens=1_300, schedule_tokens=1_300, device="cpu")


def test_keys_of_configs_without_a_schedule_are_unchanged():
    # the keys stored in zoos and checkpoints before schedule_tokens existed
    assert TrainConfig.preset("zaremba-small").key() == "c4805bafaadfcc23"
    assert TrainConfig.proxy("ptb").key() == "346f70994bca111a"
    assert TrainConfig().key() == "9e6b5cbc097ed625"
    assert SCHEDULED.key() != SCHEDULED.replace(schedule_tokens=2_600).key()


def test_a_schedule_needs_epochs():
    with pytest.raises(ValueError, match="schedule_tokens compresses the epoch schedule"):
        TrainConfig(epochs=None, budget_tokens=100, schedule_tokens=100)
    with pytest.raises(ValueError, match="schedule_tokens must be at least 1"):
        SCHEDULED.replace(schedule_tokens=0)


def train(config: TrainConfig, cell: str = "tanh-RNN", **kwargs) -> TrainResult:
    return Trainer(resolve_cell(cell), config, CORPUS, **kwargs).run()


def run_rates(config: TrainConfig, **kwargs) -> list[tuple[int, float]]:
    """(tokens after the step, its learning rate) of every step of a run."""
    seen = []

    def record(update):
        seen.append((update.tokens, update.lr))

    assert train(config, progress=record, **kwargs).status == "ok"
    return seen


def test_the_rate_at_token_t_is_the_compressed_epochs_rate():
    steps = run_rates(SCHEDULED)
    assert steps[-2][0] < 1_300 <= steps[-1][0]
    for (tokens, _), (_, lr) in zip([(0, None)] + steps, steps, strict=False):
        epoch = tokens * 13 // 1_300 + 1
        assert lr == 0.5 ** max(epoch - 4, 0)
    assert {lr for _, lr in steps} == {0.5 ** k for k in range(10)}


def test_without_a_schedule_the_rate_changes_per_epoch_of_the_data():
    config = SCHEDULED.replace(schedule_tokens=None, budget_tokens=None, epochs=3,
                               decay_after=1)
    rates = [lr for _, lr in run_rates(config)]
    per_epoch = len(rates) // 3
    assert rates == [1.0] * per_epoch + [0.5] * per_epoch + [0.25] * per_epoch


def test_a_scheduled_run_branches_before_its_first_decayed_step(tmp_path):
    result = train(SCHEDULED, checkpoint_dir=tmp_path)
    branch = load_checkpoint(tmp_path, BRANCH_NAME)
    # 4 of 13 compressed epochs at the full rate: 400 tokens, 8 steps of 50
    assert branch["position"]["tokens"] == 400 and not branch["position"]["branched"]
    assert branch["config_key"] == SCHEDULED.key() and result.status == "ok"


def test_a_longer_run_continued_from_the_branch_equals_it_from_scratch(tmp_path):
    longer = SCHEDULED.replace(budget_tokens=3_900, schedule_tokens=3_900)
    train(SCHEDULED, checkpoint_dir=tmp_path / "short")
    rates = run_rates(longer, checkpoint_dir=tmp_path / "long", branch_dir=tmp_path / "short")
    assert rates[0] == (450, 1.0)  # the shared prefix (400 tokens) is skipped
    continued = train(longer, checkpoint_dir=tmp_path / "long")  # finished: read back
    scratch = train(longer)
    assert continued.val_ppl == scratch.val_ppl and continued.test_ppl == scratch.test_ppl
    assert continued.curve == scratch.curve
    assert all(continued.state_dict[k].equal(v) for k, v in scratch.state_dict.items())
    # its seconds count the branch run's share, which its cost leaves out
    shared = load_checkpoint(tmp_path / "short", BRANCH_NAME)["position"]["elapsed"]
    assert continued.branch_seconds == shared > 0 and scratch.branch_seconds == 0
    assert continued.cost_seconds == continued.seconds - shared > 0


@pytest.mark.parametrize("cell, changes, message", [
    ("GRU", {"budget_tokens": 3_900, "schedule_tokens": 3_900}, "another cell or recipe"),
    ("tanh-RNN", {"budget_tokens": 3_900, "schedule_tokens": 3_900, "lr": 0.5},
     "differing in \\['lr'\\]"),
    ("tanh-RNN", {"budget_tokens": 650, "schedule_tokens": 650}, "past this run's decay onset"),
])
def test_a_branch_of_another_recipe_is_refused(tmp_path, cell, changes, message):
    train(SCHEDULED, checkpoint_dir=tmp_path / "short")
    with pytest.raises(CheckpointError, match=message):
        Trainer(resolve_cell(cell), SCHEDULED.replace(**changes), CORPUS,
                checkpoint_dir=tmp_path / "other", branch_dir=tmp_path / "short").run()
