"""The DEAP view of the cell language: a typed primitive set built from the DSL operator
table, and exact structural conversion between DSL trees and DEAP ``PrimitiveTree``s.

The two DSL widths are the two DEAP types (`WidthE`, `WidthH`). DEAP primitive names
must be unique, so an operator whose arguments accept several widths (``MM`` takes E
or H) is registered once per width combination (``MM_E``, ``MM_H``); `VARIANTS` is the
one place that names those variants and maps them back to the DSL operator.

Conversion walks the prefix order; nothing here uses ``gp.compile`` (which ``eval``s
text). The primitives carry no callable for the same reason: cells are compiled by
`cellzoo.dsl.compile`, never by DEAP.
"""

from __future__ import annotations

import itertools

from deap import gp

from cellzoo.dsl import OPS, SOURCES, Node, from_prefix, ops_for, preorder


class WidthE:
    """DEAP type of width-E values: the layer input (``x``, ``x_prev``)."""


class WidthH:
    """DEAP type of width-H values: the hidden width (everything else)."""


TYPES: dict[str, type] = {"E": WidthE, "H": WidthH}


def _variants(op: str) -> dict[str, tuple[str, ...]]:
    spec = OPS[op]
    combos = list(itertools.product(*(spec.accepts(i) for i in range(spec.arity))))
    if len(combos) == 1:
        return {op: combos[0]}
    return {f"{op}_{''.join(combo)}": combo for combo in combos}


#: DEAP primitive name -> (DSL operator, argument widths), for every operator of the table
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: (op, widths) for op in OPS for name, widths in _variants(op).items()
}
_BY_SIGNATURE = {signature: name for name, signature in VARIANTS.items()}


def dsl_name(deap_name: str) -> str:
    """The DSL operator or source behind a DEAP primitive or terminal name."""
    return deap_name if deap_name in SOURCES else VARIANTS[deap_name][0]


def deap_name(node: Node) -> str:
    """The DEAP name of a node: its source, or the operator variant for its children's widths."""
    if node.is_source:
        return node.op
    signature = (node.op, tuple(child.width for child in node.children))
    if signature not in _BY_SIGNATURE:
        widths = ", ".join(signature[1])
        raise ValueError(f"{node.op} does not take arguments of widths ({widths})")
    return _BY_SIGNATURE[signature]


def make_pset(level: str = "core") -> gp.PrimitiveSetTyped:
    """The typed primitive set of the operators at ``level`` ('core' or 'extended').

    The root type is `WidthH` (a cell computes h(t)). `WidthE` has terminals but no
    primitive returning it: DEAP's stock ``genFull``/``genGrow`` raise ``IndexError`` on
    this set; use `cellzoo.evolve.generate`.
    """
    allowed = ops_for(level)
    pset = gp.PrimitiveSetTyped(f"cell_{level}", [], WidthH)
    for name, (op, widths) in VARIANTS.items():
        if op in allowed:
            in_types = [TYPES[w] for w in widths]
            pset.addPrimitive(None, in_types, TYPES[OPS[op].out_width], name=name)
    for source, width in SOURCES.items():
        pset.addTerminal(source, TYPES[width], name=source)
    return pset


def to_individual(node: Node, pset: gp.PrimitiveSetTyped) -> gp.PrimitiveTree:
    """The DEAP tree of a DSL tree (same prefix order, node for node)."""
    items = []
    for n in preorder(node):
        name = deap_name(n)
        if name not in pset.mapping:
            raise ValueError(f"operator {n.op} is not in the primitive set {pset.name!r}")
        items.append(pset.mapping[name])
    return gp.PrimitiveTree(items)


def to_node(individual: gp.PrimitiveTree) -> Node:
    """The DSL tree of a DEAP tree (inverse of `to_individual`)."""
    return from_prefix([dsl_name(item.name) for item in individual])
