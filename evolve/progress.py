"""The search-progress plot: a data step (a tidy DataFrame from run directories) and a
drawing step (seaborn, headless).

A search is read from its run directory or from its evaluations log alone (a log kept
after its run directory was lost, as in ``docs/data/``; such a log's kind of search is its
name). Each row of the frame is one trained candidate of one run, in training order:
its validation perplexity and the best validation perplexity of that run so far, and the
run's kind of search (its "arm": strategy plus plug-ins, e.g. aging+ranker+controller).
Results reused from the zoo cost no training and are left out. A ladder search's rows
are its rung results: each has its ``rung``, and the best so far is per rung (a rung's
perplexities are never compared with another's). Its trainings are placed by ``cells``,
the rung-0 cells (new candidates) trained so far: the budget two ladder searches are
compared at, and where each promotion happened. A proxy search trains every candidate
once, so there ``cells`` is the training number ``n``.

The plot has one panel per rung (one panel for a proxy search) over ``cells``, and in
each one best-so-far line per kind of search (`best_curves`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellzoo.common.errors import UserError
from cellzoo.common.figures import save_figure
from cellzoo.common.io import read_jsonl
from cellzoo.evolve.config import LADDER_DEFAULTS
from cellzoo.evolve.rundir import EVALUATIONS_LOG, RunDir

#: a point this many times the median of the plot's perplexities is an outlier
OUTLIER = 10

COLUMNS = ["run", "arm", "n", "cells", "rung", "val_ppl", "status", "origin", "best_so_far",
           "lr", "seconds", "test_ppl", "device", "run_id", "hash", "expr"]
#: columns `progress_frame` computes (the others are the evaluations log's)
DERIVED = ("run", "arm", "n", "cells", "best_so_far")


class ProgressDataError(UserError, ValueError):
    """A folder given as a run directory holds no search log, or a file is no such log."""


def progress_frame(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per trained candidate: run name, kind of search (``arm``), training number
    ``n`` (1-based), ``cells`` (rung-0 trainings so far, this one included), ladder ``rung``
    (0 for a proxy search), its val_ppl (nan unless ok), status, origin, the run's
    ``best_so_far`` val_ppl at that rung (nan before its first ok result there), and from
    the log: the cell's probed ``lr`` (ladder searches), ``seconds``, ``test_ppl`` (nan
    where the log has none), the ``device`` that trained it (None where the log does not
    say), ``run_id``, hash, expr. ``run_dirs``: run directories or
    evaluations logs."""
    frames = []
    for label, run_dir in zip(_labels(run_dirs), run_dirs, strict=True):
        rows, kind = _read(Path(run_dir))
        rows = [r for r in rows if not r.get("reused")]
        seconds = own_seconds(rows)
        frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in DERIVED])
        frame["seconds"] = seconds
        frame["rung"] = frame["rung"].fillna(0).astype(int)
        for column in ("val_ppl", "lr", "seconds", "test_ppl"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        frame.loc[frame["status"] != "ok", "val_ppl"] = np.nan
        frame.insert(0, "run", label)
        frame.insert(1, "arm", kind)
        frame.insert(2, "n", np.arange(1, len(frame) + 1))
        frame.insert(3, "cells", (frame["rung"] == 0).cumsum())
        best = frame.groupby("rung")["val_ppl"].cummin()  # nan at a diverged training ...
        frame["best_so_far"] = best.groupby(frame["rung"]).ffill()  # ... keeps the best
        frames.append(frame[COLUMNS])
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


def own_seconds(rows: Sequence[dict[str, Any]]) -> list[float]:
    """Each row's own training seconds. A promotion continues the rung below's branch
    checkpoint, and its run's seconds count what that run had spent; a row written since
    the log has ``branch_seconds`` says its seconds are its own already. In an older row
    they are not, and the branch run's share is estimated: at rung 2 and above as the rung
    below's logged seconds (its branch checkpoint is written at its end, or for the top
    rung at the decay onset just before it), at rung 1 (rung 0 logs the whole probe's
    seconds) as the share of the row's tokens that rung 0 trained (``1/eta`` at the default
    ``eta`` where the rows do not log their tokens). An older promotion that trained from
    scratch (its branch checkpoint lost with a machine) is undercounted."""
    logged = {(r.get("hash"), r.get("rung", 0)): r for r in rows}
    own = []
    for row in rows:
        seconds, rung = _seconds(row), row.get("rung") or 0
        below = logged.get((row.get("hash"), rung - 1))
        if "branch_seconds" in row or not rung or below is None:
            own.append(seconds)
        elif rung == 1:
            tokens = (below.get("rung_tokens"), row.get("rung_tokens"))
            share = tokens[0] / tokens[1] if all(tokens) else 1 / LADDER_DEFAULTS["eta"]
            own.append(seconds * (1 - share))
        else:
            own.append(max(seconds - _seconds(below), 0.0))
    return own


def _seconds(row: dict[str, Any]) -> float:
    """A row's logged seconds (nan where it has none)."""
    try:
        return float(row["seconds"])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _read(path: Path) -> tuple[list[dict], str]:
    """A search's log rows and kind of search, from its run directory or its log: a run
    directory's own log is read as the run directory; any other log's kind is its name."""
    if path.is_file() and path.name == EVALUATIONS_LOG:
        path = path.parent
    if path.is_file():
        rows = read_jsonl(path)
        if not rows or not all(isinstance(r, dict) and "status" in r and "val_ppl" in r
                               for r in rows):
            raise ProgressDataError(f"{path} is not a search's evaluations log (JSON lines "
                                    f"with status and val_ppl, as `cellzoo evolve` writes)")
        return rows, _name(path)
    files = RunDir(path)
    if not files.is_search:
        raise ProgressDataError(f"{path} is not a search run directory (no "
                                f"{EVALUATIONS_LOG}; make one with `cellzoo evolve`)")
    return files.evaluations(), _kind(files)


def _name(path: Path) -> str:
    """A run's name: its folder's, or a log file's without a trailing ``evaluations``
    (``ptb-ladder-evaluations.jsonl``: ``ptb-ladder``)."""
    if path.is_file():
        return path.stem.removesuffix(Path(EVALUATIONS_LOG).stem).rstrip("-_.") \
            or path.parent.name
    return path.name


def _kind(files: RunDir) -> str:
    """The run's kind of search from its stored configuration ("search" if unreadable)."""
    try:
        return files.config().kind
    except (OSError, ValueError):
        return "search"


def _labels(run_dirs: Sequence[str | Path]) -> list[str]:
    """Run names (`_name`), made unique with their parent's name where two are alike."""
    names = [_name(Path(d).resolve()) for d in run_dirs]
    return [f"{Path(d).resolve().parent.name}/{name}" if names.count(name) > 1 else name
            for d, name in zip(run_dirs, names, strict=True)]


#: what `progress_summary` tells of a rung's best result
BEST_KEYS = ("hash", "expr", "origin", "lr", "val_ppl", "test_ppl")


def progress_summary(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per run of ``frame`` (`progress_frame`): its rung-0 ``cells``, ``trainings`` and
    training ``hours`` (the logged seconds), and per rung the same counts, the trainings
    that did not run ok, and the ``best`` result there (cell, origin, probed rate, val and
    test perplexity; None where no training at the rung ran ok), and the ``finalists``
    (`_finalists`). Plain JSON values: a number the log lacks is None."""
    runs = []
    for run, part in frame.groupby("run", sort=False):
        rungs = []
        for rung, at in part.groupby("rung"):
            ok = at[at["val_ppl"].notna()]
            best = ok.loc[ok["val_ppl"].idxmin()] if len(ok) else None
            rungs.append({"rung": int(rung), "trainings": len(at),
                          "not_ok": int((at["status"] != "ok").sum()),
                          "hours": float(at["seconds"].sum()) / 3600,
                          "best": None if best is None else {
                              key: _plain(best[key]) for key in BEST_KEYS}})
        runs.append({"run": run, "arm": part["arm"].iloc[0], "cells": int(part["cells"].max()),
                     "trainings": len(part), "hours": float(part["seconds"].sum()) / 3600,
                     "rungs": rungs, "finalists": _finalists(part)})
    return runs


def _finalists(part: pd.DataFrame) -> list[dict[str, Any]]:
    """A ladder search's cells trained at the highest rung it reached, best first (not ok
    last): each with its result there (val and test perplexity, seconds, status) and
    ``val_by_rung``, its best val_ppl at every rung (None where it has none). Empty for a
    proxy search, whose only rung holds every cell."""
    top = part["rung"].max()
    if top == 0:
        return []
    by_rung = part.groupby(["hash", "rung"])["val_ppl"].min()
    rows = part[part["rung"] == top].sort_values("val_ppl", na_position="last")
    return [{**{key: _plain(row[key]) for key in ("hash", "expr", "origin", "lr", "val_ppl",
                                                  "test_ppl", "seconds", "status")},
             "val_by_rung": [_plain(by_rung.get((row["hash"], r), np.nan))
                             for r in range(top + 1)]}
            for _, row in rows.iterrows()]


def _plain(value: Any) -> Any:
    """A frame cell as a JSON value: numpy numbers as Python's, nan as None."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not np.isfinite(value) else value


def best_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """One best-so-far series per run and rung over ``cells``: for every count of rung-0
    cells from the rung's first ok result to the run's last, the best val_ppl at that rung
    after those trainings (columns run, arm, rung, cells, best_so_far). Each series is
    monotone, and runs of one kind share their ``cells`` values, so they can be averaged."""
    parts = []
    for (run, rung), part in frame.groupby(["run", "rung"], sort=False):
        grid = pd.RangeIndex(1, frame.loc[frame["run"] == run, "cells"].max() + 1, name="cells")
        best = part.groupby("cells")["best_so_far"].last().reindex(grid).ffill().dropna()
        parts.append(pd.DataFrame({"run": run, "arm": part["arm"].iloc[0], "rung": rung,
                                   "cells": best.index, "best_so_far": best.to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["run", "arm", "rung", "cells", "best_so_far"])


def _arm_summary(part: pd.DataFrame, ladder: bool) -> str:
    """One kind of search's line of the title: what its runs trained, over all its runs."""
    runs = part["run"].nunique()
    bad = int((part["status"] != "ok").sum())
    count = (f"{part.groupby('run')['cells'].max().sum()} new cells, {len(part)} trainings"
             if ladder else f"{len(part)} trained")
    return (f"{part['arm'].iloc[0]}{f' ({runs} runs)' if runs > 1 else ''}: {count}, "
            f"{bad} diverged or failed")


def draw_progress(frame: pd.DataFrame, out: str | Path, title: str | None = None) -> Path:
    """Every evaluation as a point (by origin), the best-so-far curve (mean and a band of
    one standard deviation over runs when several are given); PNG at ``out``.

    With several kinds of search (``arm``) there is one curve per kind (dash style),
    averaged over the runs of that kind, so that a search and random search are drawn side
    by side instead of averaged together. A ladder search gets one panel per rung over the
    rung-0 cells trained, each with its own perplexity axis (none for a rung with no
    finished training yet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    present = sorted(frame["rung"].unique())
    ladder = len(present) > 1
    # a rung whose trainings all diverged or failed has no point to draw
    rungs = [r for r in present
             if r == present[0] or frame.loc[frame["rung"] == r, "val_ppl"].notna().any()]
    fig, axes = plt.subplots(len(rungs), 1, figsize=(10, 1.5 + 3.2 * len(rungs)) if ladder
                             else (8, 5), sharex=True, squeeze=False)
    curves = best_curves(frame)
    for i, (ax, rung) in enumerate(zip(axes[:, 0], rungs, strict=True)):
        _draw_rung(ax, frame, curves, rung, ladder, legend=i == 0)
    axes[-1, 0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("rung-0 cells trained (new candidates)" if ladder
                           else "trained candidates")
    axes[0, 0].set_title(title or "\n".join(_arm_summary(part, ladder)
                                            for _, part in frame.groupby("arm", sort=False)))
    fig.tight_layout()
    return save_figure(fig, out)


def _draw_rung(ax, frame: pd.DataFrame, curves: pd.DataFrame, rung: int, ladder: bool,
               legend: bool) -> None:
    """One rung's panel: its points and one best-so-far line per kind of search. Colours and
    markers come from the whole frame, so every panel uses the same ones."""
    import seaborn as sns

    runs, arms = list(dict.fromkeys(frame["run"])), list(dict.fromkeys(frame["arm"]))
    ok = frame[frame["val_ppl"].notna() & (frame["rung"] == rung)]
    best = curves[curves["rung"] == rung]
    sns.scatterplot(data=ok, x="cells", y="val_ppl", hue="origin",
                    hue_order=list(dict.fromkeys(frame["origin"])),
                    style="run" if len(runs) > 1 else None, style_order=runs, alpha=0.6, s=28,
                    ax=ax, legend=legend)
    line = ({"style": "arm", "style_order": arms} if len(arms) > 1 else
            {"label": "best so far" + (f" (mean ± sd of {len(runs)} runs)" if len(runs) > 1
                                       else "")})
    if not best.empty:
        sns.lineplot(data=best, x="cells", y="best_so_far", color="black", ax=ax,
                     errorbar="sd" if len(runs) > 1 else None, drawstyle="steps-post",
                     legend=legend, **line)
    ax.set_yscale("log")
    _clip_outliers(ax, ok["val_ppl"])
    _log_ticks(ax)
    ax.set_ylabel(f"rung {rung}: val ppl" if ladder else "validation perplexity")
    if legend:  # a ladder's panels are short: its legend goes beside them
        ax.legend(fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if ladder
                                 else {"loc": "upper right"}))


def _log_ticks(ax) -> None:
    """Perplexity ticks at 1, 2, 3, 5 times powers of ten, or evenly spaced ones where fewer
    than three of those fall on a narrow axis (a rung whose cells are close together)."""
    import matplotlib.ticker

    low, high = ax.get_ylim()
    log = matplotlib.ticker.LogLocator(subs=(1, 2, 3, 5))
    shown = [t for t in log.tick_values(low, high) if low <= t <= high]
    ax.yaxis.set_major_locator(log if len(shown) >= 3 else matplotlib.ticker.MaxNLocator(5))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _clip_outliers(ax, values: pd.Series) -> None:
    """Keep the y axis on the bulk of the points: random cells can reach perplexities of 1e7,
    which would flatten everything else. Only points more than `OUTLIER` times the median
    are cut (and counted on the plot); every other point is inside the axes."""
    if values.empty:
        return
    limit = OUTLIER * values.median()
    shown, above = values[values <= limit], int((values > limit).sum())
    # a margin, so that markers at the edges are not cut in half
    ax.set_ylim(shown.min() / 1.15, 1.15 * shown.max())
    if above:
        noun = "point" if above == 1 else "points"
        ax.annotate(f"{above} {noun} above {limit:,.0f} not shown", xy=(0.01, 0.99),
                    xycoords="axes fraction", va="top", fontsize=8, color="dimgray")
