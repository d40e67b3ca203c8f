"""What each operator of the table computes, in torch: the compiler's side of `dsl/ops.py`.

The operator table stays free of torch so that parsing and checking a cell stay
light; this module maps every operator name to its torch function. Operators the
compiler writes out itself are listed in `SPECIAL`: ``MM`` owns weights,
``LayerNorm`` a gain and a bias, ``Mem`` is the identity that marks the new
memory and ``PosEnc`` needs the time step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cellzoo.dsl.ops import OPS


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


SPECIAL = ("MM", "LayerNorm", "Mem", "PosEnc")

#: operator name -> torch function of its arguments
FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "Add": torch.add,
    "Mult": torch.mul,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "ReLU": torch.relu,
    "Gate3": gate3,
    "Sub": torch.sub,
    "Div": guarded_div,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "SeLU": F.selu,
    "Max": torch.maximum,
    "Min": torch.minimum,
}

_missing = set(OPS) - set(FUNCTIONS) - set(SPECIAL)
if _missing:  # an operator added to the table without its function
    raise ImportError(f"operators without a torch function in dsl/kernels.py: {sorted(_missing)}")
