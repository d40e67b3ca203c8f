"""The search-progress plot: a data step (a tidy DataFrame from run directories) and a
drawing step (seaborn, headless).

Each row of the frame is one trained candidate of one run, in training order:
its validation perplexity and the best validation perplexity of that run so far, and the
run's kind of search (its "arm": strategy plus plug-ins, e.g. aging+ranker+controller).
Results reused from the zoo cost no training and are left out. A ladder search's rows
are its rung results: each has its ``rung``, and the best so far is per rung (a rung's
perplexities are never compared with another's); the plot draws one best curve per rung.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellzoo.common.errors import UserError
from cellzoo.evolve.rundir import EVALUATIONS_LOG, RunDir

#: a point this many times the median of the plot's perplexities is an outlier
OUTLIER = 10

COLUMNS = ["run", "arm", "n", "rung", "val_ppl", "status", "origin", "best_so_far", "hash",
           "expr"]


class ProgressDataError(UserError, ValueError):
    """A folder given as a run directory holds no search log."""


def progress_frame(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per trained candidate: run name, kind of search (``arm``), training number
    ``n`` (1-based), ladder ``rung`` (0 for a proxy search), its val_ppl (nan unless ok),
    status, origin, and the run's ``best_so_far`` val_ppl at that rung."""
    frames = []
    for label, run_dir in zip(_labels(run_dirs), run_dirs, strict=True):
        files = RunDir(run_dir)
        if not files.is_search:
            raise ProgressDataError(f"{run_dir} is not a search run directory (no "
                                    f"{EVALUATIONS_LOG}; make one with `cellzoo evolve`)")
        rows = [r for r in files.evaluations() if not r.get("reused")]
        frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("run", "arm", "n",
                                                                           "best_so_far")])
        frame["rung"] = frame["rung"].fillna(0).astype(int)
        frame["val_ppl"] = pd.to_numeric(frame["val_ppl"], errors="coerce").astype(float)
        frame.loc[frame["status"] != "ok", "val_ppl"] = np.nan
        frame.insert(0, "run", label)
        frame.insert(1, "arm", _kind(files))
        frame.insert(2, "n", np.arange(1, len(frame) + 1))
        frame["best_so_far"] = frame.groupby("rung")["val_ppl"].cummin()
        frames.append(frame[COLUMNS])
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _kind(files: RunDir) -> str:
    """The run's kind of search from its stored configuration ("search" if unreadable)."""
    try:
        return files.config().kind
    except (OSError, ValueError):
        return "search"


def _labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Folder names, made unique with their parent's name where two are alike."""
    names = [Path(d).resolve().name for d in run_dirs]
    return [f"{Path(d).resolve().parent.name}/{name}" if names.count(name) > 1 else name
            for d, name in zip(run_dirs, names, strict=True)]


def draw_progress(frame: pd.DataFrame, out: str | Path, title: str | None = None) -> Path:
    """Every evaluation as a point (by origin), the best-so-far curve (mean and a band of
    one standard deviation over runs when several are given); PNG at ``out``.

    With several kinds of search (``arm``) there is one curve per kind (dash style),
    averaged over the runs of that kind, so that a search and random search are drawn side
    by side instead of averaged together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(8, 5))
    ok = frame[frame["val_ppl"].notna()]
    sns.scatterplot(data=ok, x="n", y="val_ppl", hue="origin", style="run" if
                    frame["run"].nunique() > 1 else None, alpha=0.6, s=28, ax=ax)
    runs = frame["run"].nunique()
    best = frame[frame["best_so_far"].notna()]
    arms = list(dict.fromkeys(frame["arm"]))
    line = ({"style": "arm"} if len(arms) > 1 else {"style": "rung"} if
            frame["rung"].nunique() > 1 else
            {"label": "best so far" + (f" (mean ± sd of {runs} runs)" if runs > 1 else "")})
    sns.lineplot(data=best, x="n", y="best_so_far", color="black", ax=ax,
                 errorbar="sd" if runs > 1 else None, drawstyle="steps-post", **line)
    bad = int((frame["status"] != "ok").sum())
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 3, 5)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    _clip_outliers(ax, ok["val_ppl"])
    ax.set_xlabel("trained candidates")
    ax.set_ylabel("validation perplexity")
    ax.set_title(title or f"{' vs '.join(arms)}: {len(frame)} trained, {bad} diverged or failed")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _clip_outliers(ax, values: pd.Series) -> None:
    """Keep the y axis on the bulk of the points: random cells can reach perplexities of 1e7,
    which would flatten everything else. Only points more than `OUTLIER` times the median
    are cut (and counted on the plot); every other point is inside the axes."""
    if values.empty:
        return
    limit = OUTLIER * values.median()
    shown, above = values[values <= limit], int((values > limit).sum())
    ax.set_ylim(top=1.15 * shown.max())  # a margin: markers at the top are not cut in half
    if above:
        noun = "point" if above == 1 else "points"
        ax.annotate(f"{above} {noun} above {limit:,.0f} not shown", xy=(0.01, 0.99),
                    xycoords="axes fraction", va="top", fontsize=8, color="dimgray")
