"""The RL controller: grammar masks, sampling validity, learning, state, reward."""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch

from cellzoo.dsl import (
    OPS,
    SOURCES,
    Limits,
    Node,
    canonical_text,
    is_valid,
    node_count,
    op_counts,
    ops_for,
    parse,
    parse_cell,
)
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.controller import DIVERGED_REWARD, Controller, checkpoint_path
from cellzoo.evolve.grammar import Grammar
from cellzoo.train import TrainConfig, TrainResult

SMALL = Limits(max_depth=8, max_nodes=24)


@cache
def all_trees(max_depth: int, max_nodes: int, widths: tuple[str, ...],
              ops: tuple[str, ...]) -> tuple[Node, ...]:
    """Every well-typed tree within the limits whose root has one of ``widths`` (brute force)."""
    found = [Node(s) for s, w in SOURCES.items() if w in widths]
    if max_depth < 2 or max_nodes < 2:
        return tuple(found)
    for name in ops:
        spec = OPS[name]

        def args(i: int, budget: int, spec=spec):
            if i == spec.arity:
                yield ()
                return
            for child in all_trees(max_depth - 1, budget - (spec.arity - i - 1),
                                   spec.accepts(i), ops):
                for rest in args(i + 1, budget - node_count(child)):
                    yield (child, *rest)

        found.extend(Node(name, kids) for kids in args(0, max_nodes - 1))
    return tuple(found)


def masked_trees(grammar: Grammar) -> set[Node]:
    """Every tree the masks allow (depth-first over all allowed tokens)."""
    found, stack = set(), [[]]
    while stack:
        tokens = stack.pop()
        p = grammar.start()
        for t in tokens:
            grammar.push(p, t)
        if p.done:
            found.add(p.tree())
            continue
        stack.extend(tokens + [t] for t in grammar.mask(p).nonzero().flatten().tolist())
    return found


@pytest.mark.parametrize("limits", [Limits(3, 7), Limits(4, 6)])
def test_masks_allow_exactly_the_valid_cells(limits):
    brute = {t for t in all_trees(limits.max_depth, limits.max_nodes, ("H",), ops_for("core"))
             if is_valid(t, limits)}
    assert len(brute) > 400
    assert masked_trees(Grammar("core", limits)) == brute


def test_trace_follows_library_and_refuses_what_lies_outside():
    grammar = Grammar("core")
    for cell in LIBRARY.values():
        tree = parse_cell(cell.expr)
        features, masks, tokens = grammar.trace(tree)
        assert len(features) == len(masks) == len(tokens) == node_count(tree)
    assert grammar.trace(parse("Sin(Add(MM(x), MM(h)))")) is None  # extended operator
    assert grammar.trace(parse("Tanh(MM(x))")) is None  # no state: invalid
    assert Grammar("core", Limits(3, 4)).trace(parse("Add(MM(x), MM(h))")) is None  # 5 nodes


def test_impossible_limits_are_refused():
    with pytest.raises(ValueError, match="no valid cell fits"):
        Grammar("core", Limits(max_depth=2, max_nodes=80))
    with pytest.raises(ValueError, match="core"):
        Controller(level="fancy")
    with pytest.raises(ValueError, match="neg_log"):
        Controller(reward="ppl", pretrain=False)


@pytest.mark.parametrize("level,limits", [("core", Limits()), ("extended", Limits()),
                                          ("extended", SMALL)])
def test_fresh_samples_are_all_valid(level, limits):
    controller = Controller(level=level, limits=limits, pretrain=False, hidden=16)
    cells = controller.sample(150)
    assert all(is_valid(c, limits) for c in cells)
    allowed = set(ops_for(level)) | set(SOURCES)
    assert all(set(op_counts(c)) <= allowed for c in cells)
    assert len({canonical_text(c) for c in cells}) > 100


@pytest.fixture(scope="module")
def pretrained() -> Controller:
    return Controller(seed=1, hidden=32)


def test_pretraining_makes_library_cells_likely(pretrained):
    fresh = Controller(seed=1, hidden=32, pretrain=False)
    library = [parse_cell(c.expr) for c in LIBRARY.values()]
    assert pretrained.pretrained_on == len(LIBRARY)
    before, after = fresh.log_prob(library), pretrained.log_prob(library)
    assert all(a > b for a, b in zip(after, before, strict=True))
    cells = pretrained.sample(200)
    assert all(is_valid(c) for c in cells)
    known = {canonical_text(t) for t in library}
    assert sum(canonical_text(c) in known for c in cells) > 3  # a fresh policy: ~never


def test_same_seed_same_samples():
    a, b = (Controller(seed=5, pretrain=False, hidden=16) for _ in range(2))
    assert a.sample(20) == b.sample(20)
    assert a.sample(20) != Controller(seed=6, pretrain=False, hidden=16).sample(20)


def test_propose_gives_distinct_cells():
    controller = Controller(pretrain=False, hidden=16)
    cells = controller.propose(30)
    assert len(cells) == 30 == len({canonical_text(c) for c in cells}) == controller.proposed


def test_reinforce_raises_a_known_reward():
    """Reward: the number of Mult nodes; the policy learns to write more of them."""
    controller = Controller(pretrain=False, hidden=32, lr=2e-2, seed=0)
    means = []
    for _ in range(8):
        cells = controller.propose(16)
        means.append(controller.reinforce(cells, [op_counts(c)["Mult"] for c in cells])["reward"])
    assert controller.updates == 8
    assert sum(means[-2:]) / 2 > sum(means[:2]) / 2 + 3.0


def result(status: str, val_ppl: float) -> TrainResult:
    return TrainResult(expr="Tanh(Add(MM(x), MM(h)))", hash="0" * 16, status=status,
                       val_ppl=val_ppl, test_ppl=val_ppl, params=0, tokens_per_s=0.0,
                       seconds=0.0, tokens_trained=0, curve=[], device="cpu", error=None,
                       config=TrainConfig())


def test_rewards_of_train_results():
    neg_log = Controller(pretrain=False, hidden=16)
    r = neg_log.rewards([result("ok", 10.0), result("ok", 20.0), result("ok", 40.0),
                         result("diverged", math.nan)])
    assert r[0] > r[1] > r[2] and r[3] == DIVERGED_REWARD["neg_log"]
    assert abs(sum(r[:3])) < 1e-9  # standardised over the run
    inv_sq = Controller(pretrain=False, hidden=16, reward="inv_sq", reward_c=100.0)
    assert inv_sq.rewards([result("ok", 10.0), result("diverged", math.nan)]) == [1.0, 0.0]


def test_update_learns_from_trained_cells_and_skips_failed_runs():
    controller = Controller(pretrain=False, hidden=16)
    cells = controller.propose(3)
    before = [p.detach().clone() for p in controller.policy.parameters()]
    stats = controller.update([(cells[0], result("ok", 10.0)), (cells[1], result("ok", 30.0)),
                               (cells[2], result("failed", math.nan))])
    assert stats["cells"] == 2 and controller.updates == 1
    assert controller.baseline is not None
    after = list(controller.policy.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


def test_unlock_extended_operators_after_updates():
    controller = Controller(pretrain=False, hidden=16, unlock_after=1)
    assert all(set(op_counts(c)) <= set(ops_for("core")) | set(SOURCES)
               for c in controller.sample(50))
    cells = controller.propose(4)
    controller.reinforce(cells, [1.0, 0.0, 1.0, 0.0])
    assert controller.level == "extended"
    extended = set(ops_for("extended")) - set(ops_for("core"))
    assert any(set(op_counts(c)) & extended for c in controller.sample(100))


def test_state_round_trip_continues_identically(tmp_path):
    a = Controller(pretrain=False, hidden=16, seed=3, unlock_after=5)
    cells = a.propose(6)
    a.reinforce(cells, list(range(6)))
    path = checkpoint_path(tmp_path)
    a.save(path)
    b = Controller.load(path)
    assert (b.updates, b.baseline, b.level, b.config) == (a.updates, a.baseline, a.level, a.config)
    cells_a, cells_b = a.propose(6), b.propose(6)
    assert cells_a == cells_b
    a.reinforce(cells_a, list(range(6)))
    b.reinforce(cells_b, list(range(6)))
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.allclose(pa, pb)
    assert a.sample(5) == b.sample(5)
