"""Which zoo runs an analysis looks at, and the short labels plots and tables show for them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import islice

from cellzoo.analysis.cache import AnalysisError
from cellzoo.dsl import cell_hash
from cellzoo.dsl.function import behaviour
from cellzoo.dsl.library import LIBRARY
from cellzoo.zoo import Run, Zoo, ZooError

#: library cell hash -> name, so plots say "LSTM" instead of a hash
#: the pool of runs compared or ensembled by default (compare, ensemble and report share it)
POOL = 8
#: validation tokens the cells are run over for similarity (compare and report share it)
TOKENS = 2000

_LIBRARY_NAMES = {cell_hash(cell.expr): name for name, cell in LIBRARY.items()}


def only_task(zoo: Zoo, task: str | None, weights: bool = True) -> str:
    """``task``, or the one task the zoo's ok runs (with weights, unless ``weights`` is
    false) share (an error names the choices)."""
    tasks = sorted({r.task for r in zoo.runs(status="ok") if r.has_weights or not weights})
    if task is not None:
        if task not in tasks:
            kind = "ok run with weights" if weights else "ok run"
            raise AnalysisError(f"zoo {zoo.path} has no {kind} on task {task!r}; "
                                f"its tasks: {', '.join(tasks) or 'none'}")
        return task
    if len(tasks) != 1:
        raise AnalysisError(f"zoo {zoo.path} holds ok runs of {len(tasks)} tasks "
                            f"({', '.join(tasks) or 'none'}); choose one with --task")
    return tasks[0]


def best_run_of_cell(zoo: Zoo, hash_prefix: str, task: str | None = None) -> Run:
    """The ok run with weights and the lowest validation perplexity of a cell (hash prefix)."""
    try:
        cell = zoo.cell(hash_prefix)
    except ZooError as err:
        raise AnalysisError(str(err)) from None
    runs = [r for r in cell.runs if r.status == "ok" and r.has_weights
            and (task is None or r.task == task)]
    if not runs:
        where = f" on task {task!r}" if task else ""
        raise AnalysisError(f"cell {cell.hash} has no ok run with weights{where} in {zoo.path}")
    return min(runs, key=lambda r: r.val_ppl)


def select_runs(zoo: Zoo, cells: Sequence[str] | None = None, top: int | None = None,
                task: str | None = None, runs: Sequence[str] | None = None) -> list[Run]:
    """Runs by run id prefixes (``runs``: exactly these, e.g. two seeds of one cell), by cell
    hash prefixes (each cell's best run), or the ``top`` runs of one task (`distinct` ones:
    a copy of a better run does not take a place).

    All chosen runs share one task (they are compared on the same tokens): ``task``, or the
    one the cells (or the zoo) have in common.
    """
    if runs:
        return _given_runs(zoo, runs, task)
    if cells:
        task = task or _common_task(zoo, cells)
        runs = [best_run_of_cell(zoo, prefix, task) for prefix in cells]
    else:
        task = only_task(zoo, task)
        runs = list(islice(distinct(r for r in zoo.top(len(zoo), task) if r.has_weights),
                           top or None))
    if not runs:
        raise AnalysisError(f"no ok runs with weights to analyse in {zoo.path}")
    return runs


def distinct(runs: Iterable[Run]) -> Iterator[Run]:
    """The runs less the copies: a run whose cell computes what an earlier run's cell does
    (`cellzoo.dsl.function`: two trees that differ in dead code, say) under the same training
    configuration, seed included, makes the same predictions up to summation order. In a pool
    it adds nothing but takes a place a different run could have had."""
    seen = set()
    for run in runs:
        key = (_fingerprint(run.expr), run.config_key)
        if key not in seen:
            seen.add(key)
            yield run


@lru_cache(maxsize=4096)
def _fingerprint(expr: str) -> str:
    return behaviour(expr).fingerprint


def _given_runs(zoo: Zoo, prefixes: Sequence[str], task: str | None) -> list[Run]:
    """The runs with these id prefixes; each ok with weights, all of one task (``task``)."""
    try:
        runs = [zoo.run(prefix) for prefix in prefixes]
    except ZooError as err:
        raise AnalysisError(str(err)) from None
    for run in runs:
        if run.status != "ok" or not run.has_weights:
            raise AnalysisError(f"run {run.run_id} (cell {run.hash}) in {zoo.path} is "
                                f"{run.status}{'' if run.has_weights else ', without weights'}; "
                                f"only ok runs with weights can be analysed")
    tasks = sorted({r.task for r in runs} | ({task} if task else set()))
    if len(tasks) > 1:
        raise AnalysisError(f"the chosen runs are of tasks {', '.join(tasks)}; they must share "
                            f"one task and vocabulary")
    if len({r.run_id for r in runs}) < len(runs):
        raise AnalysisError("a run is chosen twice in --runs")
    return runs


def _common_task(zoo: Zoo, cells: Sequence[str]) -> str:
    """The one task on which every given cell has an ok run with weights."""
    per_cell = []
    for prefix in cells:
        try:
            runs = zoo.cell(prefix).runs
        except ZooError as err:
            raise AnalysisError(str(err)) from None
        per_cell.append({r.task for r in runs if r.status == "ok" and r.has_weights})
    common = sorted(set.intersection(*per_cell))
    if not common:
        found = " / ".join(",".join(sorted(t)) or "none" for t in per_cell)
        raise AnalysisError(f"the chosen cells have no task in common (their tasks: {found}); "
                            f"they must share one task and vocabulary")
    if len(common) > 1:
        raise AnalysisError(f"the chosen cells were all trained on {', '.join(common)}; "
                            f"choose one with --task")
    return common[0]


def labels(runs: Sequence[Run]) -> list[str]:
    """Library name or short hash per run; unique (a repeated cell gets its run id appended)."""
    names = [_LIBRARY_NAMES.get(r.hash, r.hash[:8]) for r in runs]
    repeated = {n for n, count in Counter(names).items() if count > 1}
    return [f"{n}#{r.run_id[:4]}" if n in repeated else n for n, r in zip(names, runs, strict=True)]
