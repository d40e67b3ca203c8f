"""The NAS-Bench-NLP prior (pre-training, loading, fine-tuning, errors) and saved rankers that
outlive changes to the operator table."""

import math
import random

import numpy as np
import pytest
import torch

from cellzoo.dsl import parse, preorder
from cellzoo.ranker.evaluate import nbnlp_examples
from cellzoo.ranker.fit import Ranker, RankerConfig
from cellzoo.ranker.graph import pack, plan
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.nbnlp import TARGETS, load_runs, recipe_to_graph
from cellzoo.ranker.prior import (
    DEFAULT_PRIOR,
    PTB_TARGET,
    PriorError,
    build_prior,
    from_prior,
    read_prior,
)
from cellzoo.ranker.random_cells import random_tree

SMALL = RankerConfig(dim=16, epochs=15, patience=15, batch_size=64, seed=1)


@pytest.fixture(scope="module")
def nb_slice(nbnlp_data):
    """The first 700 real PTB runs: 500 to pre-train on, 200 held out."""
    data, log_test = nbnlp_examples(load_runs(nbnlp_data, limit=700))
    return data.take(np.arange(500)), data.take(np.arange(500, 700)), log_test[500:]


def _tau(ranker, held_out, log_test, task=PTB_TARGET):
    return rank_metrics(-ranker.score(held_out.packed, task=task), log_test)["tau"]


def test_pretrained_ranker_ranks_held_out_cells_better_than_an_untrained_one(nb_slice, tmp_path):
    train, held_out, log_test = nb_slice
    path = tmp_path / "prior.pt"
    build_prior(train, config=SMALL).save(path, with_prior=False)
    pretrained = from_prior(path, task=PTB_TARGET)
    untrained = from_prior(None, task=PTB_TARGET)
    assert pretrained.pretrained and not untrained.pretrained
    tau, cold = _tau(pretrained, held_out, log_test), _tau(untrained, held_out, log_test)
    assert tau > 0.3 and tau > cold + 0.2, (tau, cold)


def test_new_task_starts_from_the_prior_head_and_fine_tunes_from_the_prior(nb_slice, nbnlp_data,
                                                                          tmp_path):
    train, held_out, log_test = nb_slice
    path = tmp_path / "prior.pt"
    build_prior(train, config=SMALL).save(path, with_prior=False)
    ranker = from_prior(path, task="ptb")
    assert np.allclose(ranker.score(held_out.packed), ranker.score(held_out.packed, PTB_TARGET))
    prior = {k: v.clone() for k, v in ranker.prior["model"].items()}
    runs = [(recipe_to_graph(r.recipe), r.val_ppl, "ok" if r.finished else "diverged", "ptb")
            for r in load_runs(nbnlp_data, limit=1040)[1000:]]
    first = ranker.fit(runs, epochs=3).score(held_out.packed)
    again = ranker.fit(runs, epochs=3).score(held_out.packed)
    assert np.array_equal(first, again)  # each fit restarts from the prior
    assert all(torch.equal(v, ranker.prior["model"][k]) for k, v in prior.items())
    rungs = ranker.fit([(c, p, s, "ptb", 0) for c, p, s, _ in runs], epochs=2)
    assert "ptb@rung0" in rungs.model.targets and rungs.target("ptb") == "ptb@rung0"


def test_shipped_prior_loads_by_default_and_knows_the_reference_cells():
    ranker = from_prior(DEFAULT_PRIOR, task="ptb")
    assert ranker.pretrained and set(TARGETS.values()) <= set(ranker.model.targets)
    assert DEFAULT_PRIOR.stat().st_size < 2_000_000
    lstm, rnn = "lstm", "tanh-RNN"
    from cellzoo.dsl.library import LIBRARY

    scores = ranker.score([parse(LIBRARY[n].expr) for n in ("LSTM", rnn)])
    assert scores[0] > scores[1], (lstm, scores)


def test_missing_or_damaged_prior_is_a_clear_error(tmp_path):
    with pytest.raises(PriorError, match=r"no\.pt does not exist.*--ranker-prior none"):
        from_prior(tmp_path / "no.pt", task="ptb")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(DEFAULT_PRIOR.read_bytes()[:5000])
    with pytest.raises(PriorError, match=r"bad\.pt is damaged.*--ranker-prior none"):
        read_prior(bad)


# --- saved rankers and the operator table -------------------------------------------------

def _fitted(seed=0):
    rng = random.Random(seed)
    cells = [random_tree(rng, 5) for _ in range(60)]
    runs = [(c, math.exp(4 + 0.3 * sum(n.op == "Tanh" for n in preorder(c))), "ok", "t")
            for c in cells]
    return Ranker(RankerConfig(dim=8, epochs=3, seed=seed)).fit(runs), cells


def _uses(cell, names):
    return any(n.op in names for n in preorder(cell))


def test_a_ranker_saved_before_an_operator_was_added_loads_and_scores_the_same(tmp_path):
    ranker, cells = _fitted()
    state = ranker.state_dict()
    # what a file written before `Sin` and `x_prev` existed holds: no weights for them
    state["model"] = {k: v for k, v in state["model"].items()
                      if not k.startswith(("nets.0.fns.Sin.", "nets.0.source.x_prev"))}
    state["model_config"]["vocab"].remove("Sin")
    torch.save(state, tmp_path / "old.pt")
    loaded = Ranker()
    assert loaded.load_state_dict(torch.load(tmp_path / "old.pt", weights_only=True)) == [
        "Sin", "x_prev"]
    old_cells = [c for c in cells if not _uses(c, {"Sin", "x_prev"})]
    assert len(old_cells) > 10
    assert np.array_equal(loaded.score(old_cells), ranker.score(old_cells))
    # and a newer file's node types that this cellzoo lacks are named
    state["model"]["nets.0.fns.Warp.lin.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="node types this cellzoo lacks: Warp"):
        Ranker().load_state_dict(state)


def test_initial_weights_depend_on_the_name_not_the_table_order():
    a, b = Ranker(RankerConfig(dim=8, seed=3)), Ranker(RankerConfig(dim=8, seed=3))
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    c = Ranker(RankerConfig(dim=8, seed=4))
    assert not torch.equal(a.model.nets[0].fns["Tanh"].lin.weight,
                           c.model.nets[0].fns["Tanh"].lin.weight)


def test_format_1_rankers_are_converted(tmp_path):
    """Format 1 kept source vectors as rows of one table in its own vocabulary order and
    one shared head; here the rows are written in a shuffled order."""
    ranker, cells = _fitted(seed=1)
    model = {k.removeprefix("nets.0."): v for k, v in ranker.state_dict()["model"].items()}
    vocab = ["c", "h", "x_prev", "x", "h2", *ranker.model.nets[0].fns]
    table = torch.zeros(len(vocab), 8)
    for i, name in enumerate(vocab[:5]):
        table[i] = model[f"source.{name}"]
    old = {k: v for k, v in model.items() if k.startswith("fns.")}
    old |= {"source.weight": table, "reg_head.weight": model["heads.0.weight"][:1],
            "reg_head.bias": model["heads.0.bias"][:1],
            "div_head.weight": model["heads.0.weight"][1:],
            "div_head.bias": model["heads.0.bias"][1:]}
    state = {"format": 1, "config": ranker.config.to_dict(), "model": old,
             "model_config": {"dim": 8, "vocab": vocab},
             "task_stats": {"t": list(ranker.task_stats["t"])}, "epochs_trained": 3}
    loaded = Ranker()
    loaded.load_state_dict(state)
    assert np.allclose(loaded.score(cells), ranker.score(cells))
    assert loaded.target() == "t"


def test_format_2_rankers_are_converted():
    """Format 2 held one network with unprefixed keys: it loads as a one-member ensemble."""
    ranker, cells = _fitted(seed=2)
    state = ranker.state_dict()
    state |= {"format": 2,
              "model": {k.removeprefix("nets.0."): v for k, v in state["model"].items()},
              "model_config": {k: v for k, v in state["model_config"].items() if k != "members"}}
    loaded = Ranker()
    loaded.load_state_dict(state)
    assert len(loaded.model.nets) == 1
    assert np.array_equal(loaded.score(cells), ranker.score(cells))


def test_members_are_averaged_and_differ():
    ranker = Ranker(RankerConfig(dim=8, epochs=3, seed=0, members=3))
    _, cells = _fitted()
    runs = [(c, float(np.exp(4 + 0.1 * i)), "ok") for i, c in enumerate(cells)]
    ranker.fit(runs)
    z, _ = ranker._raw(pack(cells), 0)
    preds, _ = ranker.model(plan(pack(cells)), torch.zeros(len(cells), dtype=torch.long))
    assert np.allclose(z, preds.mean(dim=0).detach().numpy(), atol=1e-6)
    assert not torch.allclose(preds[0], preds[1])
