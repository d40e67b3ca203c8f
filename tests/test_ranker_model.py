"""The ranker's graphs, batched TreeRNN, training contract, persistence and reproducibility."""

import math
import random

import numpy as np
import pytest
import torch

from cellzoo.dsl import Node, parse, preorder
from cellzoo.ranker.fit import Ranker, RankerConfig
from cellzoo.ranker.graph import CellGraph, graph_from_node, pack, plan
from cellzoo.ranker.metrics import divergence_auc, rank_metrics
from cellzoo.ranker.model import ModelConfig, TreeRNN
from cellzoo.ranker.random_cells import random_dag, random_tree

LSTM = ("Mult(Sigmoid(Add(MM(x), MM(h))), Tanh(Mem(Add(Mult(Sigmoid(Add(MM(x), MM(h))), c), "
        "Mult(Sigmoid(Add(MM(x), MM(h))), Tanh(Add(MM(x), MM(h))))))))")


def _cells(n, seed=0, depth=6):
    rng = random.Random(seed)
    return [random_tree(rng, depth) for _ in range(n)]


def test_graph_from_tree_keeps_every_occurrence():
    g = graph_from_node(parse(LSTM))
    assert len(g.ops) == sum(1 for _ in preorder(parse(LSTM)))
    assert g.ops[-1] == "Mult" and g.ops.count("MM") == 8


def test_graph_from_node_shares_a_reused_object():
    shared = Node("MM", (Node("x"),))
    dag = graph_from_node(Node("Add", (shared, Node("Tanh", (shared,)))))
    assert dag.ops == ("x", "MM", "Tanh", "Add")
    assert dag.kids[-1] == (1, 2)


def test_cell_graph_rejects_bad_structure():
    with pytest.raises(ValueError, match="takes 2 children"):
        CellGraph(("x", "Add"), ((), (0,)))
    with pytest.raises(ValueError, match="earlier"):
        CellGraph(("x", "Tanh"), ((), (1,)))
    with pytest.raises(ValueError, match="unknown node type"):
        CellGraph(("y",), ((),))


@pytest.mark.parametrize("kind", ["trees", "dags"])
def test_batched_forward_equals_node_by_node_reference(kind):
    torch.manual_seed(0)
    model = TreeRNN(ModelConfig(dim=8, targets=("a", "b"), members=2))
    rng = random.Random(1)
    cells = ([random_tree(rng, 7) for _ in range(25)] if kind == "trees"
             else [random_dag(rng, rng.randint(3, 20)) for _ in range(25)])
    heads = torch.tensor([i % 2 for i in range(25)])
    reg, div = model(plan(pack(cells)), heads)
    for i, cell in enumerate(cells):
        graph = cell if isinstance(cell, CellGraph) else graph_from_node(cell)
        r, d = model.forward_reference(graph, i % 2)
        assert torch.allclose(reg[:, i], r, atol=1e-5)
        assert torch.allclose(div[:, i], d, atol=1e-5)
    assert not torch.allclose(reg[0], reg[1])  # the members differ


def test_batched_gradients_equal_reference_gradients():
    torch.manual_seed(0)
    model = TreeRNN(ModelConfig(dim=6, targets=("a",), members=2))
    cells = [random_dag(random.Random(s), 10) for s in range(6)]
    reg, div = model(plan(pack(cells)), torch.zeros(6, dtype=torch.long))
    (reg.sum() + div.sum()).backward()
    batched = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    sum(sum(model.forward_reference(c)).sum() for c in cells).backward()
    for k, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(batched[k], p.grad, atol=1e-5), k


def test_pack_take_matches_packing_the_subset():
    cells = _cells(12)
    sub = pack(cells).take(np.array([5, 0, 7]))
    direct = pack([cells[5], cells[0], cells[7]])
    for field in ("op", "kids", "level", "ptr"):
        assert np.array_equal(getattr(sub, field), getattr(direct, field))


def _synthetic_runs(n, seed=0):
    """Targets the structure decides: ppl grows with Tanh count, falls with Sigmoid count;
    cells with a Div diverge."""
    runs = []
    for cell in _cells(n, seed, depth=5):
        ops = [m.op for m in preorder(cell)]
        if "Div" in ops:
            runs.append((cell, math.nan, "diverged"))
            continue
        runs.append((cell, math.exp(4 + 0.5 * ops.count("Tanh") - 0.3 * ops.count("Sigmoid")),
                     "ok"))
    return runs


def _tau(ranker, runs):
    done = [(c, p) for c, p, s in runs if s == "ok"]
    scores = ranker.score([c for c, _ in done])
    return rank_metrics(-scores, np.log([p for _, p in done]))["tau"]


SMALL = RankerConfig(dim=16, epochs=20, batch_size=64, patience=20, seed=3)


def test_fit_improves_ranking_over_an_untrained_model():
    train, test = _synthetic_runs(240, seed=0), _synthetic_runs(120, seed=1)
    untrained = _tau(_cold(), test)
    ranker = Ranker(SMALL).fit(train)
    trained = _tau(ranker, test)
    assert trained > 0.3 and trained > untrained + 0.2
    log_ppl, p_div = ranker.predict([c for c, _, _ in test])
    diverged = np.array([s == "diverged" for _, _, s in test])
    assert divergence_auc(p_div, diverged) > 0.7
    assert log_ppl.shape == (len(test),)


def test_warm_refit_continues_from_current_weights():
    runs = _synthetic_runs(120)
    ranker = Ranker(SMALL).fit(runs, epochs=3)
    before = ranker.state_dict()["model"]["nets.0.heads.0.weight"].clone()
    ranker.fit(runs, epochs=2, warm=True)
    assert len(ranker.history) == 5
    assert not torch.equal(before, ranker.state_dict()["model"]["nets.0.heads.0.weight"])


def test_fit_accepts_run_records_and_skips_failed():
    class Run:
        def __init__(self, expr, status, val_ppl, task):
            self.expr, self.status, self.val_ppl, self.task = expr, status, val_ppl, task

    runs = [Run(str(c), s, p, "synthetic") for c, p, s in _synthetic_runs(40)]
    runs.append(Run("Tanh(Add(MM(x), MM(h)))", "failed", math.nan, "synthetic"))
    ranker = Ranker(SMALL).fit(runs, epochs=2)
    assert list(ranker.task_stats) == ["synthetic"]
    with pytest.raises(ValueError, match="not trained on task 'ptb'"):
        ranker.predict(["Tanh(Add(MM(x), MM(h)))"], task="ptb")
    with pytest.raises(ValueError, match="unknown run status"):
        Ranker(SMALL).fit([("Tanh(Add(MM(x), MM(h)))", 3.0, "done")])


def test_save_load_round_trip(tmp_path):
    runs = _synthetic_runs(60)
    ranker = Ranker(SMALL).fit(runs, epochs=2)
    path = tmp_path / "r.pt"
    ranker.save(path)
    loaded = Ranker.load(path)
    cells = [c for c, _, _ in runs]
    assert np.array_equal(ranker.score(cells), loaded.score(cells))
    assert loaded.config == ranker.config and loaded.task_stats == ranker.task_stats
    state = ranker.state_dict()
    other = Ranker()
    other.load_state_dict(state)
    assert np.array_equal(other.predict(cells)[0], ranker.predict(cells)[0])


def test_same_seed_same_ranker_and_the_global_rng_is_untouched():
    runs = _synthetic_runs(80)
    torch.manual_seed(123)
    a = Ranker(SMALL).fit(runs, epochs=3)
    after = torch.rand(1)
    torch.manual_seed(123)
    b = Ranker(SMALL).fit(runs, epochs=3)
    assert torch.equal(after, torch.rand(1))
    cells = [c for c, _, _ in runs]
    assert np.array_equal(a.score(cells), b.score(cells))
    c = Ranker(RankerConfig(**{**SMALL.to_dict(), "seed": 4})).fit(runs, epochs=3)
    assert not np.array_equal(a.score(cells), c.score(cells))


def _cold() -> Ranker:
    ranker = Ranker(SMALL)
    ranker.adopt("default")
    return ranker


def test_score_prefers_predicted_better_and_safer_cells():
    ranker = _cold()
    cells = _cells(20)
    z, p = ranker._raw(pack(cells), 0)
    assert np.allclose(ranker.score(cells), -z - SMALL.div_penalty * p)


def test_metrics_are_nan_not_errors_when_undefined():
    assert math.isnan(rank_metrics(np.ones(5), np.arange(5))["tau"])
    assert math.isnan(rank_metrics(np.array([1.0]), np.array([2.0]))["rho"])
    assert math.isnan(divergence_auc(np.arange(4), np.zeros(4)))
    assert rank_metrics(np.array([1, 2, np.nan, 4]), np.array([1, 2, 3, 4]))["tau"] == 1.0
