"""Plain-text views of a cell for `cellzoo zoo show`: its tree, curves and lineage."""

from __future__ import annotations

import math

from cellzoo.dsl import Node, parse
from cellzoo.zoo.records import Run
from cellzoo.zoo.store import Zoo


def tree_lines(node: Node) -> list[str]:
    """The tree drawn as indented text, one node per line, children two spaces deeper."""
    lines, stack = [], [(node, 0)]
    while stack:
        n, level = stack.pop()
        lines.append("  " * level + n.op)
        stack.extend((c, level + 1) for c in reversed(n.children))
    return lines


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def curve_lines(curve: list[dict]) -> list[str]:
    if not curve:
        return ["(no learning curve)"]
    lines = [f"{'tokens':>12} {'train_loss':>11} {'val_ppl':>10}"]
    for row in curve:
        lines.append(f"{int(row['tokens']):>12,} {fmt(row.get('train_loss'), 4):>11} "
                     f"{fmt(row.get('val_ppl')):>10}")
    return lines


def lineage_text(run: Run) -> str:
    parts = [run.origin]
    if run.operator:
        parts.append(f"operator {run.operator}")
    if run.generation is not None:
        parts.append(f"generation {run.generation}")
    if run.search_id:
        parts.append(f"search {run.search_id}")
    return ", ".join(parts)


def lineage_lines(zoo: Zoo, cell_hash: str, max_depth: int = 20) -> list[str]:
    """Ancestors of a cell, each parent one level deeper; parents not in this zoo are marked."""
    lines: list[str] = []
    seen: set[str] = set()
    stack = [(cell_hash, 0)]
    by_hash: dict[str, list[Run]] = {}  # one pass over the runs, not two per ancestor
    for r in zoo.runs():
        by_hash.setdefault(r.hash, []).append(r)
    while stack:
        h, level = stack.pop()
        if h not in by_hash:
            lines.append("  " * level + f"{h}  (not in this zoo)")
            continue
        run = by_hash[h][0]
        lines.append("  " * level + f"{h}  {run.expr}  [{lineage_text(run)}]")
        if h in seen or level >= max_depth:
            continue
        seen.add(h)
        parents = dict.fromkeys(p for r in by_hash[h] for p in r.parents)
        stack.extend((p, level + 1) for p in reversed(parents))
    return lines


def show_lines(zoo: Zoo, hash_prefix: str) -> list[str]:
    cell = zoo.cell(hash_prefix)
    lines = [f"cell   {cell.hash}", f"expr   {cell.expr}",
             f"nodes  {cell.node_count}   depth {cell.depth}   ops " +
             " ".join(f"{k}:{v}" for k, v in cell.op_counts.items()), "", "tree"]
    lines += ["  " + line for line in tree_lines(parse(cell.expr))]
    for run in cell.runs:
        lines += ["", f"run {run.run_id}  task {run.task}  status {run.status}  "
                      f"val {fmt(run.val_ppl)}  test {fmt(run.test_ppl)}  params {run.params:,}",
                  f"  seed {run.seed}  config {run.config_key}  {run.seconds:.1f} s on "
                  f"{run.device}  lineage: {lineage_text(run)}"]
        if run.error:
            lines.append(f"  error: {run.error.strip()}")
        lines += ["  " + line for line in curve_lines(run.curve)]
    lines += ["", "lineage"] + ["  " + line for line in lineage_lines(zoo, cell.hash)]
    return lines
