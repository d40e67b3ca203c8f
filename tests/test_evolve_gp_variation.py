"""Variation operators: every offspring valid, typed and within limits; reproducible runs."""

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from cellzoo.dsl import Limits, canonical_text, is_valid, parse, parse_cell, to_text
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.gp import to_individual, to_node
from cellzoo.evolve.variation import FALLBACK, MUTATIONS, Variation

LIMITS = Limits(max_depth=10, max_nodes=40)  # tighter than the default, to exercise limits

#: a seeded sequence of random cells, mutations and crossovers, as canonical texts
SEQUENCE = """
from cellzoo.dsl import canonical_text
from cellzoo.evolve.variation import Variation
v = Variation("extended", seed=11)
cells = [v.random_cell() for _ in range(20)]
out = [canonical_text(c) for c in cells]
for i in range(40):
    child, op = v.mutate(cells[i % 20])
    a, b = v.crossover(cells[i % 20], cells[(3 * i + 1) % 20])
    out += [op, canonical_text(child), canonical_text(a), canonical_text(b)]
"""


def _sequence() -> list[str]:
    scope: dict = {}
    exec(SEQUENCE, scope)
    return scope["out"]


@pytest.fixture(scope="module")
def parents():
    library = [parse_cell(cell.expr) for cell in LIBRARY.values()]
    variation = Variation("extended", LIMITS, seed=5)
    return library + [variation.random_cell() for _ in range(30)]


def _check(child):
    assert is_valid(child, LIMITS), to_text(child)
    assert parse(to_text(child)) == child  # widths (DEAP types) respected


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_mutation_operator_gives_valid_new_offspring(parents, name):
    variation = Variation("extended", LIMITS, seed=1)
    operator = getattr(variation.toolbox, name)
    changed = 0
    for i in range(300):
        parent = parents[i % len(parents)]
        (child,) = operator(to_individual(parent, variation.pset))
        child = to_node(child)
        _check(child)
        changed += canonical_text(child) != canonical_text(parent)
    assert changed > 200  # a parent copy comes back only when no valid new child was found


def test_mutate_always_changes_the_cell_and_names_its_operator(parents):
    variation = Variation("extended", LIMITS, seed=2)
    used = set()
    for i in range(600):
        parent = parents[i % len(parents)]
        child, name = variation.mutate(parent)
        _check(child)
        assert canonical_text(child) != canonical_text(parent)
        assert name in (*MUTATIONS, FALLBACK)
        used.add(name)
    assert set(MUTATIONS) <= used


def test_crossover_offspring_are_valid_and_mostly_new(parents):
    variation = Variation("extended", LIMITS, seed=3)
    new = 0
    for i in range(400):
        a, b = parents[i % len(parents)], parents[(7 * i + 3) % len(parents)]
        c1, c2 = variation.crossover(a, b)
        _check(c1)
        _check(c2)
        new += (c1 != a) + (c2 != b)
    assert new > 700


def test_memory_comes_and_goes_under_mutation():
    variation = Variation(seed=4)
    tanh_rnn, lstm = parse_cell(LIBRARY["tanh-RNN"].expr), parse_cell(LIBRARY["LSTM"].expr)
    gains = sum("Mem" in to_text(variation.mutate(tanh_rnn)[0]) for _ in range(300))
    losses = sum("Mem" not in to_text(variation.mutate(lstm)[0]) for _ in range(300))
    assert gains > 0 and losses > 0


def test_same_seed_same_run_and_state_resumes_it():
    assert _sequence() == _sequence()
    v = Variation(seed=0)
    v.random_cell()
    saved = json.loads(json.dumps(v.state()))  # a checkpoint stores it as JSON
    expected = [canonical_text(v.random_cell()) for _ in range(5)]
    fresh = Variation(seed=99)
    fresh.set_state(saved)
    assert [canonical_text(fresh.random_cell()) for _ in range(5)] == expected
    one, two = Variation(seed=1), Variation(seed=2)
    assert [one.random_cell() for _ in range(5)] != [two.random_cell() for _ in range(5)]


def test_run_is_identical_in_a_process_with_another_hash_seed():
    code = SEQUENCE + "\nimport json; print(json.dumps(out))"
    env = {**os.environ, "PYTHONHASHSEED": "4242", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True)
    assert json.loads(result.stdout) == _sequence()


def test_run_is_identical_in_a_spawned_process(tmp_path):
    path = str(tmp_path / "sequence.json")
    code = SEQUENCE + f"\nimport json; json.dump(out, open({path!r}, 'w'))"
    process = multiprocessing.get_context("spawn").Process(target=exec, args=(code, {}))
    process.start()
    process.join()
    assert process.exitcode == 0
    with open(path) as f:
        assert json.load(f) == _sequence()
