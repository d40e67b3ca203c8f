"""NAS-Bench-NLP (Klyuchnikov et al., 2020): read its logs and map its recipes to and from cells.

A recipe is a dict ``node -> {"op", "input"}`` over inputs ``x``, ``h_prev_0..2``;
``h_new_0`` is the output h(t), ``h_new_1``/``h_new_2`` carry extra state.

Two conversions, one path:

* `recipe_to_graph`: an exact DAG in the ranker's vocabulary (shared nodes stay
  shared; ``h_prev_2`` is source ``h2``, leaky ReLU is ``LeakyReLU``, the new
  state slots are marked ``Mem``/``Mem2``; when a marked update is not on the
  path to ``h_new_0`` a ``Root2``/``Root3`` node joins the outputs).
* `recipe_to_dsl`: that DAG expanded into a DSL tree rooted at ``h_new_0``, with
  a list of the places where the DSL cannot say exactly the same thing
  (`INEXACT` names them).

Exact in both: ``linear(a, b, ...)`` -> ``Add(Add(MM(a), MM(b)), ...)`` (one bias per
MM instead of one per linear: the same function class); ``elementwise_sum/prod``
-> nested ``Add``/``Mult``; ``activation_tanh/sigm`` -> ``Tanh``/``Sigmoid``;
``blend(z, a, b) = z*a + (1-z)*b`` -> ``Gate3(a, b, u)`` when ``z = sigm(u)``
(Gate3 applies the sigmoid itself), otherwise ``Add(b, Mult(z, Sub(a, b)))``
(extended operator ``Sub``; ``b`` is shared in the DAG, copied in the tree).

The other way, `dsl_to_recipe` writes a DSL tree as a recipe where the operators
correspond (see `DSL_NOTES` for where they do only approximately or not at all),
and `recipe_key` names a recipe's graph up to renaming of its nodes (twins).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from cellzoo.dsl import Node, preorder, problems
from cellzoo.ranker.graph import CellGraph

PTB_FILE = "ptb_single_run.jsonl"
FILES = {"ptb": PTB_FILE, "wikitext-2": "wikitext2_single_run.jsonl"}
#: the ranker target (head) of each dataset's results
TARGETS = {dataset: f"nas-bench-nlp/{dataset}" for dataset in FILES}
REFERENCE_IDS = {"rnn": 1000000, "lstm": 1000001, "gru": 1000002}

SOURCE_OF = {"x": "x", "h_prev_0": "h", "h_prev_1": "c", "h_prev_2": "h2"}
ACTIVATION = {"activation_tanh": "Tanh", "activation_sigm": "Sigmoid",
              "activation_leaky_relu": "LeakyReLU"}
ELEMENTWISE = {"elementwise_sum": "Add", "elementwise_prod": "Mult"}
STATE_MARK = {"h_new_1": "Mem", "h_new_2": "Mem2"}

#: why a DSL tree is not exactly the recipe's cell (keys of `recipe_to_dsl`'s notes)
INEXACT = {
    "leaky_relu": "activation_leaky_relu became ReLU (the DSL has no leaky ReLU)",
    "two_memories": "h(t) reads both extra state slots; both became c (the DSL has one memory)",
    "memory_off_path": "h(t) reads a state slot whose update is not computed on the way to "
                       "h(t); a DSL Mem must be inside the tree, so that slot was replaced by h",
    "shared_weights": "a node with learned weights feeds h(t) along several paths; the tree "
                      "copies it, and each copy gets its own MM weights",
    "invalid": "the converted tree breaks a DSL rule (limits, or it no longer reads x)",
}


@dataclass(frozen=True)
class NBRun:
    """One NAS-Bench-NLP run: the recipe, whether it finished, its final perplexities and
    its validation loss after each epoch it completed (the learning curve)."""

    id: int
    recipe: dict
    finished: bool  # status OK: trained all 50 epochs
    val_ppl: float  # nan unless finished
    test_ppl: float  # nan unless finished
    val_losses: tuple[float, ...] = ()


def data_file(data: str | os.PathLike | None = None, dataset: str = "ptb") -> Path:
    """The log file of ``dataset`` (`FILES`): in folder ``data`` (or beside the file ``data``,
    or in its ``nas-bench-nlp/`` subfolder), else in $CELLZOO_DATA/nas-bench-nlp/."""
    name = FILES[dataset]
    if data is None:
        root = os.environ.get("CELLZOO_DATA")
        if not root:
            raise FileNotFoundError(
                "NAS-Bench-NLP logs not found: pass --data DIR or set CELLZOO_DATA to the folder "
                f"that holds nas-bench-nlp/{name}")
        data = Path(root) / "nas-bench-nlp"
    path = Path(data)
    if path.is_file():
        path = path.parent
    if path.is_dir():
        path = path / name if (path / name).exists() else path / "nas-bench-nlp" / name
    if not path.is_file():
        raise FileNotFoundError(f"NAS-Bench-NLP logs not found at {path}")
    return path


def load_runs(data: str | os.PathLike | None = None, limit: int | None = None,
              dataset: str = "ptb") -> list[NBRun]:
    """The runs of ``dataset``'s file in file order (sorted by id); the first ``limit`` if given."""
    return list(islice(_iter_runs(data_file(data, dataset)), limit))


def _iter_runs(path: Path) -> Iterator[NBRun]:
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            ok = d["status"] == "OK" and d["final_test_ppl"] is not None
            yield NBRun(
                id=int(d["id"]),
                recipe=json.loads(d["recipe"]),
                finished=ok,
                val_ppl=float(d["final_val_ppl"]) if ok else math.nan,
                test_ppl=float(d["final_test_ppl"]) if ok else math.nan,
                val_losses=tuple(math.nan if v is None else float(v)
                                 for v in d.get("val_losses") or ()),
            )


class _Builder:
    """Appends DAG nodes in topological order, sharing what is built twice."""

    def __init__(self, recipe: dict):
        self.recipe = recipe
        self.ops: list[str] = []
        self.kids: list[tuple[int, ...]] = []
        self.done: dict[str, int] = {}

    def add(self, op: str, *kids: int) -> int:
        self.ops.append(op)
        self.kids.append(kids)
        return len(self.ops) - 1

    def chain(self, op: str, items: list[int]) -> int:
        node = items[0]
        for other in items[1:]:
            node = self.add(op, node, other)
        return node

    def build(self, name: str) -> int:
        if name not in self.done:
            self.done[name] = self._build(name)
        return self.done[name]

    def _build(self, name: str) -> int:
        if name in SOURCE_OF:
            return self.add(SOURCE_OF[name])
        if name not in self.recipe:
            raise ValueError(f"recipe refers to an undefined node {name!r}")
        spec = self.recipe[name]
        op, inputs = spec["op"], spec["input"]
        if op == "linear":
            node = self.chain("Add", [self.add("MM", self.build(i)) for i in inputs])
        elif op in ELEMENTWISE:
            node = self.chain(ELEMENTWISE[op], [self.build(i) for i in inputs])
        elif op in ACTIVATION:
            node = self.add(ACTIVATION[op], self.build(inputs[0]))
        elif op == "blend":
            node = self._blend(*inputs)
        else:
            raise ValueError(f"recipe node {name!r} has unknown op {op!r}")
        return self.add(STATE_MARK[name], node) if name in STATE_MARK else node

    def _blend(self, z: str, a: str, b: str) -> int:
        zspec = self.recipe.get(z)
        if zspec is not None and zspec["op"] == "activation_sigm" and z not in STATE_MARK:
            return self.add("Gate3", self.build(a), self.build(b), self.build(zspec["input"][0]))
        ia, ib, iz = self.build(a), self.build(b), self.build(z)
        return self.add("Add", ib, self.add("Mult", iz, self.add("Sub", ia, ib)))


def recipe_to_graph(recipe: dict) -> CellGraph:
    """The recipe as an exact DAG in the ranker's vocabulary (see the module docstring)."""
    b = _Builder(recipe)
    outs = sorted(k for k in recipe if k.startswith("h_new_") and k[6:].isdigit())
    if "h_new_0" not in outs:
        raise ValueError("recipe has no h_new_0 (the output)")
    root = b.build("h_new_0")
    above = _ancestors(b.kids, root)
    marks = [b.build(k) for k in outs[1:]]
    if any(m not in above for m in marks):
        root = b.add(f"Root{len(outs)}", root, *marks)
    return _prune(b.ops, b.kids, root)


def _ancestors(kids: list[tuple[int, ...]], root: int) -> set[int]:
    """Every node root depends on, root included."""
    seen, stack = set(), [root]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(kids[n])
    return seen


def _prune(ops: list[str], kids: list[tuple[int, ...]], root: int) -> CellGraph:
    """Keep the nodes root depends on, renumbered in their (topological) order, root last."""
    keep = sorted(_ancestors(kids, root))
    new = {old: i for i, old in enumerate(keep)}
    return CellGraph(tuple(ops[i] for i in keep),
                     tuple(tuple(new[k] for k in kids[i]) for i in keep))


def recipe_to_dsl(recipe: dict) -> tuple[Node, list[str]]:
    """The recipe's h_new_0 as a DSL tree, and the `INEXACT` keys that apply (empty: exact)."""
    g = recipe_to_graph(recipe)
    root = len(g.ops) - 1
    if g.ops[root].startswith("Root"):
        root = g.kids[root][0]
    path = _ancestors(list(g.kids), root)
    used = {g.ops[i] for i in path}
    notes: list[str] = []
    slot, keep_mark = _memory_mapping(used, notes)
    if "LeakyReLU" in used:
        notes.append("leaky_relu")
    if _shared_weights(g, root, path):
        notes.append("shared_weights")
    node = _expand(g, root, slot, keep_mark)
    if problems(node):
        notes.append("invalid")
    return node, notes


def _shared_weights(g: CellGraph, root: int, path: set[int]) -> bool:
    """Does a node that holds or depends on an MM have more than one parent on h(t)'s path?"""
    parents = Counter(k for i in path for k in g.kids[i])
    has_mm: dict[int, bool] = {}
    for i in sorted(path):
        has_mm[i] = g.ops[i] == "MM" or any(has_mm[k] for k in g.kids[i])
    return any(parents[i] > 1 and has_mm[i] for i in path if i != root)


def _memory_mapping(used: set[str], notes: list[str]) -> tuple[dict[str, str], dict[str, bool]]:
    """Which DSL source each extra state slot becomes, and which mark becomes the one Mem.

    A slot whose update (``Mem``/``Mem2``) is on h(t)'s path maps exactly to ``c``;
    two slots read by h(t) share ``c``; a slot read but updated off the path becomes ``h``.
    """
    reads = [(s, m) for s, m in (("c", "Mem"), ("h2", "Mem2")) if s in used]
    on_path = [m for _, m in reads if m in used]
    slot = {"c": "c", "h2": "c"}
    if len(reads) == 2:
        notes.append("two_memories")
    if reads and not on_path:
        slot = {"c": "h", "h2": "h"}
        notes.append("memory_off_path")
    keep_mark = {"Mem": False, "Mem2": False}
    if on_path:
        keep_mark[on_path[0]] = True
    return slot, keep_mark


def _expand(g: CellGraph, root: int, slot: dict[str, str], keep_mark: dict[str, bool]) -> Node:
    """Unfold the DAG below ``root`` into a tree; the first Mem met (prefix order) is kept."""
    marked: list[bool] = []

    def visit(i: int) -> Node:
        op = g.ops[i]
        if op in slot:
            return Node(slot[op])
        if op == "LeakyReLU":
            op = "ReLU"
        kids = tuple(visit(k) for k in g.kids[i])
        if op in ("Mem", "Mem2"):
            if not keep_mark[op] or marked:
                return kids[0]
            marked.append(True)
            return Node("Mem", (kids[0],))
        return Node(op, kids)

    return visit(root)


def mapping_report(runs: list[NBRun]) -> dict[str, int]:
    """How many recipes convert exactly, and how often each `INEXACT` reason applies."""
    counts: Counter[str] = Counter()
    for run in runs:
        _, notes = recipe_to_dsl(run.recipe)
        counts.update(notes)
        counts["exact" if not notes else "inexact"] += 1
    return {"recipes": len(runs), "exact": counts["exact"], "inexact": counts["inexact"],
            **{k: counts[k] for k in INEXACT}}


# --- twins: a recipe's graph up to renaming of its nodes -----------------------------------

COMMUTATIVE_OPS = {"linear", "elementwise_sum", "elementwise_prod"}


def recipe_key(recipe: dict) -> str:
    """A digest of the recipe's graph that ignores node names and the order of the inputs
    of ``linear`` and the elementwise ops: two recipes that differ only in those are twins.

    Each node reachable from an output gets a Merkle digest of its op and its inputs'
    digests; the key digests the outputs' digests in slot order and how many distinct
    nodes carry each digest (so one shared node and two copies of it differ)."""
    digest: dict[str, str] = {}

    def node(name: str) -> str:
        if name in SOURCE_OF:
            return name
        if name not in digest:
            spec = recipe[name]
            ins = [node(i) for i in spec["input"]]
            if spec["op"] in COMMUTATIVE_OPS:
                ins.sort()
            digest[name] = _sha(json.dumps([spec["op"], ins]))
        return digest[name]

    outs = sorted((k for k in recipe if k.startswith("h_new_") and k[6:].isdigit()),
                  key=lambda k: int(k[6:]))
    roots = [node(k) for k in outs]
    return _sha(json.dumps([roots, sorted(Counter(digest.values()).items())]))


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


# --- DSL -> NAS-Bench-NLP -------------------------------------------------------------------

DSL_SOURCE = {"x": "x", "h": "h_prev_0", "c": "h_prev_1"}
DSL_OP = {"MM": "linear", "Add": "elementwise_sum", "Mult": "elementwise_prod",
          "Tanh": "activation_tanh", "Sigmoid": "activation_sigm"}
#: DSL operators that map only approximately
DSL_APPROX = {"ReLU": "activation_leaky_relu", "SeLU": "activation_leaky_relu"}
#: the ranker node types NAS-Bench-NLP recipes produce (`recipe_to_graph`)
NB_NODE_TYPES = frozenset({"x", "h", "c", "h2", "MM", "Add", "Mult", "Tanh", "Sigmoid",
                           "LeakyReLU", "Gate3", "Sub", "Mem", "Mem2", "Root2", "Root3"})
#: DSL node types absent from NAS-Bench-NLP -> the NAS-Bench-NLP node type a prior
#: trained on it lends them (approximate: ReLU and SeLU as leaky ReLU, x(t-1) as x(t))
STAND_INS = {"ReLU": "LeakyReLU", "SeLU": "LeakyReLU", "x_prev": "x"}
#: why a DSL cell does not map exactly (keys of `dsl_to_recipe`'s notes)
DSL_NOTES = {
    "relu_as_leaky": "ReLU became activation_leaky_relu (NAS-Bench-NLP has no plain ReLU)",
    "selu_as_leaky": "SeLU became activation_leaky_relu (NAS-Bench-NLP has no SeLU)",
    "unmapped": "an operator or source with no NAS-Bench-NLP counterpart (x_prev, Sub, Div, "
                "Sin, Cos, PosEnc, LayerNorm, Max, Min, or Mem of a bare source)",
}


def dsl_to_recipe(cell: Node) -> tuple[dict | None, list[str]]:
    """The DSL tree as a NAS-Bench-NLP recipe and the `DSL_NOTES` keys that apply (empty:
    exact); None when an operator has no counterpart. ``MM(a)`` -> ``linear(a)``,
    ``Gate3(a, b, f)`` -> ``blend(sigm(f), a, b)``, ``Mem(a)``: ``a`` becomes ``h_new_1``."""
    notes = sorted({f"{op.lower()}_as_leaky" for op in DSL_APPROX
                    if any(n.op == op for n in preorder(cell))})
    recipe: dict = {}
    try:
        name = _recipe_node(cell, recipe, root=True)
    except _Unmapped:
        return None, [*notes, "unmapped"]
    if name != "h_new_0":
        return None, [*notes, "unmapped"]
    return recipe, notes


class _Unmapped(Exception):
    pass


def _recipe_node(node: Node, recipe: dict, root: bool = False) -> str:
    """Add node (and its subtree) to recipe; return the name its parent reads."""
    if node.op in DSL_SOURCE:
        return DSL_SOURCE[node.op]
    if node.op == "Mem":
        inner = node.children[0]
        if inner.op in DSL_SOURCE or inner.op == "Mem":
            raise _Unmapped
        name = _recipe_node(inner, recipe)
        recipe["h_new_1"] = recipe.pop(name)
        return "h_new_1"
    kids = [_recipe_node(k, recipe) for k in node.children]
    if node.op == "Gate3":
        gate = _fresh(recipe)
        recipe[gate] = {"op": "activation_sigm", "input": [kids[2]]}
        spec = {"op": "blend", "input": [gate, kids[0], kids[1]]}
    elif node.op in DSL_OP or node.op in DSL_APPROX:
        spec = {"op": DSL_OP.get(node.op) or DSL_APPROX[node.op], "input": kids}
    else:
        raise _Unmapped
    name = "h_new_0" if root else _fresh(recipe)
    recipe[name] = spec
    return name


def _fresh(recipe: dict) -> str:
    return f"node_{len(recipe)}"


def dsl_mapping_report(cells: list[Node]) -> dict[str, int]:
    """How many DSL cells map exactly, approximately or not at all, how often each note
    applies, how many cells hold each node type that has no counterpart, and how many a
    NAS-Bench-NLP prior covers (every node type seen by it or lent by a `STAND_INS`)."""
    counts: Counter[str] = Counter()
    blockers: Counter[str] = Counter()
    mapped = {*DSL_SOURCE, *DSL_OP, *DSL_APPROX, "Gate3", "Mem"}
    for cell in cells:
        recipe, notes = dsl_to_recipe(cell)
        counts.update(notes)
        counts["exact" if recipe is not None and not notes else
               "approximate" if recipe is not None else "unmapped_cells"] += 1
        types = {n.op for n in preorder(cell)}
        blockers.update(types - mapped)
        counts["prior_covers"] += types <= NB_NODE_TYPES | set(STAND_INS)
    return {"cells": len(cells), "exact": counts["exact"], "approximate": counts["approximate"],
            "unmapped": counts["unmapped_cells"],
            **{k: counts[k] for k in DSL_NOTES if k != "unmapped"},
            "cells_with": dict(sorted(blockers.items())), "prior_covers": counts["prior_covers"]}
