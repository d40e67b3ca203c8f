"""The report's ranker section: the ranker's live accuracy in each search that used it
(predicted against true log perplexity, Kendall tau per round and per ladder rung)."""

from __future__ import annotations

import pandas as pd

from cellzoo.evolve.breeding import MIN_RANKER_RUNS
from cellzoo.ranker import plot as ranker_plot
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.report import html as h
from cellzoo.report.context import Report, SearchRun, Unavailable


def ranker_section(rep: Report) -> str:
    used = [r for r in rep.searches if r.config.ranker or r.files.has_ranker_log]
    if not used:
        raise Unavailable("none of the searches used the ranker (`cellzoo evolve --ranker`)")
    parts, missing = [], []
    for search in used:
        log = ranker_plot.load_log(search.path) if search.files.has_ranker_log else None
        done = None if log is None else log[log["true_log_ppl"].notna()]
        if done is None or len(done) < 2:
            scored = 0 if done is None else len(done)
            missing.append(f"{search.label}: the ranker has scored {scored} trained "
                           f"candidates so far (it scores bred candidates only, not the "
                           f"library or the random initial population; without a prior it "
                           f"also waits for {MIN_RANKER_RUNS} ok runs under the search's "
                           f"training)")
            continue
        parts.append(_ranker_part(rep, search, log, done, len(parts)))
    if not parts:
        raise Unavailable("; ".join(missing))
    return "".join(h.note(m) for m in missing) + "".join(parts)


def _ranker_part(rep: Report, search: SearchRun, log: pd.DataFrame, done: pd.DataFrame,
                 index: int) -> str:
    path, src = rep.image(f"ranker-{index}.png")
    ranker_plot.draw(log, ranker_plot.round_correlations(log), path)
    overall = rank_metrics(done["predicted"].to_numpy(), done["true_log_ppl"].to_numpy())
    where = " (at rung 0, where the pre-filter chose them)" if search.config.ladder else ""
    rounds = log["round"].nunique()
    return (f"<h3>{h.text(search.label)}</h3>"
            + h.para(f"{len(done)} candidates scored by the ranker and then trained{where}, "
                     f"over {rounds} round{'s' if rounds != 1 else ''}: Kendall tau "
                     f"{h.num(overall['tau'], 3)}, Spearman rho {h.num(overall['rho'], 3)}.")
            + _rung_taus(search)
            + h.figure(src, f"{search.label}: predicted vs true log perplexity; Kendall tau "
                            f"per round (the ranker's live accuracy)"))


def _rung_taus(search: SearchRun) -> str:
    """A ladder search's live Kendall tau per rung: the ranker's prediction against each
    rung's true result ('' for a proxy search)."""
    rows = [r for r in search.files.ranker_log() if r.get("true_log_ppl") is not None]
    rungs = sorted({r.get("rung", 0) for r in rows})
    if rungs in ([], [0]):
        return ""
    parts = []
    for rung in rungs:
        part = [r for r in rows if r.get("rung", 0) == rung]
        tau = rank_metrics([r["predicted"] for r in part], [r["true_log_ppl"] for r in part])
        parts.append(f"rung {rung}: {h.num(tau['tau'], 3)} over {len(part)}")
    return h.para("Kendall tau per ladder rung (predicted vs that rung's result): "
                  + "; ".join(parts) + ".")
