"""What a cell computes (`cellzoo.dsl.function`): cells of the PTB search arms that ignored
their input, or differed from another only by dead code, are told apart from the library's
cells, without moving the global RNG."""

from __future__ import annotations

import itertools

import pytest
import torch

from cellzoo.dsl.function import behaviour
from cellzoo.dsl.library import LIBRARY

#: the controller cell of the PTB ladder search and a crossover child that adds a subtree
#: under ``Tanh(Mem(c))``, which is zero (``Mem(c)`` keeps c at its zero start)
CONTROLLER = ("Gate3(c, Tanh(Add(MM(h), MM(x))), Add(MM(Mult(Sigmoid(Add(MM(h), MM(x))), "
              "Tanh(Mem(c)))), MM(x)))")
DEAD_CODE_CHILD = ("Gate3(c, Tanh(Add(MM(h), MM(x))), Add(MM(Mult(Sigmoid(Add(MM(Mult("
                   "Sigmoid(MM(x)), Tanh(c))), MM(x))), Tanh(Mem(c)))), MM(x)))")
#: a sibling whose sum has ``MM(x)`` where the controller cell has ``MM(0)``, a bias
BIAS_SIBLING = ("Gate3(c, Tanh(Add(MM(h), MM(x))), Add(MM(x), Mult(Sigmoid(Add(MM(h), "
                "MM(x))), Tanh(Mem(c)))))")

#: random-search cells whose rung-0 runs all ended at the same 767.76 (the state stays at
#: its zero start, whatever the input)
IGNORE_INPUT = ["Gate3(h, h, SeLU(MM(x)))", "Div(h, Cos(PosEnc(MM(x))))",
                "Mult(Div(Tanh(h), MM(x_prev)), ReLU(h))",
                "SeLU(ReLU(Mult(Div(MM(x_prev), h), h)))"]


def test_library_cells_read_their_input_and_compute_different_functions():
    seen = {name: behaviour(cell.expr) for name, cell in LIBRARY.items()}
    assert all(b.reads_input for b in seen.values())
    for (a, ba), (b, bb) in itertools.combinations(seen.items(), 2):
        assert ba.fingerprint != bb.fingerprint, (a, b)


@pytest.mark.parametrize("cell", IGNORE_INPUT)
def test_cells_whose_state_stays_at_zero_ignore_their_input(cell):
    assert not behaviour(cell).reads_input


def test_dead_code_leaves_the_function_and_a_bias_changes_it():
    assert behaviour(DEAD_CODE_CHILD) == behaviour(CONTROLLER)
    assert behaviour(BIAS_SIBLING).fingerprint != behaviour(CONTROLLER).fingerprint
    assert behaviour("Tanh(Add(MM(h), MM(x)))") == behaviour("Tanh(Add(MM(x), MM(h)))")


def test_a_cell_closed_only_at_small_weights_is_not_called_inert():
    """Under zaremba-small's initialisation (weights within 0.1) this ReLU never opens and its
    rung-0 run ended at 767.76 too; at other weights it does, so training may open it."""
    assert behaviour("ReLU(Sub(MM(x), Sigmoid(h)))").reads_input


def test_behaviour_leaves_the_global_generator_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    behaviour(LIBRARY["LSTM"].expr)
    assert torch.equal(torch.rand(4), expected)
