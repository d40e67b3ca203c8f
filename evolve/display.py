"""What a person watching a search sees: a live line on a terminal, log lines elsewhere,
and a table of the best cells at the end."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cellzoo.evolve.search import Event


def _ppl(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def describe(event: Event) -> str:
    """One line about a result: what it was, how it did, the best so far, the pace."""
    m = event.member
    result = _ppl(m.val_ppl) if m.status == "ok" else m.status
    source = "reused" if m.reused else m.origin
    if m.rung:
        source += f", rung {m.rung}"
    rate = 60 * event.trained / event.elapsed if event.elapsed > 0 else 0.0
    best = event.best  # a ladder search's best is at the highest rung reached: say which
    where = f" (rung {best.rung}, {best.hash[:8]})" if best.rung else ""
    return (f"last {result} ({source}, {m.hash[:8]})  best {_ppl(best.val_ppl)}{where}  "
            f"{rate:.1f}/min")


class Reporter:
    """Callable for `Search(on_event=...)`: a rich progress bar when ``live``, else one plain
    log line per result. Use as a context manager around the search."""

    def __init__(self, total: int, done: int = 0, live: bool | None = None,
                 stream: TextIO = sys.stderr):
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.progress: Progress | None = None
        self.total, self.done = total, done

    def __enter__(self) -> Reporter:
        if self.live:
            self.progress = Progress(
                TextColumn("evolve"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), console=Console(file=self.stream))
            self.task = self.progress.add_task("evolve", total=self.total,
                                               completed=self.done, info="")
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event: Event) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=event.trained, total=event.total,
                                 info=describe(event))
            return
        print(f"[{event.trained}/{event.total}] {describe(event)}  {event.member.expr}",
              file=self.stream, flush=True)


def best_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The best cells of a search (rows of its evaluations log), best first."""
    table = Table(title=title)
    ladder = any(row.get("rung") for row in rows)  # a ladder search's rows name their rung
    for name, justify in (("#", "right"), ("rung", "right"), ("val ppl", "right"),
                          ("origin", "left"), ("gen", "right"), ("hash", "left"),
                          ("cell", "left")):
        if name != "rung" or ladder:
            table.add_column(name, justify=justify, overflow="fold")
    for i, row in enumerate(rows, 1):
        origin = "reused" if row.get("reused") else row["origin"]
        rung = [str(row.get("rung", 0))] if ladder else []
        table.add_row(str(i), *rung, _ppl(row["val_ppl"]), origin, str(row["generation"]),
                      row["hash"][:10], row["expr"])
    return table
