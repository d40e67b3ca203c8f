"""Cells as flat DAGs for the ranker, and batches of them packed for level-by-level evaluation.

The ranker's vocabulary is the DSL's (sources and operators from `cellzoo.dsl.ops`)
plus a few node types that only NAS-Bench-NLP recipes produce (see `nbnlp.py`):
``h2`` (a third state slot), ``LeakyReLU``, ``Mem2`` (marks the third slot's new
value) and ``Root2``/``Root3`` (join a cell's outputs when its memory updates are
not on the path to h(t)). The ids in packed arrays are this process's order of
`VOCAB` and are never saved: a saved ranker keys its weights by node-type name
(`cellzoo.ranker.model`), so adding an operator anywhere in the table shifts nothing.

A `Packed` holds many cells as one set of numpy arrays (node operator ids,
children as local indices, each node's level = 1 + its deepest child's level),
so that taking a subset and planning a batch are vectorised; the only Python
loop is over (level, operator) groups, whose number grows with depth, not with
the number of nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cellzoo.dsl import OPS, SOURCES, Node, parse

EXTRA_SOURCES = ("h2",)
EXTRA_OPS = {"LeakyReLU": 1, "Mem2": 1, "Root2": 2, "Root3": 3}

VOCAB: tuple[str, ...] = (*SOURCES, *EXTRA_SOURCES, *OPS, *EXTRA_OPS)
OP_ID: dict[str, int] = {name: i for i, name in enumerate(VOCAB)}
ARITY: tuple[int, ...] = tuple(
    0 if n in SOURCES or n in EXTRA_SOURCES else OPS[n].arity if n in OPS else EXTRA_OPS[n]
    for n in VOCAB
)
COMMUTATIVE: tuple[bool, ...] = tuple(n in OPS and OPS[n].commutative for n in VOCAB)
MAX_ARITY = max(ARITY)


@dataclass(frozen=True)
class CellGraph:
    """A cell as a DAG: nodes in topological order (children first), the root last.

    ``kids[i]`` are indices of node i's children, in argument order. A node
    used by several parents appears once (it is computed once).
    """

    ops: tuple[str, ...]
    kids: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if len(self.ops) != len(self.kids) or not self.ops:
            raise ValueError("a CellGraph needs one children tuple per node, and at least one node")
        for i, (op, ks) in enumerate(zip(self.ops, self.kids, strict=True)):
            if op not in OP_ID:
                raise ValueError(f"node {i}: unknown node type {op!r}")
            if len(ks) != ARITY[OP_ID[op]]:
                raise ValueError(f"node {i}: {op} takes {ARITY[OP_ID[op]]} children, got {len(ks)}")
            if any(not 0 <= k < i for k in ks):
                raise ValueError(f"node {i}: children must come earlier in the node list")


def graph_from_node(node: Node) -> CellGraph:
    """A DSL tree as a graph. A Python object reached twice is one shared node (a DAG);
    equal but distinct subtrees stay distinct (each DSL `MM` owns its weights)."""
    ops: list[str] = []
    kids: list[tuple[int, ...]] = []
    _append(node, ops, kids, {})
    return CellGraph(tuple(ops), tuple(kids))


def _append(node: Node, ops: list[str], kids: list[tuple[int, ...]], index: dict[int, int]) -> int:
    """Append node's unseen descendants, then node; return its index. Recursion is safe:
    the parser refuses nesting deeper than `cellzoo.dsl.parse.MAX_NESTING`."""
    found = index.get(id(node))
    if found is not None:
        return found
    ks = tuple(_append(c, ops, kids, index) for c in node.children)
    index[id(node)] = len(ops)
    ops.append(node.op)
    kids.append(ks)
    return len(ops) - 1


def as_graph(cell: CellGraph | Node | str) -> CellGraph:
    """Accept a graph, a DSL tree or DSL text (text is parsed; errors are `DSLError`s)."""
    if isinstance(cell, CellGraph):
        return cell
    if isinstance(cell, str):
        cell = parse(cell)
    if isinstance(cell, Node):
        return graph_from_node(cell)
    raise TypeError(f"expected a cell (DSL text, Node or CellGraph), got {type(cell).__name__}")


@dataclass
class Packed:
    """Many cells as flat arrays: node ``op`` ids, ``kids`` [N, MAX_ARITY] local indices
    (-1 pads), ``level`` per node, and ``ptr`` [B+1] (cell b owns nodes ptr[b]:ptr[b+1])."""

    op: np.ndarray
    kids: np.ndarray
    level: np.ndarray
    ptr: np.ndarray

    def __len__(self) -> int:
        return len(self.ptr) - 1

    def take(self, cells: np.ndarray) -> Packed:
        """The sub-batch of the given cell indices, in that order (vectorised)."""
        cells = np.asarray(cells, dtype=np.int64)
        starts, sizes = self.ptr[cells], self.ptr[cells + 1] - self.ptr[cells]
        ptr = np.concatenate([[0], np.cumsum(sizes)])
        nodes = np.repeat(starts - ptr[:-1], sizes) + np.arange(ptr[-1])
        return Packed(self.op[nodes], self.kids[nodes], self.level[nodes], ptr)


def concat(parts: Sequence[Packed]) -> Packed:
    """Several packed batches as one, in order."""
    offsets = np.cumsum([0] + [p.ptr[-1] for p in parts[:-1]])
    ptr = np.concatenate([[0]] + [p.ptr[1:] + o for p, o in zip(parts, offsets, strict=True)])
    op, kids, level = (np.concatenate([getattr(p, f) for p in parts])
                       for f in ("op", "kids", "level"))
    return Packed(op, kids, level, ptr.astype(np.int64))


def pack(cells) -> Packed:
    """Pack cells (graphs, trees or text) into flat arrays, in one pass over the nodes."""
    ops: list[int] = []
    kids: list[tuple[int, ...]] = []
    levels: list[int] = []
    ptr = [0]
    pad = (-1,) * MAX_ARITY
    for cell in cells:
        names, children = _nodes(cell)
        lv: list[int] = []
        for op, ks in zip(names, children, strict=True):
            ops.append(OP_ID[op])
            kids.append((ks + pad)[:MAX_ARITY])
            lv.append(1 + max([lv[k] for k in ks]) if ks else 0)
        levels.extend(lv)
        ptr.append(len(ops))
    as_int = lambda a: np.asarray(a, dtype=np.int64)  # noqa: E731
    return Packed(as_int(ops), as_int(kids).reshape(-1, MAX_ARITY), as_int(levels), as_int(ptr))


def _nodes(cell) -> tuple[Sequence[str], Sequence[tuple[int, ...]]]:
    """Node names and children of a cell in topological order (trees skip CellGraph's checks:
    they are well formed by construction)."""
    if isinstance(cell, str):
        cell = parse(cell)
    if isinstance(cell, Node):
        ops: list[str] = []
        kids: list[tuple[int, ...]] = []
        _append(cell, ops, kids, {})
        return ops, kids
    graph = as_graph(cell)
    return graph.ops, graph.kids


@dataclass
class Group:
    """Nodes of one operator at one level: where they go and where their children are."""

    op: int
    nodes: torch.Tensor  # [n] global node index
    kids: torch.Tensor  # [n, arity] global child indices


@dataclass
class Plan:
    """A packed batch ready for the model: source nodes, then groups in level order."""

    num_nodes: int
    source_nodes: torch.Tensor
    source_ops: torch.Tensor
    groups: list[Group]
    roots: torch.Tensor  # [B] global index of each cell's root
    cell_of_node: torch.Tensor  # [N] which cell each node belongs to
    sizes: torch.Tensor  # [B] nodes per cell


def plan(packed: Packed) -> Plan:
    """Group a packed batch by (level, operator); children become global indices."""
    sizes = np.diff(packed.ptr)
    offset = np.repeat(packed.ptr[:-1], sizes)
    kids = np.where(packed.kids >= 0, packed.kids + offset[:, None], -1)
    order = np.lexsort((packed.op, packed.level))
    key = packed.level[order] * len(VOCAB) + packed.op[order]
    bounds = np.flatnonzero(np.diff(key)) + 1
    groups: list[Group] = []
    source_nodes = np.empty(0, dtype=np.int64)
    for chunk in np.split(order, bounds):
        if len(chunk) == 0:
            continue
        if packed.level[chunk[0]] == 0:
            source_nodes = np.concatenate([source_nodes, chunk])
            continue
        op = int(packed.op[chunk[0]])
        groups.append(Group(op, torch.from_numpy(chunk), torch.from_numpy(kids[chunk, :ARITY[op]])))
    return Plan(
        num_nodes=len(packed.op),
        source_nodes=torch.from_numpy(source_nodes),
        source_ops=torch.from_numpy(packed.op[source_nodes]),
        groups=groups,
        roots=torch.from_numpy(packed.ptr[1:] - 1),
        cell_of_node=torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes)),
        sizes=torch.from_numpy(sizes),
    )
