"""NAS-Bench-NLP (Klyuchnikov et al., 2020): read its PTB logs and map its recipes to cells.

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
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from cellzoo.dsl import Node, problems
from cellzoo.ranker.graph import CellGraph

PTB_FILE = "ptb_single_run.jsonl"
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
    """One NAS-Bench-NLP run: the recipe, whether it finished, its final perplexities."""

    id: int
    recipe: dict
    finished: bool  # status OK: trained all 50 epochs
    val_ppl: float  # nan unless finished
    test_ppl: float  # nan unless finished


def data_file(data: str | os.PathLike | None = None) -> Path:
    """The PTB log file: ``data`` (a folder or the file), else $CELLZOO_DATA/nas-bench-nlp/."""
    if data is None:
        root = os.environ.get("CELLZOO_DATA")
        if not root:
            raise FileNotFoundError(
                "NAS-Bench-NLP logs not found: pass --data DIR or set CELLZOO_DATA to the folder "
                f"that holds nas-bench-nlp/{PTB_FILE}")
        data = Path(root) / "nas-bench-nlp"
    path = Path(data)
    if path.is_dir():
        path = path / PTB_FILE if (path / PTB_FILE).exists() else path / "nas-bench-nlp" / PTB_FILE
    if not path.is_file():
        raise FileNotFoundError(f"NAS-Bench-NLP logs not found at {path}")
    return path


def load_runs(data: str | os.PathLike | None = None, limit: int | None = None) -> list[NBRun]:
    """The runs of the PTB file in file order (sorted by id); the first ``limit`` if given."""
    return list(islice(_iter_runs(data_file(data)), limit))


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
