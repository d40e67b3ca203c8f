"""The report's search-progress section: every training against the rung-0 cells (or
trainings) spent, per run and rung, and when each run reached random search's best."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from cellzoo.evolve.finalists import draw_finalists, rung_taus, tau_text
from cellzoo.evolve.forecast import hours_left, ladder_forecast
from cellzoo.evolve.progress import draw_progress, progress_frame, progress_summary
from cellzoo.report import html as h
from cellzoo.report.context import Report, SearchRun, Unavailable


def progress_data(searches: Sequence[SearchRun]) -> pd.DataFrame:
    """`progress_frame` of each search, labelled by its label on the page."""
    frames = []
    for search in searches:
        frame = progress_frame([search.path])
        frame["run"] = search.label
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def reached_at(frame: pd.DataFrame, target: float, at: str = "n") -> int | None:
    """Column ``at`` (training number ``n``, or rung-0 ``cells``) of the first row of one run
    (at one rung) whose best so far is at or below ``target``."""
    hit = frame[frame["best_so_far"] <= target + 1e-12]
    return int(hit[at].iloc[0]) if len(hit) else None


def random_bests(frame: pd.DataFrame) -> pd.Series:
    """Random search's final best per rung: the mean over the ``random`` runs of each one's
    best at that rung (rungs no random run has an ok result at are left out)."""
    finals = frame.groupby(["rung", "run"], sort=False).agg(
        arm=("arm", "first"), best=("best_so_far", "last"))
    return finals[finals["arm"].str.startswith("random")].groupby("rung")["best"].mean().dropna()


def progress_section(rep: Report) -> str:
    searches = rep.searches
    if not searches:
        raise Unavailable("no readable search run directory given (--run-dir DIR)")
    frame = progress_data(searches)
    if frame.empty:
        raise Unavailable("the run directories hold no trained candidate yet")
    path, src = rep.image("progress.png")
    draw_progress(frame, path)
    frame.to_csv(rep.out / "progress.csv", index=False)
    if any(s.config.ladder for s in searches):
        tokens = {s.label: rep.known_rung_tokens(s) for s in searches}
        plans = {s.label: (s.config.evaluations, s.config.make_ladder().eta)
                 for s in searches if s.config.ladder}
        caption = ("one panel per ladder rung (perplexities are compared within a rung only): "
                   "every training (colour: origin) at the point of its run where it happened, "
                   "counted in rung-0 cells (new candidates) trained, and the best so far per "
                   "kind of search and rung (log scale)")
        table = _ladder_progress_table(frame, tokens, plans) + _finalists(rep, frame)
    else:
        caption = ("every trained candidate (colour: origin) and the best so far per kind of "
                   "search (log scale)")
        table = _progress_table(frame)
    return (h.figure(src, caption) + table
            + h.para(h.link("progress.csv", "progress data (CSV)")))


def _finalists(rep: Report, frame: pd.DataFrame) -> str:
    """The finalists' chart (`evolve.finalists`) with each run's Kendall tau per rung, or
    nothing before any ladder search has a finalist."""
    runs = progress_summary(frame)
    path, src = rep.image("finalists.png")
    try:
        draw_finalists(runs, path)
    except ValueError:  # no ladder search has a finalist yet
        return ""
    taus = "; ".join(f"{run['run']}: {tau_text(rung_taus(run))}"
                     for run in runs if run["finalists"])
    return h.figure(src, "the finalists (the cells trained at each ladder search's highest "
                         "rung) ranked among themselves at every rung, labelled with their "
                         "top-rung test perplexity; Kendall tau of each rung's validation "
                         f"against the top rung's test perplexity, rung 0 up: {taus}")


def _progress_table(frame: pd.DataFrame) -> str:
    """Per run of a proxy search: its trainings, best, and when it reached random's best."""
    target = random_bests(frame).get(0, math.nan)
    rows = []
    for run, part in frame.groupby("run", sort=False):
        best = part["best_so_far"].iloc[-1]
        rows.append([h.text(run), h.text(part["arm"].iloc[0]), h.num(len(part)),
                     h.num(int((part["status"] != "ok").sum())), h.num(best),
                     h.num(reached_at(part, best) if math.isfinite(best) else None),
                     _reach_text(part, target, "n", len(part))])
    header = ["run", "kind", "trained", "diverged/failed", "best val ppl", "reached at",
              "trainings to reach random's best" + (f" ({target:.2f})"
                                                    if math.isfinite(target) else "")]
    return h.table(header, rows, numeric=(2, 3, 4, 5, 6), table_id="progress-table")


def _ladder_progress_table(frame: pd.DataFrame, tokens: dict[str, list[int]],
                           plans: dict[str, tuple[int, int]]) -> str:
    """Per run of a ladder search, a row per rung (``tokens``: each run's rung budgets, []
    if unknown; a rung not reached yet has a row when its run's rung count is known) and
    one for all rungs: trainings, diverged or failed, training hours (the logged seconds), the
    best at the rung, the rung-0 cells trained when it was first reached, and those needed
    to reach random search's best at the same rung; and the forecast (`ladder_forecast`,
    from a run's ``plans`` entry: its rung-0 cells and eta) of the trainings at the end
    and the training hours to go."""
    targets = random_bests(frame)
    rows = []
    for run, part in frame.groupby("run", sort=False):
        arm, budgets = part["arm"].iloc[0], tokens[run]
        plan = _plan(part, len(budgets), plans.get(run))
        for rung in range(max(len(budgets), part["rung"].max() + 1)):
            at = part[part["rung"] == rung]
            name = f"{rung} ({budgets[rung]:,} tokens)" if rung < len(budgets) else str(rung)
            rows.append([h.text(run), h.text(arm), h.text(name), *_cost(at), *_bests(at, part,
                         targets.get(rung, math.nan)), *plan.get(rung, [h.MISSING] * 2)])
        rows.append([h.text(run), h.text(arm), "all rungs", *_cost(part), "", "", "", "",
                     *plan.get("all", [h.MISSING] * 2)])
    header = ["run", "kind", "rung", "trainings (rung 0: new cells)", "diverged/failed",
              "training hours", "best val ppl", "reached at (rung-0 cells)",
              "random's best at the rung", "rung-0 cells to reach random's best",
              "trainings at the end (forecast)", "training hours to go (forecast)"]
    return h.table(header, rows, numeric=(3, 4, 5, 6, 7, 8, 9, 10, 11),
                   table_id="progress-table", wide=True)


def _bests(at: pd.DataFrame, part: pd.DataFrame, target: float) -> list[str]:
    """A run's best at one rung (``at``: its rows there), the rung-0 cells it was first
    reached at, random search's best ``target`` there and when the run reached it."""
    best = at["best_so_far"].iloc[-1] if len(at) else math.nan
    return [h.num(best),
            h.num(reached_at(at, best, "cells") if math.isfinite(best) else None),
            h.num(target), _reach_text(at, target, "cells", part["cells"].max())]


def _plan(part: pd.DataFrame, rungs: int, plan: tuple[int, int] | None) -> dict:
    """The forecast cells of one run's rows: rung -> [trainings, hours to go], and "all"
    (nothing when its rung count or ``plan``, its rung-0 cells and eta, is unknown)."""
    if not rungs or plan is None:
        return {}
    forecast = ladder_forecast(part, *plan, rungs)
    cells = {int(row.rung): [h.num(int(row.expected)), h.num(row.hours_left)]
             for row in forecast.itertuples()}
    return cells | {"all": [h.num(int(forecast["expected"].sum())),
                            h.num(hours_left(forecast))]}


def _cost(part: pd.DataFrame) -> list[str]:
    """Trainings, diverged or failed ones, and training hours of some rows of one run."""
    return [h.num(len(part)), h.num(int((part["status"] != "ok").sum())),
            h.num(part["seconds"].sum() / 3600)]


def _reach_text(part: pd.DataFrame, target: float, at: str, within: int) -> str:
    """When one run (at one rung) first reached ``target``, by column ``at`` (of ``within``
    in all)."""
    if not math.isfinite(target):
        return "–"
    reach = reached_at(part, target, at)
    return h.num(reach) if reach else f"not within {within}"
