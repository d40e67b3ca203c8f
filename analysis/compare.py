"""The comparison of zoo cells over one text: its data (frames) and its figures.

`cellzoo compare` and the report page both draw from `comparison` and
`draw_comparison`, so the two always show the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellzoo.analysis import plots
from cellzoo.analysis.activations import Text, layer
from cellzoo.analysis.similarity import similarity_matrix
from cellzoo.common.figures import save_figure
from cellzoo.common.io import json_safe
from cellzoo.zoo import Run


@dataclass
class Comparison:
    """Hidden states of several runs over the same tokens, and what is derived from them."""

    runs: list[Run]
    names: list[str]
    text: Text
    reps: dict[str, np.ndarray]  # label -> hidden states [tokens, units] of the compared layer
    logp: dict[str, np.ndarray]  # label -> log-probability of each next token
    cka: pd.DataFrame | None  # None with fewer than two runs

    @property
    def constant(self) -> list[str]:
        """Runs whose hidden state never varies over the text (their CKA is undefined)."""
        return [n for n, v in self.reps.items() if not np.any(np.std(v, axis=0) > 0)]


def comparison(runs: Sequence[Run], names: Sequence[str], recorded: dict[str, dict],
               text: Text, layer_index: int = -1) -> Comparison:
    """The data step: per-run representations and their CKA matrix."""
    arrays = [recorded[r.run_id] for r in runs]
    reps = {n: layer(a, layer_index) for n, a in zip(names, arrays, strict=True)}
    logp = {n: a["target_logp"] for n, a in zip(names, arrays, strict=True)}
    cka = similarity_matrix(reps, "cka") if len(runs) >= 2 else None
    return Comparison(list(runs), list(names), text, reps, logp, cka)


def draw_comparison(c: Comparison, out: Path) -> dict[str, Path]:
    """The drawing step: heatmaps.png, and with two runs or more clustermap.png and
    diversity.png (plus the pair frame as pairs.csv and `plots.diversity_stats` as
    diversity_stats.json) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    steps = plots.first_sentence(c.text.words)
    heat = plots.heatmap_frame({n: v[:steps] for n, v in c.reps.items()}, c.text.words[:steps])
    paths = {"heatmaps": save_figure(plots.draw_heatmaps(heat), out / "heatmaps.png")}
    if c.cka is None:
        return paths
    val_ppl = {n: r.val_ppl for n, r in zip(c.names, c.runs, strict=True)}
    pairs = plots.diversity_frame(c.logp, c.cka)
    paths["clustermap"] = save_figure(
        plots.draw_clustermap(plots.clustermap_frame(c.cka, val_ppl)), out / "clustermap.png")
    paths["diversity"] = save_figure(plots.draw_diversity(pairs), out / "diversity.png")
    paths["pairs"] = out / "pairs.csv"
    pairs.to_csv(paths["pairs"], index=False)
    paths["diversity_stats"] = out / "diversity_stats.json"
    paths["diversity_stats"].write_text(json.dumps(json_safe(plots.diversity_stats(pairs))) + "\n")
    return paths
