"""The DEAP primitive set, exact conversion, typed generation and repair."""

import random

import pytest
from deap import gp

from cellzoo.dsl import (
    CORE_OPS,
    EXTENDED_OPS,
    Limits,
    depth,
    is_valid,
    node_count,
    parse,
    parse_cell,
    to_prefix,
    to_text,
)
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.generate import gen_full, gen_grow, gen_half_and_half
from cellzoo.evolve.gp import (
    VARIANTS,
    WidthE,
    WidthH,
    dsl_name,
    make_pset,
    to_individual,
    to_node,
)
from cellzoo.evolve.repair import repair
from cellzoo.evolve.variation import Variation


@pytest.fixture(scope="module", params=["core", "extended"])
def pset(request):
    return make_pset(request.param)


def _raw_trees(pset, n, seed=0, **kwargs):
    """Typed trees straight from the generator (typed, not necessarily valid cells)."""
    rng = random.Random(seed)
    return [to_node(gp.PrimitiveTree(gen_half_and_half(pset, 0, 6, rng=rng, **kwargs)))
            for _ in range(n)]


def test_pset_has_typed_variants_for_mm_and_one_name_per_other_operator():
    core, extended = make_pset("core"), make_pset("extended")
    assert {dsl_name(p.name) for ps in core.primitives.values() for p in ps} == set(CORE_OPS)
    assert {dsl_name(p.name) for ps in extended.primitives.values() for p in ps} \
        == set(EXTENDED_OPS)
    mm = sorted(name for name, (op, _) in VARIANTS.items() if op == "MM")
    assert mm == ["MM_E", "MM_H"]
    assert core.mapping["MM_E"].args == [WidthE] and core.mapping["MM_H"].args == [WidthH]
    assert [t.name for t in core.terminals[WidthE]] == ["x", "x_prev"]
    assert [t.name for t in core.terminals[WidthH]] == ["h", "c"]
    assert core.primitives[WidthE] == []  # the trap below
    with pytest.raises(ValueError, match="unknown operator level"):
        make_pset("exotic")


def test_stock_deap_generation_raises_index_error_and_ours_does_not(pset):
    random.seed(0)
    with pytest.raises(IndexError):
        for _ in range(200):
            gp.genFull(pset, 3, 3)
    rng = random.Random(0)
    for _ in range(300):
        for method in (gen_full, gen_grow):
            tree = to_node(gp.PrimitiveTree(method(pset, 3, 3, rng=rng)))
            assert parse(to_text(tree)) == tree  # widths right
            assert depth(tree) <= 4


def test_generation_respects_node_and_level_budgets(pset):
    for tree in _raw_trees(pset, 500, max_nodes=9, max_levels=4):
        assert node_count(tree) <= 9 and depth(tree) <= 4
        assert tree.width == "H"


def test_exclude_keeps_names_out(pset):
    for tree in _raw_trees(pset, 300, exclude=("c", "Mem", "Gate3")):
        assert not {"c", "Mem", "Gate3"} & set(to_prefix(tree))


def test_round_trip_is_exact_on_library_and_random_trees(pset):
    trees = [parse_cell(cell.expr) for cell in LIBRARY.values()] + _raw_trees(pset, 500, 1)
    for tree in trees:
        ind = to_individual(tree, pset)
        assert to_node(ind) == tree
        assert to_individual(to_node(ind), pset) == ind
        assert len(ind) == node_count(tree) and ind.height + 1 == depth(tree)
    assert str(to_individual(parse("Tanh(Add(MM(x), MM(h)))"), pset)) \
        == "Tanh(Add(MM_E(x), MM_H(h)))"


def test_extended_operator_is_rejected_by_the_core_set():
    with pytest.raises(ValueError, match="operator Sub is not in the primitive set 'cell_core'"):
        to_individual(parse("Sub(MM(x), h)"), make_pset("core"))


@pytest.mark.parametrize("text", [
    "Tanh(MM(x))",  # no state
    "Add(h, MM(h))",  # no input
    "Add(c, MM(x))",  # c without Mem
    "Mem(Add(h, MM(x)))",  # Mem without c
    "Add(Mem(c), Mem(MM(x)))",  # two Mems
    "Sigmoid(c)",  # no input, c without Mem
])
def test_repair_makes_broken_cells_valid(text):
    pset = make_pset("core")
    for seed in range(30):
        ind = repair(to_individual(parse(text), pset), pset, random.Random(seed))
        assert is_valid(to_node(ind)), to_text(to_node(ind))


def test_thousands_of_random_cells_are_valid_typed_and_within_limits():
    for level, limits in (("core", Limits()), ("extended", Limits(max_depth=6, max_nodes=15))):
        variation = Variation(level, limits, seed=3)
        cells = [variation.random_cell() for _ in range(1500)]
        for cell in cells:
            assert is_valid(cell, limits), to_text(cell)
            assert parse(to_text(cell)) == cell
        assert len(set(cells)) > 1000
        assert 0.2 < sum("Mem" in to_text(c) for c in cells) / len(cells) < 0.8


def test_random_cell_names_impossible_limits():
    with pytest.raises(ValueError, match="no random valid cell fits"):
        Variation(limits=Limits(max_depth=2, max_nodes=10)).random_cell()
    smallest = Variation(limits=Limits(max_depth=3, max_nodes=4), seed=1)
    assert all(node_count(smallest.random_cell()) == 4 for _ in range(20))
