"""The finalists' chart: how the cells a ladder search trained at its highest rung ranked
among themselves at every rung on the way.

The data are `progress_summary`'s ``finalists`` (each with ``val_by_rung``); the chart is a
bump chart, one panel per search, one line per finalist from rung 0 to the top, at its rank
among the search's finalists at each rung (1 is the best). A cell that led early and fell
behind, or the reverse, shows as lines that cross: the picture of how well each rung
predicts the top one for the cells that got there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellzoo.common.figures import save_figure
from cellzoo.dsl import cell_hash
from cellzoo.dsl.library import LIBRARY

_LIBRARY_NAMES = {cell_hash(cell.expr): name for name, cell in LIBRARY.items()}


def ok_finalists(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The finalists of one run (`progress_summary` output) whose top-rung training ran ok."""
    return [f for f in run.get("finalists", []) if f["status"] == "ok"]


def tau_text(taus: list[float | None]) -> str:
    """Per-rung taus (`rung_taus`) as one line, '-' where there is none."""
    return ", ".join("-" if t is None else f"{t:.2f}" for t in taus)


def finalist_ranks(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ok finalist and rung of each run (`progress_summary` output): run,
    ``name`` (a library cell's name, else the hash's first 8 characters), origin, rung,
    val_ppl, ``rank`` among the run's ok finalists at that rung (1 = best; nan where the
    cell has no result there) and the finalist's top-rung ``test_ppl``."""
    rows = []
    for run in runs:
        for finalist in ok_finalists(run):
            name = _LIBRARY_NAMES.get(finalist["hash"], finalist["hash"][:8])
            for rung, val in enumerate(finalist["val_by_rung"]):
                rows.append({"run": run["run"], "name": name, "origin": finalist["origin"],
                             "rung": rung, "val_ppl": np.nan if val is None else val,
                             "test_ppl": finalist["test_ppl"]})
    frame = pd.DataFrame(rows, columns=["run", "name", "origin", "rung", "val_ppl",
                                        "test_ppl"])
    frame["rank"] = frame.groupby(["run", "rung"])["val_ppl"].rank(method="min")
    return frame


def draw_finalists(runs: list[dict[str, Any]], out: str | Path) -> Path:
    """The bump chart of every run with finalists (PNG at ``out``); a ValueError when no
    run has an ok finalist (a proxy search, or a ladder search before its first promotion
    ends)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    ranks = finalist_ranks(runs)
    if ranks.empty:
        raise ValueError("no search has a finalist yet (a cell trained ok at its highest "
                         "rung above rung 0)")
    sns.set_theme(style="whitegrid")
    names = list(dict.fromkeys(ranks["run"]))
    sizes = [1.2 + 0.38 * ranks.loc[ranks["run"] == run, "name"].nunique() for run in names]
    fig, axes = plt.subplots(len(names), 1, squeeze=False, figsize=(8.5, 0.6 + sum(sizes)),
                             gridspec_kw={"height_ratios": sizes})
    origins = list(dict.fromkeys(ranks["origin"]))
    palette = dict(zip(origins, sns.color_palette(n_colors=len(origins)), strict=True))
    for ax, run in zip(axes[:, 0], names, strict=True):
        _draw_run(ax, ranks[ranks["run"] == run], palette)
        ax.set_title(f"{run}: rank at each rung (1 = best val ppl)", fontsize=11)
    handles = [plt.Line2D([], [], color=palette[o], marker="o", label=o) for o in origins]
    axes[0, 0].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.3, 1))
    fig.tight_layout()
    return save_figure(fig, out)


def _draw_run(ax, ranks: pd.DataFrame, palette: dict[str, Any]) -> None:
    """One search's lines, each labelled at the top rung with its name and test ppl."""
    top = int(ranks["rung"].max())
    for name, path in ranks.groupby("name", sort=False):
        path = path.dropna(subset=["rank"])
        colour = palette[path["origin"].iloc[0]]
        ax.plot(path["rung"], path["rank"], marker="o", color=colour, alpha=0.85)
        end = path[path["rung"] == top]
        if len(end):
            test = end["test_ppl"].iloc[0]
            label = name if test is None or pd.isna(test) else f"{name}  (test {test:.2f})"
            ax.annotate(label, (top, end["rank"].iloc[0]), xytext=(8, 0),
                        textcoords="offset points", va="center", fontsize=8)
    count = int(ranks["rank"].max())
    ax.set_ylim(count + 0.5, 0.5)
    ax.set_yticks(range(1, count + 1))
    ax.set_xticks(range(top + 1))
    ax.set_xlim(-0.2, top + 0.2)
    ax.set_xlabel("rung")
    ax.set_ylabel("rank among the finalists")


def rung_taus(run: dict[str, Any]) -> list[float | None]:
    """Kendall tau between each rung's validation perplexity and the top rung's test
    perplexity, over one run's ok finalists that have both (None where fewer than three
    do)."""
    from scipy.stats import kendalltau

    ok = [f for f in ok_finalists(run) if f["test_ppl"] is not None]
    taus: list[float | None] = []
    for rung in range(len(ok[0]["val_by_rung"]) if ok else 0):
        pairs = [(f["val_by_rung"][rung], f["test_ppl"]) for f in ok
                 if f["val_by_rung"][rung] is not None]
        tau = kendalltau(*zip(*pairs, strict=True)).statistic if len(pairs) >= 3 else None
        taus.append(None if tau is None or np.isnan(tau) else float(tau))
    return taus
