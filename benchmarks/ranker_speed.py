"""Ranker speed on CPU: cells scored per second, and training time per epoch.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ranker_speed.py [--cells 10000] [--json]

Scoring counts everything a caller pays for: DSL trees -> graphs -> packed batch
-> forward. Training: one epoch over the same cells with random targets
(batch 128, the default configuration).
"""

from __future__ import annotations

import json
import math
import random
import time

import click
import numpy as np
import torch

from cellzoo.dsl import node_count
from cellzoo.ranker.fit import Ranker, RankerConfig, examples
from cellzoo.ranker.graph import pack
from cellzoo.ranker.random_cells import random_tree


@click.command()
@click.option("--cells", type=int, default=10_000, show_default=True)
@click.option("--depth", type=int, default=8, show_default=True, help="Max depth of random trees.")
@click.option("--repeats", type=int, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(cells: int, depth: int, repeats: int, as_json: bool) -> None:
    rng = random.Random(0)
    trees = [random_tree(rng, depth) for _ in range(cells)]
    ranker = Ranker(RankerConfig())
    score_s, pack_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        pack(trees)
        pack_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        ranker.score(trees)
        score_s.append(time.perf_counter() - start)
    runs = [(t, math.exp(4 + rng.random()), "ok" if rng.random() > 0.2 else "diverged")
            for t in trees]
    data = examples(runs)
    start = time.perf_counter()
    Ranker(RankerConfig(epochs=1, val_fraction=0.0)).fit(data)
    epoch_s = time.perf_counter() - start
    result = {
        "cells": cells, "mean_nodes": float(np.mean([node_count(t) for t in trees])),
        "threads": torch.get_num_threads(),
        "score_seconds": min(score_s), "cells_scored_per_s": cells / min(score_s),
        "pack_seconds": min(pack_s), "train_epoch_seconds": epoch_s,
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        for k, v in result.items():
            click.echo(f"{k:22} {v:.3f}" if isinstance(v, float) else f"{k:22} {v}")


if __name__ == "__main__":
    main()
