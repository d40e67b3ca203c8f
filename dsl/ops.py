"""The operator table: the one place that says which operators and sources the DSL has.

Everything else (parser, validator, compiler, DEAP primitive set, ranker,
controller) reads this table. Adding an operator means adding one `OpSpec`.

Widths are the DSL's two types: ``E`` (the layer input) and ``H`` (the hidden
width). Elementwise operators take and give ``H``; ``MM`` is the only bridge
from ``E`` to ``H``.
"""

from __future__ import annotations

from dataclasses import dataclass

E = "E"
H = "H"

#: sources (terminals) and their widths
SOURCES: dict[str, str] = {"x": E, "x_prev": E, "h": H, "c": H}
INPUT_SOURCES = ("x", "x_prev")
STATE_SOURCES = ("h", "c")


@dataclass(frozen=True)
class OpSpec:
    """One operator of the DSL.

    ``arg_widths[i]`` lists the widths argument i accepts. What an operator
    computes lives with the compiler (`cellzoo.dsl.kernels`), so that parsing and
    checking a cell import no torch.
    """

    name: str
    arity: int
    kind: str = "core"  # "core" or "extended"
    commutative: bool = False
    arg_widths: tuple[tuple[str, ...], ...] = ()
    out_width: str = H

    def accepts(self, i: int) -> tuple[str, ...]:
        return self.arg_widths[i] if self.arg_widths else (H,)


def _op(name, arity, kind="core", commutative=False, arg_widths=()):
    return OpSpec(name, arity, kind, commutative, arg_widths)


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        _op("MM", 1, arg_widths=((E, H),)),
        _op("Add", 2, commutative=True),
        _op("Mult", 2, commutative=True),
        _op("Sigmoid", 1),
        _op("Tanh", 1),
        _op("ReLU", 1),
        _op("Gate3", 3),
        _op("Mem", 1),
        _op("Sub", 2, "extended"),
        _op("Div", 2, "extended"),
        _op("Sin", 1, "extended"),
        _op("Cos", 1, "extended"),
        _op("PosEnc", 1, "extended"),
        _op("LayerNorm", 1, "extended"),
        _op("SeLU", 1, "extended"),
        _op("Max", 2, "extended", commutative=True),
        _op("Min", 2, "extended", commutative=True),
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
