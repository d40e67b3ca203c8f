"""What a cell computes, apart from how it is written: its outputs at generic weights.

Two trees can compute one function (``Gate3(h, h, f)`` is ``h``; a subtree multiplied by
``Tanh(Mem(c))``, where ``Mem(c)`` keeps ``c`` at its zero start, adds nothing), and a tree
can compute nothing of its input (``Gate3(h, h, f)`` again: ``h`` stays at its zero start
whatever ``x`` is). The structural hash tells neither; training does, at the full price.
Like the functional equivalence checking of AutoML-Zero (Real et al. 2020), `behaviour`
runs the cell a few steps on fixed random inputs with fixed random weights and reads off:

- ``reads_input``: whether the output changes when the input does. A cell whose output
  does not is a language model that ignores its context: it cannot beat the unigram;
- ``fingerprint``: a hash of the outputs (rounded), equal for cells that compute one
  function (the same outputs at generic weights), different otherwise.

Weights are generic, not the training's initialisation: each ``MM`` node's weight and bias
and each ``LayerNorm``'s gain and bias are drawn from a generator seeded by the node's path
from the root (so a node keeps its weights when another part of the tree changes), all of
them non-zero. A cell that is inert only at a particular initialisation (a ReLU closed at
small weights, a product with a zero bias) is not called inert: training may open it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from cellzoo.dsl.canonical import canonical
from cellzoo.dsl.compile import CompiledCell
from cellzoo.dsl.tree import Node
from cellzoo.dsl.validate import parse_cell

#: steps, batch and widths of the probe run: enough for state to carry and mix
STEPS, BATCH, WIDTH = 12, 3, 6
#: outputs agree when they agree to this many significant digits (summation order aside)
DIGITS = 6


@dataclass(frozen=True)
class Behaviour:
    """A cell's outputs at generic weights: whether they depend on the input, and their
    fingerprint (equal for cells that compute one function)."""

    reads_input: bool
    fingerprint: str


def _paths(node: Node, path: tuple[int, ...] = ()):
    """(path, node) in prefix order, the order `CompiledCell` numbers its MM and LayerNorm
    nodes in."""
    yield path, node
    for i, child in enumerate(node.children):
        yield from _paths(child, (*path, i))


def _generator(path: tuple[int, ...]) -> torch.Generator:
    seed = int.from_bytes(hashlib.sha256(repr(path).encode()).digest()[:8], "little")
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def _generic(cell: CompiledCell, tree: Node) -> None:
    """Give every MM and LayerNorm node of ``cell`` (compiled from ``tree``) weights drawn
    by its path."""
    mms = iter(cell.mm)
    lns = iter(cell.ln)
    for path, node in _paths(tree):
        if node.op == "MM":
            mm, gen = next(mms), _generator(path)
            mm.weight.copy_(torch.randn(mm.weight.shape, generator=gen) / mm.in_features ** 0.5)
            mm.bias.copy_(0.5 * torch.randn(mm.bias.shape, generator=gen))
        elif node.op == "LayerNorm":
            ln, gen = next(lns), _generator(path)
            ln.weight.copy_(1 + 0.3 * torch.randn(ln.weight.shape, generator=gen))
            ln.bias.copy_(0.5 * torch.randn(ln.bias.shape, generator=gen))


@torch.no_grad()
def behaviour(cell: Node | str) -> Behaviour:
    """The cell's `Behaviour` (a few milliseconds; no RNG but its own generators is used)."""
    tree = canonical(parse_cell(cell) if isinstance(cell, str) else cell)
    with torch.random.fork_rng(devices=[]):  # the default initialisation draws, then goes
        compiled = CompiledCell(tree, WIDTH, WIDTH).double()
    _generic(compiled, tree)
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(2, STEPS, BATCH, WIDTH, generator=gen, dtype=torch.float64)
    first, second = (compiled(x)[0] for x in inputs)
    values = torch.where(first.abs() < 1e-12, 0.0, first) + 0.0  # no -0 or float noise
    text = ",".join(f"{v:.{DIGITS}g}" for v in values.flatten().tolist())
    reads = not torch.allclose(first, second, rtol=1e-9, atol=1e-12)
    return Behaviour(reads, hashlib.sha256(text.encode()).hexdigest()[:16])
