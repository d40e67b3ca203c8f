"""The HTML report of a zoo and its searches: one static page (`cellzoo report` draws it).

Sections: the configuration of each search run (and the training configurations in the
zoo), search progress (search against random search), the best cells with their proxy
and full trainings and lineage, the ranker's accuracy, hidden-state heatmaps with the
CKA clustermap, and the ensemble. A search on a fidelity ladder is shown per rung (its
rungs' perplexities are never compared with each other): its ladder, its progress and
best per rung, its cells by the highest rung reached.

Every figure comes from the data step and drawing step of the command that owns it
(`evolve.progress`, `ranker.plot`, `analysis.plots`). Each section has its module here
(`configs`, `progress`, `cells`, `ranking`, `similarity`, `ensemble`), a builder that
reads a `context.Report` and returns HTML made with `html`; this module runs them and
lays out the page. A section whose data is missing says why ("Not available: ...")
instead of failing the page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

from cellzoo.analysis.cache import AnalysisCache, AnalysisError
from cellzoo.report import html as h
from cellzoo.report.cells import cells_section
from cellzoo.report.configs import configs_section
from cellzoo.report.context import (
    EXPECTED_ERRORS,
    IMAGES,
    Options,
    Report,
    Unavailable,
    load_search_runs,
    resolve_task,
)
from cellzoo.report.ensemble import ensemble_section
from cellzoo.report.progress import progress_section
from cellzoo.report.ranking import ranker_section
from cellzoo.report.similarity import hidden_section
from cellzoo.zoo import Zoo

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
                 options: Options | None = None, cache: AnalysisCache | None = None
                 ) -> dict[str, object]:
    """Write ``out/index.html`` (and its images and CSVs); returns the page's path, the
    images, and per section ``None`` or why it is not available."""
    options, out = options or Options(), Path(out)
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
