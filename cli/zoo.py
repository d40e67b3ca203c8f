"""`cellzoo zoo ...`: list, show, export, import, stats and repair zoos of trained cells."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cellzoo.common.io import json_safe
from cellzoo.zoo.records import STATUSES, Run
from cellzoo.zoo.store import Zoo

EXPR_WIDTH = 48



@contextmanager
def _open(path: str, mode: str = "r") -> Iterator[Zoo]:
    with Zoo.open(path, mode) as zoo:
        yield zoo


path_arg = click.argument("path", type=click.Path(dir_okay=False))


@click.group()
def zoo() -> None:
    """Inspect, export, merge and repair zoos of trained cells (HDF5)."""


@zoo.command("list")
@path_arg
@click.option("--task", default=None, help="Only runs of this task.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only runs with it.")
@click.option("--top", "top_k", type=click.IntRange(min=1), default=None,
              help="Only the K ok runs with the lowest validation perplexity.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@click.option("--curves", is_flag=True, help="json: include each run's learning curve.")
def list_runs(path: str, task: str | None, status: str | None, top_k: int | None, fmt: str,
              curves: bool) -> None:
    """One row per run: hash, expr, task, status, perplexities, params, origin."""
    with _open(path) as z:
        if top_k is not None:
            runs = [r for r in z.top(top_k, task) if status in (None, r.status)]
        else:
            runs = list(z.runs(task, status))
        if fmt == "table":
            _table(runs, path)
        elif fmt == "json":
            rows = [r.to_dict() | ({"curve": r.curve} if curves else {}) for r in runs]
            click.echo(json.dumps(json_safe(rows), indent=1))
        else:
            click.echo(_csv(runs), nl=False)


def short(expr: str, width: int = EXPR_WIDTH) -> str:
    return expr if len(expr) <= width else expr[: width - 3] + "..."


def _table(runs: list[Run], path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from cellzoo.zoo.render import fmt

    table = Table(title=f"{path}: {len(runs)} runs", title_justify="left")
    for name in ("hash", "run", "expr", "task", "status", "val ppl", "test ppl", "params",
                 "origin"):
        table.add_column(name, no_wrap=True,
                         justify="right" if name in ("val ppl", "test ppl", "params") else "left")
    for r in runs:
        table.add_row(r.hash, r.run_id[:8], short(r.expr), r.task, r.status, fmt(r.val_ppl),
                      fmt(r.test_ppl), f"{r.params:,}", r.origin)
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _csv(runs: list[Run]) -> str:
    """Config keys become `config.<name>` columns; parents are joined by spaces."""
    rows = []
    for r in runs:
        row = {k: v for k, v in r.to_dict().items() if k != "config"}
        row["parents"] = " ".join(r.parents)
        row.update({f"config.{k}": v for k, v in r.config.items()})
        rows.append(row)
    fields = list(dict.fromkeys(k for row in rows for k in row)) or ["run_id"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


@zoo.command("show")
@path_arg
@click.argument("hash_prefix", metavar="HASH")
def show(path: str, hash_prefix: str) -> None:
    """A cell: DSL text, tree, every run with its learning curve, and its lineage."""
    from cellzoo.zoo.render import show_lines

    with _open(path) as z:
        click.echo("\n".join(show_lines(z, hash_prefix)))


@zoo.command("export")
@path_arg
@click.argument("hash_prefix", metavar="HASH")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--run", "run_prefix", default=None,
              help="Run id (prefix) to export; default: the cell's best ok run on --task.")
@click.option("--task", default=None,
              help="Task of the run (needed when the cell was trained on several).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Corpus folder for the vocabulary (else $CELLZOO_DATA or the cache).")
def export(path: str, hash_prefix: str, out_dir: str, run_prefix: str | None,
           task: str | None, data_dir: str | None) -> None:
    """Write DSL text, config, vocabulary, state_dict and a torch.export model (model.pt2)
    of a trained cell: text can be scored with plain torch (see README.txt in OUT)."""
    from cellzoo.zoo.export import choose_run, export_run

    with _open(path) as z:
        run = choose_run(z, hash_prefix, run_prefix, task)
        for file in export_run(z, run, Path(out_dir), data_dir):
            click.echo(str(file))


@zoo.command("import")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.argument("sources", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--without-weights", is_flag=True,
              help="Copy the runs' results and curves, not their weights: a small zoo that "
                   "a search's run directory can move with (docs/search.md).")
def import_zoos(dest: str, sources: tuple[str, ...], without_weights: bool) -> None:
    """Merge the runs of SOURCES into DEST (created if missing), skipping runs already there."""
    with _open(dest, "a") as z:
        for source in sources:
            added, skipped = z.import_from(source, weights=not without_weights)
            click.echo(f"{source}: {added} runs added, {skipped} already in {dest}")


@zoo.command("add")
@click.argument("dest", type=click.Path(dir_okay=False))
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Seconds to wait for another writer to release DEST.")
def add(dest: str, results: tuple[str, ...], lock_timeout: float) -> None:
    """Store training results that `cellzoo train --zoo` saved because it could not store
    them; a result DEST already holds is skipped. Each file is deleted once stored."""
    from cellzoo.zoo.pending import add_pending

    with Zoo.open(dest, "a", timeout=lock_timeout) as z:
        for result in results:
            run_id, added = add_pending(z, Path(result))
            click.echo(f"{result}: {'stored as' if added else 'already in the zoo as'} run "
                       f"{run_id}")


@zoo.command("stats")
@path_arg
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON.")
def stats(path: str, as_json: bool) -> None:
    """Counts by task, status and origin; the best run per task; file size."""
    with _open(path) as z:
        data = zoo_stats(z)
    if as_json:
        click.echo(json.dumps(json_safe(data), indent=1))
        return
    click.echo(f"{path}: {data['runs']} runs of {data['cells']} cells, "
               f"{data['bytes'] / 1e6:.2f} MB ({data['pending']} runs in the journal)")
    for key in ("by_task", "by_status", "by_origin"):
        counts = "  ".join(f"{k} {v}" for k, v in data[key].items())
        click.echo(f"{key.replace('_', ' '):10} {counts}")
    for task, best in data["best"].items():
        click.echo(f"best {task}: {best['val_ppl']:.2f} val ppl  {best['hash']}  "
                   f"{short(best['expr'])}")


def zoo_stats(z: Zoo) -> dict:
    runs = list(z.runs())
    best = {}
    for task in dict.fromkeys(r.task for r in runs):
        top = z.top(1, task)
        if top:
            best[task] = {k: getattr(top[0], k) for k in ("run_id", "hash", "expr", "val_ppl",
                                                          "test_ppl")}
    files = [z.path, *z.journal.entries()]
    return {
        "runs": len(runs), "cells": len(z.hashes()), "pending": z.pending_runs,
        "bytes": sum(f.stat().st_size for f in files if f.exists()),
        "by_task": dict(Counter(r.task for r in runs)),
        "by_status": dict(Counter(r.status for r in runs)),
        "by_origin": dict(Counter(r.origin for r in runs)),
        "best": best,
    }


@zoo.command("repair")
@path_arg
def repair_cmd(path: str) -> None:
    """Set aside unreadable journal entries, rebuild a damaged index, compact the journal."""
    from cellzoo.zoo.repair import repair

    for line in repair(path):
        click.echo(line)
