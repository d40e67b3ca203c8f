"""The HTML report of a zoo and its searches: one static page (`cellzoo report` draws it).

Sections: the configuration of each search run (and the training configurations in the
zoo), search progress (search against random search), the best cells with their proxy
and full trainings and lineage, the ranker's accuracy, hidden-state heatmaps with the
CKA clustermap, and the ensemble. Every figure comes from the data step and drawing
step of the command that owns it (`evolve.progress`, `ranker.plot`, `analysis.plots`);
this module gathers inputs and lays out the page (`report.html`). A section whose data
is missing says why ("Not available: ...") instead of failing the page.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

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
        parts.append(h.row(h.table(header, search, table_id="search-config"),
                           h.table(["proxy training"] + header[1:], train,
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
    search_rows += [[h.text(k)] + [h.text(_value(s[k])) for s in search]
                    for k in search[0] if k != "train"]
    train_rows = [["config key"] + [h.text(r.proxy_key) for r in runs]]
    names = dict.fromkeys(k for t in train for k in t)
    train_rows += [[h.text(k)] + [h.text(_value(t.get(k))) for t in train] for k in names]
    return search_rows, train_rows


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
    length = (f"{c['epochs']} epochs" if c.get("epochs")
              else f"{c['budget_tokens']:,} tokens" if c.get("budget_tokens") else "")
    preset = _preset_label(c)
    return (f"{run.task} {c.get('layers', 1)}×{c.get('hidden')}, {length}"
            + (f" ({preset})" if preset else ""))


def _preset_label(config: dict) -> str | None:
    """The preset a configuration follows, with its learning rate if changed: retrainings at
    another width (`--match-params`) or learning rate still name the preset they follow."""
    free = {"hidden", "emb", "lr", "device"}
    for name, preset in PRESETS.items():
        fields = preset.to_dict()
        if all(config.get(k) == v for k, v in fields.items() if k not in free):
            lr = config.get("lr")
            return name if lr in (None, fields["lr"]) else f"{name}, lr {lr:g}"
    return None


# --- section: search progress -----------------------------------------------------------------


def progress_data(searches: Sequence[SearchRun]) -> pd.DataFrame:
    """`progress_frame` of each search, labelled by its label on the page."""
    frames = []
    for search in searches:
        frame = progress_frame([search.path])
        frame["run"] = search.label
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def trainings_to_reach(frame: pd.DataFrame, target: float) -> int | None:
    """The first training number of one run whose best so far is at or below ``target``."""
    hit = frame[frame["best_so_far"] <= target + 1e-12]
    return int(hit["n"].iloc[0]) if len(hit) else None


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
    return (h.figure(src, "every trained candidate (colour: origin) and the best so far per "
                          "kind of search (log scale)")
            + _progress_table(frame) + h.para(h.link("progress.csv", "progress data (CSV)")))


def _progress_table(frame: pd.DataFrame) -> str:
    """Per run; a ladder search's best is its best at the highest rung it reached."""
    tops = {run: part[part["rung"] == part["rung"].max()]
            for run, part in frame.groupby("run", sort=False)}
    finals = pd.Series({run: top["best_so_far"].iloc[-1] for run, top in tops.items()})
    arms = frame.groupby("run", sort=False)["arm"].first()
    random_runs = [run for run, arm in arms.items() if arm.startswith("random")]
    target = finals[random_runs].mean() if random_runs else math.nan
    rows = []
    for run, part in frame.groupby("run", sort=False):
        best, top = finals[run], tops[run]
        reach = trainings_to_reach(top, target) if math.isfinite(target) else None
        rows.append([h.text(run), h.text(arms[run]), h.num(len(part)),
                     h.num(int((part["status"] != "ok").sum())), h.num(best),
                     h.num(trainings_to_reach(top, best) if math.isfinite(best) else None),
                     h.num(reach) if reach else ("–" if not math.isfinite(target)
                                                 else f"not within {len(part)}")])
    header = ["run", "kind", "trained", "diverged/failed", "best val ppl", "reached at",
              "trainings to reach random's best" + (f" ({target:.2f})"
                                                    if math.isfinite(target) else "")]
    return h.table(header, rows, numeric=(2, 3, 4, 5, 6), table_id="progress-table")


# --- section: best cells ----------------------------------------------------------------------


def proxy_keys(rep: Report, task: str) -> set[str]:
    """The training configurations of the searches on ``task``; with no run directory, the
    configuration most of the task's runs were trained under (a search's proxy)."""
    keys = {r.proxy_key for r in rep.searches if r.config.task == task}  # as stored
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
    return sorted(runs, key=lambda r: (r.status != "ok", r.task, r.val_ppl))


def cells_section(rep: Report) -> str:
    task = rep.need_task()
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
    pd.DataFrame(records).to_csv(rep.out / "best_cells.csv", index=False)
    header = ["#", "cell", "DSL", "params", "proxy val ppl (as trained)", "proxy test ppl",
              "other trainings (val / test ppl, params)", "lineage"]
    return (h.para(f"Proxy training: config key {h.text(', '.join(sorted(keys)))} "
                   f"(task {h.text(task)}); each cell's best run under it.")
            + h.table(header, rows, numeric=(0, 3, 4, 5), table_id="best-cells")
            + h.para(h.link("best_cells.csv", "every run of these cells (CSV)")))


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


def _record(rank: int, name: str, role: str, run: Run) -> dict:
    return {"rank": rank, "cell": name, "hash": run.hash, "role": role, "run_id": run.run_id,
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
                           f"candidates so far (it is fitted once the zoo holds "
                           f"{MIN_RANKER_RUNS} ok runs under the search's training)")
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
    return (f"<h3>{h.text(search.label)}</h3>"
            + h.para(f"{len(done)} candidates scored by the ranker and then trained, over "
                     f"{log['round'].nunique()} rounds: Kendall tau "
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
             _runs_table(runs, data.names),
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
    rows = [[h.text(m.label), h.text(f"{m.weight}/{total}" if m.weight else "0"),
             h.num(m.val_ppl), h.num(m.test_ppl), h.text(m.run_id), h.code(m.expr)]
            for m in sorted(result.pool, key=lambda m: (-m.weight, m.val_ppl))]
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
            + h.table(["", *measured], summary, numeric=(1, 2),
                      table_id="ensemble-summary")
            + h.table(["run", "weight", *measured, "run id", "DSL"], rows,
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
