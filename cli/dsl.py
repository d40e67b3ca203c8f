"""`cellzoo dsl ...`: check expressions and list the human-designed cells."""

from __future__ import annotations

import json

import click

from cellzoo.dsl.canonical import canonical_text, cell_hash
from cellzoo.dsl.library import LIBRARY, resolve_cell
from cellzoo.dsl.parse import DSLError
from cellzoo.dsl.tree import depth, node_count, op_counts, to_text, uses_memory
from cellzoo.dsl.validate import Limits


def describe(expr: str, limits: Limits) -> dict:
    """What `dsl check` reports for one valid cell."""
    node = resolve_cell(expr, limits)
    return {
        "expr": to_text(node),
        "canonical": canonical_text(node),
        "hash": cell_hash(node),
        "nodes": node_count(node),
        "depth": depth(node),
        "uses_memory": uses_memory(node),
        "op_counts": dict(sorted(op_counts(node).items())),
    }


CONTEXT = 60  # characters of the expression shown each side of an error


@click.group()
def dsl() -> None:
    """The cell language: check expressions, list the library."""


@dsl.command()
@click.argument("expr")
@click.option("--max-depth", type=int, default=Limits.max_depth, show_default=True)
@click.option("--max-nodes", type=int, default=Limits.max_nodes, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(expr: str, max_depth: int, max_nodes: int, as_json: bool) -> None:
    """Check EXPR (DSL text or a library name): canonical form, hash, size, memory use.

    Exits with code 2 and the located error when EXPR is not a valid cell.
    """
    try:
        info = describe(expr, Limits(max_depth, max_nodes))
    except DSLError as err:
        if as_json:
            click.echo(json.dumps({"valid": False, "error": err.reason, "column": err.column}))
        else:
            click.echo(f"invalid cell: {err}", err=True)
            if err.column is not None:
                start = max(0, err.column - 1 - CONTEXT)  # at most 2 x CONTEXT characters
                click.echo(f"  {expr[start:err.column - 1 + CONTEXT]}\n"
                           f"  {' ' * (err.column - 1 - start)}^", err=True)
        raise SystemExit(2) from None
    if as_json:
        click.echo(json.dumps({"valid": True, **info}))
        return
    for key in ("expr", "canonical", "hash", "nodes", "depth", "uses_memory"):
        click.echo(f"{key:12s} {info[key]}")
    click.echo(f"{'op_counts':12s} " + ", ".join(f"{k}={v}" for k, v in info["op_counts"].items()))


@dsl.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def library(as_json: bool) -> None:
    """The human-designed cells that seed every search."""
    rows = [{"name": c.name, "expr": c.expr, "hash": cell_hash(c.expr), "source": c.source}
            for c in LIBRARY.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']:14s} {row['hash']}  {row['expr']}")
        click.echo(f"{'':14s} source: {row['source']}")
