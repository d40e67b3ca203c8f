"""The analysis plots, each in two steps: a data function returning a tidy DataFrame (tested)
and a drawing function taking that frame and returning a matplotlib Figure (the caller saves
it, e.g. with `common.figures.save_figure`). The report page reuses both steps.

- activation heatmaps: one panel per cell, hidden units over the words of one sentence,
  one colour scale for all panels;
- similarity clustermap: the CKA (or SVCCA) matrix ordered by average-linkage clustering on
  1 - similarity (scipy's linkage handed to seaborn), labels with each cell's perplexity;
- diversity vs gain: per pair of cells, the gain of their two-member ensemble over the
  better of them against their dissimilarity 1 - CKA.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform
from scipy.stats import pearsonr, spearmanr

from cellzoo.analysis.ensemble import ensemble_logp, perplexity

#: clip the shared colour scale at this percentile of |activation| so one outlier cell
#: (ReLU, LayerNorm) does not wash out the others
COLOUR_PERCENTILE = 99.0


# --- activation heatmaps ----------------------------------------------------------------------


def heatmap_frame(acts: Mapping[str, np.ndarray], words: Sequence[str],
                  max_units: int = 64) -> pd.DataFrame:
    """Tidy rows (cell, step, word, unit, value) of each cell's [steps, units] hidden states,
    the first ``max_units`` units of each."""
    frames = []
    for cell, values in acts.items():
        values = np.asarray(values)[: len(words), :max_units]
        steps, units = values.shape
        frames.append(pd.DataFrame({
            "cell": cell, "step": np.repeat(np.arange(steps), units),
            "word": np.repeat(np.asarray(words[:steps], dtype=object), units),
            "unit": np.tile(np.arange(units), steps), "value": values.ravel()}))
    return pd.concat(frames, ignore_index=True)


def first_sentence(words: Sequence[str], max_len: int = 40, eos: str = "<eos>") -> int:
    """Steps of the first sentence (through its end marker), at most ``max_len``."""
    for i, word in enumerate(words[:max_len]):
        if word == eos and i > 0:
            return i + 1
    return min(len(words), max_len)


def draw_heatmaps(frame: pd.DataFrame) -> Figure:
    cells = list(dict.fromkeys(frame["cell"]))
    limit = float(np.percentile(np.abs(frame["value"]), COLOUR_PERCENTILE)) or 1.0
    steps = frame["step"].max() + 1
    heights = [frame.loc[frame["cell"] == c, "unit"].max() + 1 for c in cells]
    fig, axes = plt.subplots(len(cells), 1, squeeze=False, sharex=True, layout="constrained",
                             figsize=(max(6.0, 0.3 * steps + 2), 1.0 + 0.025 * sum(heights)
                                      + 0.5 * len(cells)),
                             gridspec_kw={"height_ratios": heights})
    for ax, cell in zip(axes[:, 0], cells, strict=True):
        part = frame[frame["cell"] == cell]
        grid = part.pivot(index="unit", columns="step", values="value")
        mesh = ax.imshow(grid.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                         interpolation="nearest")
        ax.set_ylabel(f"{cell}\nunit", fontsize=8)
        ax.tick_params(labelsize=7)
    words = frame.drop_duplicates("step").sort_values("step")["word"]
    axes[-1, 0].set_xticks(range(steps), labels=list(words), rotation=90, fontsize=8)
    fig.colorbar(mesh, ax=axes[:, 0].tolist(), shrink=0.6, label="hidden state")
    fig.suptitle("hidden units over time (same colour scale for every cell)")
    return fig


# --- similarity clustermap --------------------------------------------------------------------


def clustermap_frame(sim: pd.DataFrame, ppl: Mapping[str, float]) -> pd.DataFrame:
    """Tidy rows (cell, other, similarity, ppl) of a square similarity matrix; ``ppl`` is the
    perplexity of ``cell``."""
    frame = sim.rename_axis(index="cell", columns="other").stack().rename("similarity")
    frame = frame.reset_index()
    frame["ppl"] = frame["cell"].map(ppl)
    return frame


def draw_clustermap(frame: pd.DataFrame, measure: str = "CKA", ppl_label: str = "val ppl"
                    ) -> Figure:
    cells = list(dict.fromkeys(frame["cell"]))
    matrix = frame.pivot(index="cell", columns="other", values="similarity").loc[cells, cells]
    ppl = frame.drop_duplicates("cell").set_index("cell")["ppl"]
    names = [f"{c} ({ppl_label} {ppl[c]:.1f})" for c in cells]
    matrix = pd.DataFrame(matrix.to_numpy(), index=names, columns=names)
    options = {"row_cluster": False, "col_cluster": False}
    if len(cells) > 2:
        distance = np.clip(1.0 - np.nan_to_num(matrix.to_numpy(), nan=0.0), 0.0, None)
        distance = (distance + distance.T) / 2
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method="average")
        options = {"row_linkage": tree, "col_linkage": tree}
    size = 2.5 + 0.9 * len(cells)
    grid = sns.clustermap(matrix, annot=True, fmt=".2f", vmin=0.0, vmax=1.0, cmap="viridis",
                          figsize=(size, size), dendrogram_ratio=0.15, **options)
    grid.figure.suptitle(f"{measure} similarity of hidden states (clustered on 1 - {measure})",
                         y=1.02)
    return grid.figure


# --- diversity vs gain ------------------------------------------------------------------------


def diversity_frame(logp: Mapping[str, np.ndarray], sim: pd.DataFrame) -> pd.DataFrame:
    """Per pair of cells: dissimilarity 1 - sim, each one's perplexity, the perplexity of their
    equal-weight ensemble and its gain 1 - pair / better member (both on the same tokens)."""
    rows = []
    for a, b in combinations(logp, 2):
        ppl_a, ppl_b = perplexity(logp[a]), perplexity(logp[b])
        pair = perplexity(ensemble_logp(np.stack([logp[a], logp[b]], axis=1), [1, 1]))
        best = min(ppl_a, ppl_b)
        rows.append({"cell_a": a, "cell_b": b, "dissimilarity": 1.0 - float(sim.loc[a, b]),
                     "ppl_a": ppl_a, "ppl_b": ppl_b, "pair_ppl": pair, "gain": 1.0 - pair / best})
    columns = ["cell_a", "cell_b", "dissimilarity", "ppl_a", "ppl_b", "pair_ppl", "gain"]
    return pd.DataFrame(rows, columns=columns)


def diversity_stats(frame: pd.DataFrame) -> dict[str, float | int]:
    """Does a pair's gain go with its dissimilarity? Spearman rho over the pairs, and the
    partial rho with the members' quality held fixed: the better member's log perplexity
    and the gap |log ppl_a - log ppl_b|. A more dissimilar partner is often also a worse
    one (less gain over the better member), and weaker pairs gain more from averaging, so
    both would otherwise pass for an effect of dissimilarity. Partial rho is the Pearson
    correlation of the ranks' residuals after a linear fit on the covariates' ranks (NaN
    with fewer than 5 pairs, a constant column, or covariates that fix one of the two)."""
    log_a, log_b = np.log(frame["ppl_a"].to_numpy()), np.log(frame["ppl_b"].to_numpy())
    ranks = pd.DataFrame({"d": frame["dissimilarity"], "g": frame["gain"],
                          "level": np.minimum(log_a, log_b), "gap": np.abs(log_a - log_b)}
                         ).rank()
    out: dict[str, float | int] = {"pairs": len(frame), "rho": math.nan,
                                   "partial_rho": math.nan}
    if len(frame) < 5 or (ranks[["d", "g"]].nunique() < 2).any():
        return out
    out["rho"] = float(spearmanr(ranks["d"], ranks["g"]).statistic)
    design = np.column_stack([np.ones(len(ranks)), ranks["level"], ranks["gap"]])
    resid = [ranks[c] - design @ np.linalg.lstsq(design, ranks[c], rcond=None)[0]
             for c in ("d", "g")]
    if min(np.std(r) for r in resid) > 1e-9:
        out["partial_rho"] = float(pearsonr(*resid).statistic)
    return out


#: pairs up to which each point is labelled with its two cells (more would overlap)
LABELLED_PAIRS = 12


def draw_diversity(frame: pd.DataFrame, measure: str = "CKA") -> Figure:
    """Gain against dissimilarity per pair, coloured by the better member's perplexity (the
    quality `diversity_stats` holds fixed); points labelled while there are few."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    better = frame[["ppl_a", "ppl_b"]].min(axis=1).round(1).rename(
        "better member's ppl\n(on the compared tokens)")
    sns.scatterplot(data=frame.assign(**{better.name: better}), x="dissimilarity", y="gain",
                    hue=better.name, palette="viridis", ax=ax, s=50)
    if len(frame) <= LABELLED_PAIRS:
        for row in frame.itertuples():
            ax.annotate(f"{row.cell_a}+{row.cell_b}", (row.dissimilarity, row.gain),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))  # decimals as needed
    title = "pair ensemble gain vs dissimilarity"
    stats = diversity_stats(frame)
    if not math.isnan(stats["rho"]):
        title += f"\n(Spearman {stats['rho']:.2f}; {stats['partial_rho']:.2f} with the members' " \
                 "quality held fixed)"
    ax.set(xlabel=f"1 - {measure}", ylabel="gain over the better member (perplexity)",
           title=title)
    return fig
