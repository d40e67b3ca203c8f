"""The ranker against the count forests on NAS-Bench-NLP, at several train sizes.

    CELLZOO_DATA=/work/shared/data OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/ranker_nbnlp.py [--sizes 100,1000,10000] [--seeds 3] \\
        [--loss pairwise] [--epochs N] [--out results.json]

Per size: mean Kendall tau / Spearman rho (predicted log ppl vs final test ppl of
the finished test cells), divergence AUC (all test cells), tau with held-out
twins of training cells removed, on the better half, and on the WikiText-2 runs
(transfer), over the seeds, for every model on the same splits
(`cellzoo.ranker.evaluate.eval_nbnlp`). Also prints how often the mappings
between NAS-Bench-NLP recipes and DSL cells are exact, both ways: all recipes,
and the library cells plus ``--random-cells`` random valid cells of the search.
"""

from __future__ import annotations

import json
import time

import click

from cellzoo.dsl import parse
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.variation import Variation
from cellzoo.ranker.evaluate import eval_nbnlp
from cellzoo.ranker.fit import LOSSES, RankerConfig
from cellzoo.ranker.nbnlp import dsl_mapping_report, load_runs, mapping_report


def dsl_mappings(random_cells: int) -> dict[str, dict]:
    """DSL -> NAS-Bench-NLP on the library, and on random valid cells of both operator sets."""
    out = {"library": dsl_mapping_report([parse(c.expr) for c in LIBRARY.values()])}
    for level in ("core", "extended"):
        variation = Variation(level, seed=0)
        cells = [variation.random_cell() for _ in range(random_cells)]
        out[f"random-{level}"] = dsl_mapping_report(cells)
    return out


@click.command()
@click.option("--sizes", default="100,1000,10000", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--test-size", type=int, default=2000, show_default=True)
@click.option("--loss", type=click.Choice(LOSSES), default="pairwise", show_default=True)
@click.option("--epochs", type=int, default=None, help="Cap on training epochs.")
@click.option("--random-cells", type=int, default=1000, show_default=True)
@click.option("--data", default=None, help="Folder with ptb_single_run.jsonl.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write all results.")
def main(sizes: str, seeds: int, test_size: int, loss: str, epochs: int | None,
         random_cells: int, data: str | None, out: str | None) -> None:
    runs = load_runs(data)
    wt2 = load_runs(data, dataset="wikitext-2")
    report = {"recipe_to_dsl": mapping_report(runs), "dsl_to_recipe": dsl_mappings(random_cells)}
    click.echo("mappings: " + json.dumps(report))
    results = []
    for size in (int(s) for s in sizes.split(",") if s):
        start = time.perf_counter()
        config = RankerConfig(loss=loss, **({"epochs": epochs} if epochs else {}))
        res = eval_nbnlp(runs, size, test_size, seeds, config, wt2_runs=wt2,
                         progress=lambda line, n=size: click.echo(f"  [{n}] {line}", err=True))
        res["seconds"] = time.perf_counter() - start
        results.append(res)
        for model, m in res["mean"].items():
            click.echo(f"train {size:>6} {model:12}: " + " ".join(
                f"{k} {v:.3f}" for k, v in m.items()))
        click.echo(f"  ({res['seconds']:.0f}s)")
    if out:
        with open(out, "w") as f:
            json.dump({"mappings": report, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
