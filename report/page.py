"""The HTML report of a zoo and its searches: one static page (`cellzoo report` draws it).

Sections: the configuration of each search run (and the training configurations in the
zoo), search progress (search against random search), the best cells with their proxy
and full trainings and lineage, the ranker's accuracy, hidden-state heatmaps with the
CKA clustermap, and the ensemble. A search on a fidelity ladder is shown per rung (its
rungs' perplexities are never compared with each other): its ladder, its progress and
best per rung, its cells by the highest rung reached.

Every figure comes from the data step and drawing step of the command that owns it
(`evolve.progress`, `ranker.plot`, `analysis.plots`); this module gathers inputs and lays
out the page (`report.html`). A section whose data is missing says why ("Not available:
...") instead of failing the page.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd

from cellzoo.analysis import ensemble as ens
from cellzoo.analysis.activations import activations, split_text
from cellzoo.analysis.cache import AnalysisCache, AnalysisError
from cellzoo.analysis.compare import comparison, draw_comparison
from cellzoo.analysis.selection import POOL, TOKENS, labels, only_task, select_runs
from cellzoo.evolve.breeding import MIN_RANKER_RUNS
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.progress import draw_progress, progress_frame
from cellzoo.evolve.rundir import CONFIG_NAME, EVALUATIONS_LOG, RunDir
from cellzoo.ranker import plot as ranker_plot
from cellzoo.ranker.metrics import rank_metrics
from cellzoo.report import html as h
from cellzoo.train import PRESETS, load_corpus
from cellzoo.train.config import NOT_LEARNED
from cellzoo.zoo import Run, Zoo, ZooError
from cellzoo.zoo.render import lineage_text

#: problems a section reports as "not available" instead of failing the page
EXPECTED_ERRORS = (AnalysisError, ZooError, ValueError, OSError)
IMAGES = "img"


class Unavailable(Exception):
    """A section's data is missing; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Options:
    """What the page shows. ``top``: runs in the heatmaps, clustermap and ensemble pool;
    ``rows``: rows of the best-cells table; ``tokens``: validation tokens run through the
    cells; ``eval_tokens``: cap on the ensemble's validation and test tokens."""

    task: str | None = None
    top: int = POOL
    rows: int = 10
    tokens: int = TOKENS
    eval_tokens: int | None = None
    data_dir: str | None = None


@dataclass(frozen=True)
class SearchRun:
    """A `--run-dir`: its label on the page, its configuration and the training it judged
    candidates by (key and settings, as the search stored them), or why it cannot be read."""

    files: RunDir
    label: str
    config: SearchConfig | None
    problem: str | None
    proxy_key: str | None = None
    proxy_train: dict | None = None

    @property
    def path(self) -> Path:
        return self.files.path

    @property
    def arm(self) -> str:
        """The kind of search: strategy plus the plug-ins it used."""
        return "unknown" if self.config is None else self.config.kind


def load_search_runs(run_dirs: Sequence[str | Path]) -> list[SearchRun]:
    names = [Path(d).resolve().name for d in run_dirs]
    return [_search_run(RunDir(run_dir), name if names.count(name) == 1 else f"{name} ({i + 1})")
            for i, (run_dir, name) in enumerate(zip(run_dirs, names, strict=True))]


def _search_run(files: RunDir, label: str) -> SearchRun:
    try:
        config = files.config()
    except (OSError, ValueError) as err:
        problem = f"cannot read its configuration {files.path / CONFIG_NAME} ({err})"
        return SearchRun(files, label, None, problem)
    if not files.is_search:
        problem = f"{files.path} holds no {EVALUATIONS_LOG} (not a `cellzoo evolve` run directory)"
        return SearchRun(files, label, config, problem)
    try:
        training = files.training()
    except ValueError as err:
        return SearchRun(files, label, config, str(err))
    if training is None:
        return SearchRun(files, label, config, f"{files.path} holds no search checkpoint yet")
    return SearchRun(files, label, config, None, *training)


@dataclass
class Report:
    """Everything the section builders read, and where they write."""

    zoo: Zoo
    runs: list[SearchRun]
    options: Options
    out: Path
    cache: AnalysisCache
    task: str | None
    task_problem: str | None

    @property
    def searches(self) -> list[SearchRun]:
        """The run directories that can be read."""
        return [r for r in self.runs if r.problem is None]

    def need_task(self) -> str:
        if self.task is None:
            raise Unavailable(self.task_problem or "no task")
        return self.task

    def image(self, name: str) -> tuple[Path, str]:
        """(path to write, link relative to the page) of an image file."""
        (self.out / IMAGES).mkdir(parents=True, exist_ok=True)
        return self.out / IMAGES / name, self.src(self.out / IMAGES / name)

    def src(self, path: Path) -> str:
        """The link to ``path`` (inside the output folder) relative to the page."""
        return path.relative_to(self.out).as_posix()

    def rung_tokens(self, search: SearchRun) -> tuple[list[int], int]:
        """(training tokens of each rung, rung 0 first; tokens of the preset's full run) of
        a ladder search; OSError or ValueError when the task's corpus cannot be read."""
        ladder = search.config.make_ladder()
        corpus = load_corpus(ladder.base.task, self.options.data_dir)
        return ladder.budgets(corpus), ladder.full_tokens(corpus)

    def known_rung_tokens(self, search: SearchRun) -> list[int]:
        """`rung_tokens`' budgets, or [] (a proxy search, or an unreadable corpus: the
        configuration table says why)."""
        if search.config.ladder is None:
            return []
        try:
            return self.rung_tokens(search)[0]
        except EXPECTED_ERRORS:
            return []


def resolve_task(zoo: Zoo, runs: Sequence[SearchRun], task: str | None) -> str:
    """``task``, else the task the readable run directories share, else the zoo's one task."""
    if task is None:
        tasks = {r.config.task for r in runs if r.config is not None}
        task = tasks.pop() if len(tasks) == 1 else None
    return only_task(zoo, task)


# --- section: configurations ------------------------------------------------------------------


def configs_section(rep: Report) -> str:
    parts = [h.note(f"run directory {r.label}: {r.problem}") for r in rep.runs if r.problem]
    configured = [r for r in rep.runs if r.config is not None]
    if configured:
        header = ["setting"] + [r.label for r in configured]
        search, train = _settings_rows(configured)
        ladders = [r.config.ladder is not None for r in configured]
        title = ("the ladder's base training (its preset)" if all(ladders) else
                 "proxy training" if not any(ladders) else "proxy training or ladder preset")
        ladder = (h.table(["ladder"] + header[1:], _ladder_rows(rep, configured),
                          table_id="ladder-config") if any(ladders) else "")
        parts.append(h.row(h.table(header, search, table_id="search-config"),
                           ladder + h.table([title] + header[1:], train,
                                            table_id="train-config")))
    else:
        parts.append(h.note("no search run directory given (--run-dir DIR, made by "
                            "`cellzoo evolve`)" if not rep.runs else
                            "none of the run directories has a readable configuration"))
    parts.append("<h3>Training configurations in the zoo</h3>")
    parts.append(_zoo_configs_table(rep.zoo))
    return "".join(parts)


def _settings_rows(runs: Sequence[SearchRun]) -> tuple[list[list[str]], list[list[str]]]:
    """Rows of the search settings and of the resolved proxy training, one column per run."""
    search = [r.config.to_dict() for r in runs]
    train = [r.proxy_train or {} for r in runs]
    search_rows = [["kind of search"] + [h.text(r.arm) for r in runs],
                   ["directory"] + [h.text(r.path) for r in runs]]
    shown_apart = {"train"} | ({"ladder"} if any(s["ladder"] for s in search) else set())
    search_rows += [[h.text(k)] + [h.text(_setting(r, s, k))
                                   for r, s in zip(runs, search, strict=True)]
                    for k in search[0] if k not in shown_apart]
    train_rows = [["config key"] + [h.text(r.proxy_key) for r in runs]]
    names = dict.fromkeys(k for t in train for k in t)
    train_rows += [[h.text(k)] + [h.text(_value(t.get(k))) for t in train] for k in names]
    return search_rows, train_rows


def _ladder_rows(rep: Report, runs: Sequence[SearchRun]) -> list[list[str]]:
    """The runs' ladders in words, one column per run ('–' for a proxy search)."""
    columns = [_ladder_text(rep, r) for r in runs]
    names = dict.fromkeys(k for c in columns for k in c)
    return [[h.text(k)] + [h.text(c.get(k, "–")) for c in columns] for k in names]


def _ladder_text(rep: Report, search: SearchRun) -> dict[str, str]:
    """Setting -> its meaning, of one search's ladder ({} for a proxy search)."""
    ladder, table = search.config.make_ladder(), search.config.ladder
    if ladder is None:
        return {}
    base = ladder.base
    text = {"preset": f"{ladder.preset} ({base.task} {base.layers}×{base.hidden}, "
                      f"{base.epochs} epochs, lr {base.learning_rate:g})",
            "eta": f"{ladder.eta}: the best 1/{ladder.eta} of a rung's results go up",
            "schedule": (f"{ladder.schedule}: a rung trains the first tokens of the full run"
                         if ladder.schedule == "prefix" else
                         f"{ladder.schedule}: the full run's rate schedule, compressed"),
            "width": f"each cell at {ladder.reference}'s parameter count",
            "learning rates": "per cell, probed at rung 0: "
                              + ", ".join(f"{base.learning_rate * s:g}" for s in table["probe"])}
    try:
        tokens, full = rep.rung_tokens(search)
    except EXPECTED_ERRORS as err:
        return {**text, "rungs": f"not available ({err})"}
    for rung, budget in enumerate(tokens):
        text[f"rung {rung}"] = (f"{budget:,} tokens (the full run)" if budget == full else
                                f"{budget:,} tokens ({budget / full:.1%} of the full run)")
    return text


def _setting(run: SearchRun, settings: dict[str, Any], name: str) -> str:
    """A search setting's value, or a dash where it has no effect in that search."""
    return "– (no effect)" if name in run.config.inert else _value(settings[name])


def _value(value: object) -> str:
    return "–" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


def _zoo_configs_table(zoo: Zoo) -> str:
    groups: dict[str, list[Run]] = {}
    for run in zoo.runs():
        groups.setdefault(run.config_key, []).append(run)
    if not groups:
        return h.note(f"the zoo {zoo.path} holds no runs")
    rows = []
    for key, runs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        statuses = Counter(r.status for r in runs)
        rows.append([h.text(config_label(runs[0])), h.text(key), h.num(len(runs)),
                     h.num(statuses.get("ok", 0)), h.num(len(runs) - statuses.get("ok", 0))])
    return h.table(["training", "config key", "runs", "ok", "diverged/failed"], rows,
                   numeric=(2, 3, 4), table_id="zoo-configs")


def config_label(run: Run) -> str:
    """A run's training in a few words: task, layers x hidden, length, preset name if any."""
    c = run.config
    preset = _preset_label(c)
    return (f"{run.task} {c.get('layers', 1)}×{c.get('hidden')}, {_length(c)}"
            + (f" ({preset})" if preset else ""))


def _length(config: dict) -> str:
    """How long a run trained: a token budget (a ladder rung's as a prefix of the full run's
    schedule, "149,188 of 12,084,280 tokens"), else its epochs."""
    budget, schedule = config.get("budget_tokens"), config.get("schedule_tokens")
    if not budget:
        return f"{config['epochs']} epochs" if config.get("epochs") else ""
    if schedule and schedule > budget:
        return f"{budget:,} of {schedule:,} tokens"
    return f"{budget:,} tokens" + (", compressed schedule" if schedule else "")


#: what a run may change and still follow its preset: width (`--match-params`), learning
#: rate, seed, a ladder rung's token budget and schedule, and what changes nothing learned
#: (device, extra evaluation points)
PRESET_FREE = ("hidden", "emb", "lr", "seed", "budget_tokens", "schedule_tokens",
               *NOT_LEARNED)


def preset_of(config: dict) -> str | None:
    """The preset whose recipe ``config`` follows (every field but `PRESET_FREE` equal)."""
    return next((name for name, preset in PRESETS.items()
                 if all(config.get(k) == v for k, v in preset.to_dict().items()
                        if k not in PRESET_FREE)), None)


def _preset_label(config: dict) -> str | None:
    """The preset a configuration follows, with its learning rate and seed if changed:
    retrainings at another width, rate or seed and ladder rungs name the preset they follow."""
    name = preset_of(config)
    return None if name is None else ", ".join([name, *_preset_changes(config, name)])


def _preset_changes(config: dict, name: str) -> list[str]:
    """The learning rate and seed of ``config`` where they differ from preset ``name``'s."""
    fields = PRESETS[name].to_dict()
    return [f"{k} {config[k]:g}" for k in ("lr", "seed") if config.get(k) not in (None, fields[k])]


# --- section: search progress -----------------------------------------------------------------


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
        caption = ("one panel per ladder rung (perplexities are compared within a rung only): "
                   "every training (colour: origin) at the point of its run where it happened, "
                   "counted in rung-0 cells (new candidates) trained, and the best so far per "
                   "kind of search and rung (log scale)")
        table = _ladder_progress_table(frame, tokens)
    else:
        caption = ("every trained candidate (colour: origin) and the best so far per kind of "
                   "search (log scale)")
        table = _progress_table(frame)
    return (h.figure(src, caption) + table
            + h.para(h.link("progress.csv", "progress data (CSV)")))


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


def _ladder_progress_table(frame: pd.DataFrame, tokens: dict[str, list[int]]) -> str:
    """Per run of a ladder search, a row per rung (``tokens``: each run's rung budgets, []
    if unknown) and one for all rungs: trainings, diverged or failed, CPU hours (the logged
    seconds), the best at the rung, the rung-0 cells trained when it was first reached, and
    those needed to reach random search's best at the same rung."""
    targets = random_bests(frame)
    rows = []
    for run, part in frame.groupby("run", sort=False):
        arm = part["arm"].iloc[0]
        for rung, at in part.groupby("rung"):
            best = at["best_so_far"].iloc[-1]
            target = targets.get(rung, math.nan)
            name = (f"{rung} ({tokens[run][rung]:,} tokens)" if rung < len(tokens[run])
                    else str(rung))
            rows.append([h.text(run), h.text(arm), h.text(name), *_cost(at), h.num(best),
                         h.num(reached_at(at, best, "cells") if math.isfinite(best) else None),
                         h.num(target), _reach_text(at, target, "cells", part["cells"].max())])
        rows.append([h.text(run), h.text(arm), "all rungs", *_cost(part), "", "", "", ""])
    header = ["run", "kind", "rung", "trainings (rung 0: new cells)", "diverged/failed",
              "CPU hours", "best val ppl", "reached at (rung-0 cells)",
              "random's best at the rung", "rung-0 cells to reach random's best"]
    return h.table(header, rows, numeric=(3, 4, 5, 6, 7, 8, 9), table_id="progress-table")


def _cost(part: pd.DataFrame) -> list[str]:
    """Trainings, diverged or failed ones, and CPU hours of some rows of one run."""
    return [h.num(len(part)), h.num(int((part["status"] != "ok").sum())),
            h.num(part["seconds"].sum() / 3600)]


def _reach_text(part: pd.DataFrame, target: float, at: str, within: int) -> str:
    """When one run (at one rung) first reached ``target``, by column ``at`` (of ``within``
    in all)."""
    if not math.isfinite(target):
        return "–"
    reach = reached_at(part, target, at)
    return h.num(reach) if reach else f"not within {within}"


# --- section: best cells ----------------------------------------------------------------------


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
            + h.table(header, rows, numeric=(0, 3, 4, 5), table_id="best-cells")
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


def ladder_cells(zoo: Zoo, searches: Sequence[SearchRun]) -> list[LadderCell]:
    """The cells the ladder searches trained, best first (`LadderCell.rank`); results whose
    run is not in ``zoo`` are left out."""
    by_id = {r.run_id: r for r in zoo.runs()}
    cells: dict[str, dict[int, Run]] = {}
    found: dict[str, dict[str, None]] = {}
    for row in progress_data(searches).itertuples():
        run = by_id.get(row.run_id)
        if run is None:
            continue
        rungs = cells.setdefault(run.hash, {})
        if row.rung not in rungs or _best_first(run) < _best_first(rungs[row.rung]):
            rungs[row.rung] = run
        found.setdefault(run.hash, {})[row.run] = None
    return sorted((LadderCell(runs, ", ".join(found[h])) for h, runs in cells.items()),
                  key=lambda cell: cell.rank)


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
    ranked = ladder_cells(rep.zoo, searches)[: rep.options.rows]
    if not ranked:
        return h.note(f"no run of {', '.join(s.label for s in searches)} is in the zoo"), []
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
    return h.table(header, rows, numeric=numeric, table_id=table_id), records


def _result_text(run: Run) -> str:
    """A run's validation perplexity, or its status when it has none."""
    return h.num(run.val_ppl) if run.status == "ok" else h.text(run.status)


def _full_text(run: Run, preset: str) -> str:
    """A full run of ``preset``: val / test ppl (or its status) and how it differs from the
    preset (rate, seed)."""
    changes = ", ".join(_preset_changes(run.config, preset))
    result = (f"{h.num(run.val_ppl)} / {h.num(run.test_ppl)}" if run.status == "ok"
              else h.text(run.status))
    return result + (f" ({h.text(changes)})" if changes else "")


def _cell_html(run: Run, name: str) -> str:
    """The cell's anchor: its library name (if it has one) over its hash."""
    named = "" if run.hash.startswith(name) else f"{h.text(name)}<br>"
    return f'<span id="cell-{run.hash}">{named}<span class="muted">{run.hash}</span></span>'


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


# --- section: ranker --------------------------------------------------------------------------


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


# --- section: hidden states -------------------------------------------------------------------


def hidden_section(rep: Report) -> str:
    task = rep.need_task()
    runs = select_runs(rep.zoo, top=rep.options.top, task=task)
    corpus = load_corpus(task, rep.options.data_dir)
    text = split_text(corpus, "valid", rep.options.tokens)
    recorded = activations(rep.zoo, runs, text, rep.cache)
    data = comparison(runs, labels(runs), recorded, text)
    paths = draw_comparison(data, rep.out / IMAGES)
    parts = [h.para(f"The {len(runs)} runs of task {h.text(task)} with the lowest validation "
                    f"perplexity, run over {h.text(text.source)} (top layer)."),
             _mixed_remark(runs), _runs_table(runs, data.names),
             h.figure(rep.src(paths["heatmaps"]),
                      "hidden units over the first sentence, one panel per run")]
    if data.cka is None:
        parts.append(h.note("the similarity clustermap needs at least 2 runs"))
        return "".join(parts)
    data.cka.to_csv(rep.out / "similarity_cka.csv")
    if data.constant:
        parts.append(h.remark(f"CKA is undefined (blank) for {', '.join(data.constant)}: their "
                              f"hidden state does not vary over the text"))
    src, div_src = rep.src(paths["clustermap"]), rep.src(paths["diversity"])
    parts += [h.row(h.figure(src, "linear CKA between the runs' hidden states, clustered on "
                                  "1 - CKA"),
                    h.figure(div_src, "per pair of runs: gain of their two-member ensemble "
                                      "over the better one (same tokens) against 1 - CKA")),
              h.para(h.link("similarity_cka.csv", "CKA matrix (CSV)"))]
    return "".join(parts)


def _mixed_remark(runs: Sequence[Run]) -> str:
    """A warning when ``runs`` trained for different lengths (a ladder's rung runs beside
    full runs): the lowest perplexities are then not the best cells ('' otherwise)."""
    if len({_length(r.config) for r in runs}) < 2:
        return ""
    return h.remark("These runs trained for different lengths (see 'training': rung runs of "
                    "a ladder search are short prefixes of a full run), so their perplexities "
                    "are not comparable with each other.")


def _runs_table(runs: Sequence[Run], names: Sequence[str]) -> str:
    rows = [[h.text(n), h.text(r.run_id), h.text(config_label(r)), h.num(r.params),
             h.num(r.val_ppl), h.num(r.test_ppl), h.code(r.expr)]
            for n, r in zip(names, runs, strict=True)]
    return h.table(["label", "run", "training", "params", "val ppl (as trained)", "test ppl",
                    "DSL"], rows,
                   numeric=(3, 4, 5), table_id="analysed-runs")


# --- section: ensemble ------------------------------------------------------------------------


def ensemble_section(rep: Report) -> str:
    task = rep.need_task()
    ok = [r for r in rep.zoo.runs(task, "ok") if r.has_weights]
    if len(ok) < 2:
        raise Unavailable(f"an ensemble needs at least 2 ok runs with weights of task "
                          f"{task!r}; the zoo holds {len(ok)}")
    result = ens.build(rep.zoo, task, rep.options.top, "greedy", None, rep.options.data_dir,
                       rep.cache, ens.Layout(tokens=rep.options.eval_tokens))
    ens.save(result, rep.out / "ensemble.json")
    total = sum(m.weight for m in result.members)
    pool = sorted(result.pool, key=lambda m: (-m.weight, m.val_ppl))
    runs = [rep.zoo.run(m.run_id) for m in pool]
    rows = [[h.text(m.label), h.text(f"{m.weight}/{total}" if m.weight else "0"),
             h.num(m.val_ppl), h.num(m.test_ppl), h.text(m.run_id),
             h.text(config_label(run)), h.code(m.expr)] for m, run in zip(pool, runs, strict=True)]
    best = next(m for m in result.members if m.label == result.best_member)
    summary = [["greedy ensemble", h.num(result.val_ppl), h.num(result.test_ppl)],
               [f"best member ({h.text(best.label)})", h.num(best.val_ppl),
                h.num(best.test_ppl)],
               [f"uniform average of the pool ({len(result.pool)})", "–",
                h.num(result.uniform_test_ppl)]]
    tokens = (f"the first {rep.options.eval_tokens:,} tokens of each split"
              if rep.options.eval_tokens else "the full validation and test splits")
    # not the perplexities measured in training (other tokens): say which these are
    where = (f"first {rep.options.eval_tokens:,} tokens" if rep.options.eval_tokens
             else "full split")
    measured = [f"val ppl ({where})", f"test ppl ({where})"]
    return (h.para(f"Pool: the {len(result.pool)} runs of task {h.text(task)} with the lowest "
                   f"validation perplexity; members chosen greedily (with replacement) on the "
                   f"validation split; perplexities on {tokens}. Ensemble gain over its best "
                   f"member: {result.gain:.1%}.")
            + _mixed_remark(runs)
            + h.table(["", *measured], summary, numeric=(1, 2),
                      table_id="ensemble-summary")
            + h.table(["run", "weight", *measured, "run id", "training", "DSL"], rows,
                      numeric=(1, 2, 3), table_id="ensemble-members")
            + h.para(h.link("ensemble.json", "the ensemble (for `cellzoo ensemble --load`)")))


# --- the page ---------------------------------------------------------------------------------

SECTIONS: list[tuple[str, str, Callable[[Report], str]]] = [
    ("configs", "Runs and configurations", configs_section),
    ("progress", "Search progress", progress_section),
    ("cells", "Best cells", cells_section),
    ("ranker", "Ranker accuracy", ranker_section),
    ("hidden", "Hidden states and similarity", hidden_section),
    ("ensemble", "Ensemble", ensemble_section),
]


def _build(builder: Callable[[Report], str], rep: Report) -> tuple[str, str | None]:
    """(HTML, None) or (a "not available" note, its reason). Matplotlib settings a drawing
    step changes (seaborn themes) are undone afterwards, so each figure looks as its own
    command draws it."""
    try:
        with matplotlib.rc_context():
            return builder(rep), None
    except (Unavailable, *EXPECTED_ERRORS) as err:
        return h.note(str(err)), str(err)


def _intro(rep: Report) -> str:
    runs = list(rep.zoo.runs())
    ok = sum(r.status == "ok" for r in runs)
    rows = [["zoo", h.text(rep.zoo.path)],
            ["cells / runs", f"{len(rep.zoo.hashes()):,} / {len(runs):,} ({ok:,} ok)"],
            ["task", h.text(rep.task) if rep.task else h.note(rep.task_problem or "")],
            ["run directories", "<br>".join(h.text(r.path) for r in rep.runs) or "–"]]
    return h.table(None, rows, table_id="overview")


def write_report(zoo_path: str | Path, run_dirs: Sequence[str | Path], out: str | Path,
                 options: Options = Options(), cache: AnalysisCache | None = None
                 ) -> dict[str, object]:
    """Write ``out/index.html`` (and its images and CSVs); returns the page's path, the
    images, and per section ``None`` or why it is not available."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_search_runs(run_dirs)
    with Zoo.open(zoo_path, "r") as zoo:
        try:
            task, problem = resolve_task(zoo, runs, options.task), None
        except AnalysisError as err:
            task, problem = None, str(err)
        rep = Report(zoo, runs, options, out, cache or AnalysisCache(None), task, problem)
        built = {anchor: (title, *_build(builder, rep)) for anchor, title, builder in SECTIONS}
        intro = _intro(rep)
    sections = [h.Section(anchor, title, body) for anchor, (title, body, _) in built.items()]
    index = out / "index.html"
    index.write_text(h.page(f"cellzoo report: {Path(zoo_path).name}", intro, sections),
                     encoding="utf-8")
    images = sorted(str(p) for p in (out / IMAGES).glob("*.png"))
    return {"index": str(index), "images": images,
            "unavailable": {anchor: reason for anchor, (_, _, reason) in built.items()}}
