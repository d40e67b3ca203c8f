"""The ranker against the operator-count random forest on NAS-Bench-NLP, at several train sizes.

    CELLZOO_DATA=/work/shared/data OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/ranker_nbnlp.py [--sizes 100,1000,10000] [--seeds 3] \\
        [--loss pairwise] [--epochs N] [--out results.json]

Per size: mean Kendall tau / Spearman rho (predicted log ppl vs final test ppl of
the finished test cells) and divergence AUC (all test cells) over the seeds, for
both models, on the same splits (`cellzoo.ranker.evaluate.eval_nbnlp`). Also
prints how often the recipe -> DSL mapping is inexact.
"""

from __future__ import annotations

import json
import time

import click

from cellzoo.ranker.evaluate import eval_nbnlp
from cellzoo.ranker.fit import LOSSES, RankerConfig
from cellzoo.ranker.nbnlp import load_runs, mapping_report


@click.command()
@click.option("--sizes", default="100,1000,10000", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--test-size", type=int, default=2000, show_default=True)
@click.option("--loss", type=click.Choice(LOSSES), default="pairwise", show_default=True)
@click.option("--epochs", type=int, default=None, help="Cap on training epochs.")
@click.option("--data", default=None, help="Folder with ptb_single_run.jsonl.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write all results.")
def main(sizes: str, seeds: int, test_size: int, loss: str, epochs: int | None,
         data: str | None, out: str | None) -> None:
    runs = load_runs(data)
    report = mapping_report(runs)
    click.echo("recipe -> DSL mapping: " + json.dumps(report))
    results = []
    for size in (int(s) for s in sizes.split(",")):
        start = time.perf_counter()
        config = RankerConfig(loss=loss, **({"epochs": epochs} if epochs else {}))
        res = eval_nbnlp(runs, size, test_size, seeds, config,
                         progress=lambda line, n=size: click.echo(f"  [{n}] {line}", err=True))
        res["seconds"] = time.perf_counter() - start
        results.append(res)
        r, b = res["mean"]["ranker"], res["mean"]["baseline"]
        click.echo(f"train {size:>6}: ranker tau {r['tau']:.3f} rho {r['rho']:.3f} "
                   f"auc {r['auc']:.3f} | rf tau {b['tau']:.3f} rho {b['rho']:.3f} "
                   f"auc {b['auc']:.3f} | {res['seconds']:.0f}s")
    if out:
        with open(out, "w") as f:
            json.dump({"mapping": report, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
