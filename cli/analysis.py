"""`cellzoo compare` and `cellzoo ensemble`: look at how zoo cells differ, and combine them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import matplotlib

from cellzoo.analysis import ensemble as ens
from cellzoo.analysis.activations import Text, activations, split_text, user_text
from cellzoo.analysis.cache import AnalysisCache, AnalysisError, default_cache_path
from cellzoo.analysis.compare import Comparison, comparison, draw_comparison
from cellzoo.analysis.selection import POOL, TOKENS, labels, select_runs
from cellzoo.analysis.similarity import similarity_matrix
from cellzoo.cli.progress import tracked
from cellzoo.common.errors import UserError
from cellzoo.common.io import json_safe
from cellzoo.train import CorpusNotFoundError, load_corpus
from cellzoo.zoo import Zoo, ZooError


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (AnalysisError, ZooError, CorpusNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None


def _cache(zoo_path: str, cache: str | None, no_cache: bool) -> AnalysisCache:
    if no_cache:
        return AnalysisCache(None)
    return AnalysisCache(cache or default_cache_path(zoo_path))


zoo_arg = click.argument("zoo_path", metavar="ZOO", type=click.Path(exists=True, dir_okay=False))
task_opt = click.option("--task", default=None, help="Task of the runs (default: the zoo's only "
                        "task).")
data_opt = click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
                        help="Folder with the corpus (or with <task>/ inside).")
cache_opt = click.option("--cache", type=click.Path(dir_okay=False), default=None,
                         help="Analysis cache file (default: ZOO.analysis.h5).")
no_cache_opt = click.option("--no-cache", is_flag=True, help="Neither read nor write a cache.")
runs_opt = click.option("--runs", default=None, help="Comma-separated run id prefixes: exactly "
                        "these runs (e.g. two seeds of one cell).")


def _prefixes(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


@click.command()
@zoo_arg
@click.option("--cells", default=None, help="Comma-separated cell hash prefixes (each cell's "
              "best run).")
@runs_opt
@click.option("--top", type=click.IntRange(min=1), default=None,
              help=f"The K runs with the lowest validation perplexity, copies of a better "
                   f"run left out (default {POOL}).")
@task_opt
@click.option("--text", "text_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Run the cells over this text (unknown words become <unk>).")
@click.option("--split", type=click.Choice(["valid", "test"]), default=None,
              help="Run the cells over this split of the corpus (default valid).")
@click.option("--tokens", type=click.IntRange(min=2), default=TOKENS, show_default=True,
              help="Number of tokens to record.")
@click.option("--layer", "layer_index", type=int, default=-1, show_default=True,
              help="Layer compared (negative: from the top).")
@data_opt
@cache_opt
@no_cache_opt
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for the PNGs and CSVs.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def compare(zoo_path: str, cells: str | None, runs: str | None, top: int | None,
            task: str | None,
            text_file: str | None, split: str | None, tokens: int, layer_index: int,
            data_dir: str | None, cache: str | None, no_cache: bool, out_dir: str,
            as_json: bool) -> None:
    """Run zoo cells over the same text; write activation heatmaps, CKA clustermap, similarity
    matrices (CKA, SVCCA) and the diversity-vs-gain plot into --out."""
    if sum(bool(v) for v in (cells, runs, top)) > 1:
        raise click.UsageError("give one of --cells, --runs and --top")
    if text_file and split:
        raise click.UsageError("give --text or --split, not both")
    matplotlib.use("Agg")  # files only, never a window
    with _errors(), Zoo.open(zoo_path, "r") as zoo:
        chosen = select_runs(zoo, _prefixes(cells), top or POOL, task, _prefixes(runs))
        corpus = load_corpus(chosen[0].task, data_dir)
        text = (user_text(corpus, Path(text_file).read_text(encoding="utf-8"), text_file, tokens)
                if text_file else split_text(corpus, split or "valid", tokens))
        store = _cache(zoo_path, cache, no_cache)
        recorded = {}
        for run in tracked(chosen, "recording hidden states"):
            recorded |= activations(zoo, [run], text, store)
        data = comparison(chosen, labels(chosen), recorded, text, layer_index)
        written = _write_compare(Path(out_dir), data)
    _echo_paths(written, as_json)


def _write_compare(out: Path, data: Comparison) -> dict[str, str]:
    """The figures, plus the similarity matrices and a per-cell table as CSV."""
    if data.cka is None:
        raise AnalysisError("comparing cells needs at least 2 runs with weights")
    paths = draw_comparison(data, out)
    paths |= {"cka": out / "similarity_cka.csv", "svcca": out / "similarity_svcca.csv",
              "cells": out / "cells.csv"}
    data.cka.to_csv(paths["cka"])
    similarity_matrix(data.reps, "svcca").to_csv(paths["svcca"])
    _cells_table(data.runs, data.names, data.logp, data.text).to_csv(paths["cells"], index=False)
    return {k: str(v) for k, v in paths.items()}


def _cells_table(runs, names, logp, text: Text):
    import pandas as pd

    return pd.DataFrame([{
        "cell": n, "run_id": r.run_id, "hash": r.hash, "task": r.task, "val_ppl": r.val_ppl,
        "test_ppl": r.test_ppl, "text_ppl": ens.perplexity(logp[n]), "text": text.source,
        "tokens": len(text), "expr": r.expr} for n, r in zip(names, runs, strict=True)])


def _echo_paths(paths: dict[str, str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(paths))
        return
    width = max(len(k) for k in paths)
    for name, path in paths.items():
        click.echo(f"{name:<{width}}  {path}")


@click.command()
@zoo_arg
@task_opt
@click.option("--top", type=click.IntRange(min=1), default=None,
              help=f"Pool: the K runs with the lowest validation perplexity, copies of a "
                   f"better run left out (default {POOL}).")
@runs_opt
@click.option("--select", type=click.Choice(ens.SELECTS), default=None,
              help="greedy (default): forward selection with replacement on the validation "
                   "split; top: the pool's first --size runs, equal weights.")
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="greedy: selection rounds (default 2 x pool); top: members (default pool).")
@click.option("--eval-tokens", type=click.IntRange(min=2), default=None,
              help="Evaluate on only the first N tokens of each split.")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Write the ensemble (runs and weights) to this JSON file.")
@click.option("--load", "load_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Evaluate an ensemble saved with --save instead of building one.")
@data_opt
@cache_opt
@no_cache_opt
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ensemble(zoo_path: str, task: str | None, top: int | None, runs: str | None,
             select: str | None,
             size: int | None, eval_tokens: int | None, save_path: str | None,
             load_path: str | None, data_dir: str | None, cache: str | None, no_cache: bool,
             as_json: bool) -> None:
    """Build an ensemble of zoo runs (or --load one) and print its members, weights and test
    perplexity beside its best member's and the uniform average of the pool."""
    if load_path and (top or runs or select or size or eval_tokens or task):
        raise click.UsageError("--load evaluates the saved ensemble as it is; drop --task, "
                               "--top, --runs, --select, --size and --eval-tokens")
    if top and runs:
        raise click.UsageError("give --top or --runs, not both")
    store = _cache(zoo_path, cache, no_cache)
    with _errors(), Zoo.open(zoo_path, "r") as zoo:
        if load_path:
            result = ens.load(zoo, load_path, data_dir, store)
        else:
            result = ens.build(zoo, task, top or POOL, select or "greedy", size, data_dir, store,
                               ens.Layout(tokens=eval_tokens), _prefixes(runs))
    if save_path:
        ens.save(result, save_path)
    if as_json:
        click.echo(json.dumps(json_safe(result.to_json() | {"saved": save_path})))
    else:
        _print_ensemble(result, save_path)


def _print_ensemble(result: ens.EnsembleResult, save_path: str | None) -> None:
    total = sum(m.weight for m in result.members)
    click.echo(f"task {result.task}   selection {result.select}   pool {len(result.pool)} runs")
    click.echo(f"{'member':<16} {'weight':>7} {'val ppl':>9} {'test ppl':>9}  run")
    for m in sorted(result.members, key=lambda m: -m.weight):
        click.echo(f"{m.label:<16} {m.weight:>3}/{total:<3} {m.val_ppl:>9.2f} "
                   f"{m.test_ppl:>9.2f}  {m.run_id}")
    click.echo(f"ensemble test ppl      {result.test_ppl:9.2f}   (valid {result.val_ppl:.2f})")
    click.echo(f"best member test ppl   {result.best_member_test_ppl:9.2f}   "
               f"({result.best_member}; ensemble gain {result.gain:.1%})")
    click.echo(f"uniform top-{len(result.pool)} test ppl {result.uniform_test_ppl:9.2f}")
    if save_path:
        click.echo(f"saved to {save_path}")
