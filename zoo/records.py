"""What the zoo stores about a cell and a run, as plain Python records.

A run's metadata is one flat dict (`Run.to_dict()`): it is written both as the
attributes of the run's HDF5 group and as one JSON row of the zoo's index, so
listing never has to touch the groups that hold curves and weights.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from cellzoo.common.errors import UserError
from cellzoo.dsl import Node, depth, node_count, op_counts, preorder, to_text
from cellzoo.dsl.canonical import canonical, text_hash

ORIGINS = ("mutation", "crossover", "controller", "library", "manual", "random")
STATUSES = ("ok", "diverged", "failed")
LINEAGE_KEYS = ("parents", "origin", "operator", "generation", "search_id")
# fields stored as JSON text in HDF5 attributes (everything else is a plain scalar)
JSON_FIELDS = ("config", "parents")


class ZooError(UserError):
    """A zoo problem a user can hit: a bad file, a lock held by someone else, a missing run."""


class CurveReader(Protocol):
    """Where a run reads its learning curve from (the open `Zoo` it came from)."""

    def curve(self, run_id: str) -> list[dict]: ...


@dataclass
class Run:
    """One training run of one cell: metadata only; the curve is read when first asked for."""

    run_id: str
    hash: str
    expr: str
    task: str
    status: str
    val_ppl: float
    test_ppl: float
    params: int
    cell_params: int
    seconds: float
    tokens_per_s: float
    tokens_trained: int
    device: str
    error: str | None
    config: dict
    config_key: str
    seed: int
    parents: list[str]
    origin: str
    operator: str | None
    generation: int | None
    search_id: str | None
    created: float
    has_weights: bool
    _zoo: CurveReader | None = field(default=None, repr=False, compare=False)

    @property
    def curve(self) -> list[dict]:
        """The learning curve (rows of tokens, train_loss, val_ppl, ...), read from the file."""
        if self._zoo is None:
            raise ZooError(f"run {self.run_id} is not attached to an open zoo")
        return self._zoo.curve(self.run_id)

    def to_dict(self) -> dict[str, Any]:
        return {n: getattr(self, n) for n in RUN_FIELDS}

    @classmethod
    def from_dict(cls, row: dict[str, Any], zoo: CurveReader | None = None) -> Run:
        missing = [n for n in RUN_FIELDS if n not in row]
        if missing:
            raise ZooError(f"run record {row.get('run_id', '?')} lacks fields {missing}")
        values = {n: row[n] for n in RUN_FIELDS}
        for name in ("val_ppl", "test_ppl", "seconds", "tokens_per_s"):
            values[name] = math.nan if values[name] is None else float(values[name])
        return cls(**values, _zoo=zoo)


#: the stored fields of a run, in order (`Run.to_dict`'s keys, the dataframe's columns)
RUN_FIELDS = tuple(f.name for f in fields(Run) if not f.name.startswith("_"))


@dataclass(frozen=True)
class Cell:
    """A cell of the zoo: its canonical text, structural measurements and its runs."""

    hash: str
    expr: str
    op_counts: dict[str, int]
    node_count: int
    depth: int
    runs: tuple[Run, ...]


def new_run_id() -> str:
    return os.urandom(8).hex()


def cell_attrs(tree: Node) -> dict[str, Any]:
    """Per-cell attributes, all derived from the (canonical) tree, parsed once by the caller."""
    tree = canonical(tree)
    expr = to_text(tree)
    nodes = list(preorder(tree))
    kinds = [n.children[0].width for n in nodes if n.op == "MM"]
    return {
        "hash": text_hash(expr),
        "expr": expr,
        "op_counts": dict(sorted(op_counts(tree).items())),
        "node_count": node_count(tree),
        "depth": depth(tree),
        "mm_inputs_e": kinds.count("E"),
        "mm_inputs_h": kinds.count("H"),
        "layernorms": sum(1 for n in nodes if n.op == "LayerNorm"),
    }


def cell_param_count(attrs: dict[str, Any], input_size: int, hidden_size: int) -> int:
    """Parameters of one cell layer: every MM is a Linear, every LayerNorm has gain and bias."""
    h = hidden_size
    return (attrs["mm_inputs_e"] * (input_size + 1) * h + attrs["mm_inputs_h"] * (h + 1) * h
            + attrs["layernorms"] * 2 * h)


def check_lineage(lineage: dict | None) -> dict[str, Any]:
    """Normalise lineage; `run_id` is accepted as another name for the search's `search_id`."""
    lineage = dict(lineage or {})
    if "run_id" in lineage:
        lineage.setdefault("search_id", lineage.pop("run_id"))
    unknown = sorted(set(lineage) - set(LINEAGE_KEYS))
    if unknown:
        raise ZooError(f"unknown lineage keys {unknown}; valid keys: {list(LINEAGE_KEYS)}")
    origin = lineage.get("origin") or "manual"
    if origin not in ORIGINS:
        raise ZooError(f"unknown lineage origin {origin!r}; choose one of {list(ORIGINS)}")
    parents = lineage.get("parents") or []
    if isinstance(parents, str) or not all(isinstance(p, str) for p in parents):
        raise ZooError(f"lineage parents must be a list of cell hashes, got {parents!r}")
    generation = lineage.get("generation")
    return {
        "parents": list(parents),
        "origin": origin,
        "operator": lineage.get("operator"),
        "generation": None if generation is None else int(generation),
        "search_id": None if lineage.get("search_id") is None else str(lineage["search_id"]),
    }


def run_record(result: Any, lineage: dict | None, cell: dict[str, Any]) -> Run:
    """Build the metadata of a new run from a `cellzoo.train.TrainResult`."""
    if result.status not in STATUSES:
        raise ZooError(f"run status {result.status!r} is not one of {list(STATUSES)}")
    config = result.config.to_dict()
    hidden = config["hidden"]
    emb = config.get("emb") or hidden
    layers = config.get("layers", 1)
    cell_params = cell_param_count(cell, emb, hidden) + (layers - 1) * cell_param_count(
        cell, hidden, hidden)
    return Run(
        run_id=new_run_id(), hash=cell["hash"], expr=cell["expr"], task=config["task"],
        status=result.status, val_ppl=float(result.val_ppl), test_ppl=float(result.test_ppl),
        params=int(result.params), cell_params=int(cell_params), seconds=float(result.seconds),
        tokens_per_s=float(result.tokens_per_s), tokens_trained=int(result.tokens_trained),
        device=str(result.device), error=result.error, config=config,
        config_key=result.config.key(), seed=int(config["seed"]), created=time.time(),
        has_weights=result.state_dict is not None, **check_lineage(lineage),
    )
