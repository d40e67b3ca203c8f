"""What the report's section builders read: the zoo, the search run directories
(`SearchRun`), the page's options, and where they write (`Report`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cellzoo.analysis.cache import AnalysisCache, AnalysisError
from cellzoo.analysis.selection import POOL, TOKENS, only_task
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.rundir import CONFIG_NAME, EVALUATIONS_LOG, RunDir
from cellzoo.train import load_corpus
from cellzoo.zoo import Zoo, ZooError

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
    """``task``, else the task the readable run directories share, else the zoo's one task.
    Runs without weights count (a rebuilt search's, `cellzoo evolve --restore`): the cells
    table ranks them; the sections that run cells find their own runs with weights."""
    if task is None:
        tasks = {r.config.task for r in runs if r.config is not None}
        task = tasks.pop() if len(tasks) == 1 else None
    return only_task(zoo, task, weights=False)
