"""Progress of a training run on stderr: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from cellzoo.train.loop import Progress, ProgressFn


def progress_line(update: Progress) -> str:
    """One plain line, printed at each validation point and every 5% of the budget."""
    val = "" if update.val_ppl is None else f"  valid ppl {update.val_ppl:.2f}"
    loss = "" if math.isnan(update.train_loss) else f"  train loss {update.train_loss:.3f}"
    return (f"tokens {update.tokens:,}/{update.total_tokens:,}  epoch {update.epoch + 1}  "
            f"lr {update.lr:g}{loss}{val}")


@contextmanager
def progress_reporter() -> Iterator[ProgressFn]:
    """A progress callback for `train_cell`: a rich bar when stderr is a terminal."""
    if not sys.stderr.isatty():
        printed = [0]  # the last twentieth of the budget that got a line

        def plain(update: Progress) -> None:
            twentieth = 20 * update.tokens // max(update.total_tokens, 1)
            if update.val_ppl is not None or twentieth > printed[0]:
                printed[0] = twentieth
                click.echo(progress_line(update), err=True)

        yield plain
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.fields[info]}"))
    with Bar(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("train", total=None, info="")

        def live(update: Progress) -> None:
            info = f"loss {update.train_loss:.3f}"
            if update.val_ppl is not None:
                bar.console.print(progress_line(update), highlight=False)
            bar.update(task, completed=update.tokens, total=update.total_tokens, info=info)

        yield live
