"""`cellzoo report`: the command around `cellzoo.report.page.write_report`."""

from __future__ import annotations

import json

import click
import matplotlib

from cellzoo.analysis.cache import AnalysisError
from cellzoo.cli.analysis import _cache, cache_opt, data_opt, no_cache_opt
from cellzoo.common.errors import UserError
from cellzoo.common.io import json_safe
from cellzoo.report.context import Options
from cellzoo.report.page import write_report
from cellzoo.zoo import ZooError


@click.command()
@click.option("--zoo", "zoo_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The HDF5 zoo to report on.")
@click.option("--run-dir", "run_dirs", multiple=True, type=click.Path(file_okay=False),
              help="A `cellzoo evolve` run directory (repeat: e.g. a search and a random "
                   "search, drawn side by side).")
@click.option("--task", default=None, help="Task of the cells shown (default: the run "
              "directories' task, else the zoo's only task).")
@click.option("--top", type=click.IntRange(min=1), default=Options.top, show_default=True,
              help="Runs in the heatmaps, the clustermap and the ensemble pool.")
@click.option("--rows", type=click.IntRange(min=1), default=Options.rows, show_default=True,
              help="Rows of the best-cells table.")
@click.option("--tokens", type=click.IntRange(min=2), default=Options.tokens, show_default=True,
              help="Validation tokens run through the cells for the similarity plots.")
@click.option("--eval-tokens", type=click.IntRange(min=2), default=None,
              help="Evaluate the ensemble on only the first N tokens of each split.")
@data_opt
@cache_opt
@no_cache_opt
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for index.html, its images and CSVs.")
@click.option("--json", "as_json", is_flag=True, help="Print the written paths as JSON.")
def report(zoo_path: str, run_dirs: tuple[str, ...], task: str | None, top: int, rows: int,
           tokens: int, eval_tokens: int | None, data_dir: str | None, cache: str | None,
           no_cache: bool, out_dir: str, as_json: bool) -> None:
    """Write a static HTML page (OUT/index.html, opens from disk) about a zoo and its searches:
    configurations, progress, best cells, ranker accuracy, hidden states, ensemble."""
    matplotlib.use("Agg")
    store = _cache(zoo_path, cache, no_cache)
    options = Options(task, top, rows, tokens, eval_tokens, data_dir)
    try:
        result = write_report(zoo_path, run_dirs, out_dir, options, store)
    except (ZooError, AnalysisError, OSError) as err:
        raise UserError(str(err)) from None
    if as_json:
        click.echo(json.dumps(json_safe(result)))
        return
    click.echo(f"wrote {result['index']}")
    for anchor, reason in result["unavailable"].items():
        if reason:
            click.echo(f"  {anchor}: not available: {reason}")
