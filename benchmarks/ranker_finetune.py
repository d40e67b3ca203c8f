"""Fine-tuning a prior on a few results of a new task: NAS-Bench-NLP PTB -> WikiText-2.

    CELLZOO_DATA=/work/shared/data OMP_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/ranker_finetune.py [--train-size 1000] \\
        [--shots 10,30,100] [--seeds 3]

A prior is fitted on ``--train-size`` random PTB architectures (the PTB head only;
no WikiText-2 run is seen). Then, per seed, ``k`` random finished WikiText-2
runs are the "search's first results" of a new task: the prior fine-tuned on
them (`from_prior` + `fit`), the prior alone (zero-shot) and a cold
ranker fitted on the same ``k`` runs rank the other WikiText-2 runs (Kendall
tau against final test perplexity; runs with a twin in the PTB training set are
left out of the judged ones).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np

from cellzoo.ranker.evaluate import nbnlp_examples
from cellzoo.ranker.fit import Ranker, RankerConfig
from cellzoo.ranker.graph import pack
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.ranker.nbnlp import load_runs, recipe_key, recipe_to_graph
from cellzoo.ranker.prior import build_prior, from_prior

TASK = "new-task"


@click.command()
@click.option("--train-size", type=int, default=1000, show_default=True)
@click.option("--shots", default="10,30,100", show_default=True)
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--data", default=None, help="Folder with the NAS-Bench-NLP files.")
def main(train_size: int, shots: str, seeds: int, data: str | None) -> None:
    runs = load_runs(data)
    order = np.random.default_rng(0).permutation(len(runs))[:train_size]
    ptb, _ = nbnlp_examples([runs[i] for i in order])
    seen = {recipe_key(runs[i].recipe) for i in order}
    wt2 = [r for r in load_runs(data, dataset="wikitext-2") if r.finished]
    wt2 = [r for r in wt2 if recipe_key(r.recipe) not in seen]
    cells = [recipe_to_graph(r.recipe) for r in wt2]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prior.pt"
        build_prior(ptb, config=RankerConfig()).save(path, with_prior=False)
        rows = []
        for k in (int(s) for s in shots.split(",")):
            for seed in range(seeds):
                pick = np.random.default_rng(seed).permutation(len(wt2))
                shot, rest = pick[:k], pick[k:]
                results = [(cells[i], wt2[i].val_ppl, "ok", TASK) for i in shot]
                packed = pack([cells[i] for i in rest])
                true = np.log([wt2[i].test_ppl for i in rest])
                zero = from_prior(path, task=TASK)
                tuned = from_prior(path, task=TASK).fit(results)
                cold = Ranker(RankerConfig(seed=seed)).fit(results)
                row = {"k": k, "seed": seed, "judged": len(rest)}
                for name, r in (("zero_shot", zero), ("fine_tuned", tuned), ("cold", cold)):
                    row[name] = rank_metrics(-r.score(packed, task=TASK), true)["tau"]
                rows.append(row)
                click.echo(json.dumps(row), err=True)
            mine = [r for r in rows if r["k"] == k]
            click.echo(f"k {k:>4}: " + "  ".join(
                f"{m} tau {np.mean([r[m] for r in mine]):.3f}"
                for m in ("zero_shot", "fine_tuned", "cold")))


if __name__ == "__main__":
    main()
