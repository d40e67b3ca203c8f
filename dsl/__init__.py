"""The cell language: operators, trees, parse/print, validity, canonical form, library, compiler."""

from cellzoo.dsl.canonical import canonical, canonical_text, cell_hash
from cellzoo.dsl.ops import CORE_OPS, EXTENDED_OPS, INPUT_SOURCES, OPS, SOURCES, OpSpec, ops_for
from cellzoo.dsl.parse import DSLError, parse, parse_located
from cellzoo.dsl.tree import (
    Node,
    depth,
    from_prefix,
    node_count,
    op_counts,
    preorder,
    reads,
    to_prefix,
    to_text,
    uses_memory,
)
from cellzoo.dsl.validate import DEFAULT_LIMITS, Limits, is_valid, parse_cell, problems, validate

__all__ = [
    "CORE_OPS", "DEFAULT_LIMITS", "DSLError", "EXTENDED_OPS", "INPUT_SOURCES", "Limits", "Node",
    "OPS", "OpSpec", "SOURCES", "canonical", "canonical_text", "cell_hash", "depth", "from_prefix",
    "is_valid", "node_count", "op_counts", "ops_for", "parse", "parse_cell", "parse_located",
    "preorder", "problems", "reads", "to_prefix", "to_text", "uses_memory", "validate",
]
