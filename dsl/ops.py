"""The operator table: the one place that says which operators and sources the DSL has.

Everything else (parser, validator, compiler, DEAP primitive set, ranker,
controller) reads this table. Adding an operator means adding one `OpSpec`.

Widths are the DSL's two types: ``E`` (the layer input) and ``H`` (the hidden
width). Elementwise operators take and give ``H``; ``MM`` is the only bridge
from ``E`` to ``H``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

E = "E"
H = "H"

#: sources (terminals) and their widths
SOURCES: dict[str, str] = {"x": E, "x_prev": E, "h": H, "c": H}
INPUT_SOURCES = ("x", "x_prev")
STATE_SOURCES = ("h", "c")

def guarded_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b with |b| kept at least 1e-3 (sign kept, 0 counts as positive)."""
    sign = 1.0 - 2.0 * (b < 0).to(b.dtype)
    return a / (sign * b.abs().clamp_min(1e-3))


def gate3(a: torch.Tensor, b: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """sigmoid(f) * a + (1 - sigmoid(f)) * b, written with one product."""
    return b + torch.sigmoid(f) * (a - b)


def posenc(a: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """a plus the sinusoidal encoding (Vaswani et al.) of the time step ``pos`` ([B, 1]).

    Even units get sin(pos * f_i), odd units cos(pos * f_i), f_i = 10000^(-2 floor(i/2) / width).
    """
    width = a.shape[-1]
    i = torch.arange(width, device=a.device, dtype=a.dtype)
    freq = torch.exp(-(2 * torch.div(i, 2, rounding_mode="floor")) * (math.log(10000.0) / width))
    angle = pos * freq
    enc = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    return a + enc


@dataclass(frozen=True)
class OpSpec:
    """One operator of the DSL.

    ``arg_widths[i]`` lists the widths argument i accepts; ``fn`` is the torch
    function of the arguments (``None`` where the compiler handles the
    operator itself: ``MM`` owns weights, ``LayerNorm`` owns a gain and bias,
    ``Mem`` is the identity that marks the new memory, ``PosEnc`` needs t).
    """

    name: str
    arity: int
    fn: Callable[..., torch.Tensor] | None
    kind: str = "core"  # "core" or "extended"
    commutative: bool = False
    arg_widths: tuple[tuple[str, ...], ...] = ()
    out_width: str = H

    def accepts(self, i: int) -> tuple[str, ...]:
        return self.arg_widths[i] if self.arg_widths else (H,)


def _op(name, arity, fn, kind="core", commutative=False, arg_widths=()):
    return OpSpec(name, arity, fn, kind, commutative, arg_widths)


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        _op("MM", 1, None, arg_widths=((E, H),)),
        _op("Add", 2, torch.add, commutative=True),
        _op("Mult", 2, torch.mul, commutative=True),
        _op("Sigmoid", 1, torch.sigmoid),
        _op("Tanh", 1, torch.tanh),
        _op("ReLU", 1, torch.relu),
        _op("Gate3", 3, gate3),
        _op("Mem", 1, None),
        _op("Sub", 2, torch.sub, "extended"),
        _op("Div", 2, guarded_div, "extended"),
        _op("Sin", 1, torch.sin, "extended"),
        _op("Cos", 1, torch.cos, "extended"),
        _op("PosEnc", 1, None, "extended"),
        _op("LayerNorm", 1, None, "extended"),
        _op("SeLU", 1, F.selu, "extended"),
        _op("Max", 2, torch.maximum, "extended", commutative=True),
        _op("Min", 2, torch.minimum, "extended", commutative=True),
    )
}

CORE_OPS = tuple(name for name, spec in OPS.items() if spec.kind == "core")
EXTENDED_OPS = tuple(OPS)


def ops_for(level: str) -> tuple[str, ...]:
    """Operator names available at ``level`` ('core' or 'extended')."""
    if level == "core":
        return CORE_OPS
    if level == "extended":
        return EXTENDED_OPS
    raise ValueError(f"unknown operator level {level!r}: choose 'core' or 'extended'")
