"""The report's best-cells section: a proxy search's best runs, or a ladder search's
cells ranked by the highest rung reached, with their full runs and lineage."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from cellzoo.analysis.selection import labels
from cellzoo.report import html as h
from cellzoo.report.context import Report, SearchRun, Unavailable
from cellzoo.report.labels import config_label, preset_changes, preset_of
from cellzoo.report.progress import progress_data
from cellzoo.zoo import Run, Zoo
from cellzoo.zoo.render import lineage_text


def proxy_keys(rep: Report, task: str) -> set[str]:
    """The training configurations of the proxy searches on ``task``; with no such run
    directory, the configuration most of the task's runs were trained under (a search's
    proxy)."""
    keys = {r.proxy_key for r in rep.searches  # as stored
            if r.config.task == task and r.config.ladder is None}
    if keys:
        return keys
    counts = Counter(r.config_key for r in rep.zoo.runs(task))
    if not counts:
        raise Unavailable(f"the zoo holds no runs of task {task!r}")
    return {counts.most_common(1)[0][0]}


def best_cells(zoo: Zoo, task: str, keys: set[str], rows: int) -> list[Run]:
    """Each cell's best ok proxy run (config key in ``keys``), lowest validation ppl first."""
    best: dict[str, Run] = {}
    for run in zoo.runs(task, "ok"):
        if run.config_key in keys and math.isfinite(run.val_ppl):
            if run.hash not in best or run.val_ppl < best[run.hash].val_ppl:
                best[run.hash] = run
    return sorted(best.values(), key=lambda r: (r.val_ppl, r.hash))[:rows]


def other_runs(zoo: Zoo, cell_hash: str, keys: set[str]) -> list[Run]:
    """The cell's runs under other trainings (full retraining, other tasks), best first."""
    runs = [r for r in zoo.cell(cell_hash).runs if r.config_key not in keys]
    return sorted(runs, key=_best_first)


def _best_first(run: Run) -> tuple:
    return run.status != "ok", run.task, run.val_ppl


def cells_section(rep: Report) -> str:
    task = rep.need_task()
    ladders = [r for r in rep.searches if r.config.task == task and r.config.ladder is not None]
    return _ladder_cells(rep, ladders) if ladders else _proxy_cells(rep, task)


def _proxy_cells(rep: Report, task: str) -> str:
    """Each cell's best run under the proxy searches' training, with its other trainings."""
    keys = proxy_keys(rep, task)
    top = best_cells(rep.zoo, task, keys, rep.options.rows)
    if not top:
        raise Unavailable(f"no ok run of task {task!r} under the search's training "
                          f"configuration ({', '.join(sorted(keys))})")
    names = labels(top)
    listed = {r.hash for r in top}
    rows, records = [], []
    for rank, (run, name) in enumerate(zip(top, names, strict=True), 1):
        others = other_runs(rep.zoo, run.hash, keys)
        rows.append([h.num(rank), _cell_html(run, name), h.code(run.expr),
                     h.num(run.params), h.num(run.val_ppl), h.num(run.test_ppl),
                     "<br>".join(_other_text(o) for o in others) or "–",
                     _lineage_html(run, listed)])
        records.append(_record(rank, name, "proxy", run))
        records += [_record(rank, name, "other", r) for r in others]
    _save_records(rep, records)
    header = ["#", "cell", "DSL", "params", "proxy val ppl (as trained)", "proxy test ppl",
              "other trainings (val / test ppl, params)", "lineage"]
    return (h.para(f"Proxy training: config key {h.text(', '.join(sorted(keys)))} "
                   f"(task {h.text(task)}); each cell's best run under it.")
            + h.table(header, rows, numeric=(0, 3, 4, 5), table_id="best-cells", wide=True)
            + h.para(h.link("best_cells.csv", "every run of these cells (CSV)")))


@dataclass(frozen=True)
class LadderCell:
    """A cell of ladder searches: its zoo run at each rung it trained at (the better one
    where two searches trained it) and the labels of the searches that trained it."""

    runs: dict[int, Run]
    found_by: str

    @property
    def first(self) -> Run:
        """Its run at its lowest rung (rung 0): width, probed rate and lineage stay the same
        up the ladder."""
        return self.runs[min(self.runs)]

    @property
    def rank(self) -> tuple[int, float, str]:
        """Sort key, best first: as a search ranks its members (`Member.rank`), by the
        highest rung reached, then by the validation perplexity there; a cell whose last
        training diverged or failed ranks below all."""
        top = max(self.runs)
        run = self.runs[top]
        if run.status == "ok" and math.isfinite(run.val_ppl):
            return -top, run.val_ppl, run.hash
        return 1, math.inf, run.hash


def ladder_cells(zoo: Zoo, searches: Sequence[SearchRun]) -> tuple[list[LadderCell], int]:
    """The cells the ladder searches trained, best first (`LadderCell.rank`), and how many of
    the trainings they logged are not in ``zoo`` (those are left out)."""
    by_id = {r.run_id: r for r in zoo.runs()}
    cells: dict[str, dict[int, Run]] = {}
    found: dict[str, dict[str, None]] = {}
    missing = 0
    for row in progress_data(searches).itertuples():
        run = by_id.get(row.run_id)
        if run is None:
            missing += 1
            continue
        rungs = cells.setdefault(run.hash, {})
        if row.rung not in rungs or _best_first(run) < _best_first(rungs[row.rung]):
            rungs[row.rung] = run
        found.setdefault(run.hash, {})[row.run] = None
    return sorted((LadderCell(runs, ", ".join(found[h])) for h, runs in cells.items()),
                  key=lambda cell: cell.rank), missing


def full_runs(zoo: Zoo, run: Run, preset: str) -> list[Run]:
    """The runs of ``run``'s cell and task under the whole of ``preset`` (no token budget;
    any width, rate or seed), best first."""
    return sorted((r for r in zoo.cell(run.hash).runs if r.task == run.task
                   and not r.config.get("budget_tokens") and preset_of(r.config) == preset),
                  key=_best_first)


def _ladder_cells(rep: Report, searches: Sequence[SearchRun]) -> str:
    """The ladder searches' best cells: one table per ladder (rungs of two ladders are not
    comparable), and every run of the listed cells in best_cells.csv."""
    groups: dict[str, list[SearchRun]] = {}
    for search in searches:
        groups.setdefault(json.dumps(search.config.ladder, sort_keys=True), []).append(search)
    parts, records = [], []
    for i, group in enumerate(groups.values()):
        if len(groups) > 1:
            parts.append(f"<h3>Ladder of {h.text(', '.join(s.label for s in group))}</h3>")
        table, rows = _ladder_cells_table(rep, group, "best-cells" + (f"-{i + 1}" if i else ""))
        parts.append(table)
        records += rows
    if not records:
        raise Unavailable("the zoo holds none of the runs the searches logged (another zoo?)")
    _save_records(rep, records)
    return (h.para("The search's training is its fidelity ladder (configuration above). Cells "
                   "are ranked as the search ranks them: by the highest rung reached, then by "
                   "the validation perplexity at that rung; a cell whose last training "
                   "diverged or failed ranks last. Compare perplexities within a rung (a "
                   "column) only. Full runs: the zoo's runs of the cell under the ladder's "
                   "preset with no token budget.")
            + "".join(parts)
            + h.para(h.link("best_cells.csv", "every run of these cells (CSV)")))


def _ladder_cells_table(rep: Report, searches: Sequence[SearchRun], table_id: str
                        ) -> tuple[str, list[dict]]:
    """The table of one ladder's best cells and the CSV records of their runs."""
    ranked, missing = ladder_cells(rep.zoo, searches)
    ranked = ranked[: rep.options.rows]
    if not ranked:
        return h.note(f"no run of {', '.join(s.label for s in searches)} is in the zoo"), []
    table, records = _ranked_table(rep, searches, ranked, table_id)
    return _missing_remark(rep, searches, missing) + table, records


def _missing_remark(rep: Report, searches: Sequence[SearchRun], missing: int) -> str:
    """A warning when the searches logged trainings the zoo lacks ('' when none)."""
    if not missing:
        return ""
    return h.remark(f"{missing} of the trainings {', '.join(s.label for s in searches)} logged "
                    f"are not in the zoo {rep.zoo.path.name} and are left out: the search wrote "
                    f"another zoo, or this is a copy of the zoo file without its "
                    f"{rep.zoo.path.name}.journal/ folder (`cellzoo zoo import` copies both).")


def _ranked_table(rep: Report, searches: Sequence[SearchRun], ranked: list[LadderCell],
                  table_id: str) -> tuple[str, list[dict]]:
    """The best-cells table of one ladder's ``ranked`` cells and the CSV records of their
    runs."""
    tokens = rep.known_rung_tokens(searches[0])
    preset = searches[0].config.ladder["preset"]
    rungs = range(max(max(c.runs) for c in ranked) + 1)
    firsts = [c.first for c in ranked]
    listed = {r.hash for r in firsts}
    rows, records = [], []
    for rank, (cell, first, name) in enumerate(zip(ranked, firsts, labels(firsts),
                                                   strict=True), 1):
        full = full_runs(rep.zoo, first, preset)
        rows.append([h.num(rank), _cell_html(first, name)]
                    + ([h.text(cell.found_by)] if len(searches) > 1 else [])
                    + [h.code(first.expr), h.num(first.params), h.text(f"{first.config['lr']:g}")]
                    + [_result_text(cell.runs[k]) if k in cell.runs else "–" for k in rungs]
                    + ["<br>".join(_full_text(r, preset) for r in full) or "–",
                       _lineage_html(first, listed)])
        records += [_record(rank, name, "rung", run, rung) for rung, run in cell.runs.items()]
        rung_ids = {r.run_id for r in cell.runs.values()}  # a full ladder's top rung is full
        records += [_record(rank, name, "full", r) for r in full if r.run_id not in rung_ids]
        shown = rung_ids | {r.run_id for r in full}
        records += [_record(rank, name, "other", r) for r in rep.zoo.cell(first.hash).runs
                    if r.run_id not in shown]
    header = (["#", "cell"] + (["found by"] if len(searches) > 1 else [])
              + ["DSL", "params", "lr (probed)"]
              + [f"rung {k} val ppl" + (f" ({tokens[k]:,} tokens)" if k < len(tokens) else "")
                 for k in rungs]
              + [f"full runs of {preset} (val / test ppl)", "lineage"])
    numeric = [0] + [i for i, name in enumerate(header) if name.startswith(("params", "lr",
                                                                            "rung "))]
    return h.table(header, rows, numeric=numeric, table_id=table_id, wide=True), records


def _result_text(run: Run) -> str:
    """A run's validation perplexity, or its status when it has none."""
    return h.num(run.val_ppl) if run.status == "ok" else h.text(run.status)


def _full_text(run: Run, preset: str) -> str:
    """A full run of ``preset``: val / test ppl (or its status) and how it differs from the
    preset (rate, seed)."""
    changes = ", ".join(preset_changes(run.config, preset))
    result = (f"{h.num(run.val_ppl)} / {h.num(run.test_ppl)}" if run.status == "ok"
              else h.text(run.status))
    return result + (f" ({h.text(changes)})" if changes else "")


def _cell_html(run: Run, name: str) -> str:
    """The cell's anchor: its library name (if it has one) over its short hash (the whole
    one on hover)."""
    named = "" if run.hash.startswith(name) else f"{h.text(name)}<br>"
    return (f'<span id="cell-{run.hash}">{named}'
            f'<span class="muted" title="{run.hash}">{run.hash[:8]}</span></span>')


def _other_text(run: Run) -> str:
    if run.status != "ok":
        return f"{h.text(config_label(run))}: {h.text(run.status)}"
    return (f"{h.text(config_label(run))}: {h.num(run.val_ppl)} / {h.num(run.test_ppl)}, "
            f"{h.num(run.params)} params, {h.num(run.seconds, 0)} s on {h.text(run.device)}")


def _lineage_html(run: Run, listed: set[str]) -> str:
    parents = [h.link(f"#cell-{p}", p[:8]) if p in listed else h.text(p[:8])
               for p in run.parents]
    return h.text(lineage_text(run)) + ("<br>parents: " + ", ".join(parents) if parents else "")


def _save_records(rep: Report, records: list[dict]) -> None:
    """best_cells.csv (``rung`` as whole numbers, blank where the run is no rung run)."""
    frame = pd.DataFrame(records).astype({"rung": "Int64"})
    frame.to_csv(rep.out / "best_cells.csv", index=False)


def _record(rank: int, name: str, role: str, run: Run, rung: int | None = None) -> dict:
    """A CSV row: one run of a listed cell (``rung``: of a ladder search's rung run)."""
    return {"rank": rank, "cell": name, "hash": run.hash, "role": role, "rung": rung,
            "run_id": run.run_id,
            "task": run.task, "training": config_label(run), "config_key": run.config_key,
            "status": run.status, "params": run.params, "val_ppl": run.val_ppl,
            "test_ppl": run.test_ppl, "seconds": run.seconds, "device": run.device,
            "origin": run.origin, "operator": run.operator, "generation": run.generation,
            "parents": " ".join(run.parents), "expr": run.expr}
