"""Progress of long work on stderr (stdout stays for results): rich bars and spinners."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import click

T = TypeVar("T")


@contextmanager
def working(what: str, show: bool = True) -> Iterator[None]:
    """A spinner naming `what` on a terminal; one line on stderr otherwise (nothing unless
    `show`)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not show:
        yield
        return
    if not console.is_terminal:
        click.echo(f"{what} ...", err=True)
        yield
        return
    with console.status(what):
        yield


def tracked(items: Sequence[T], what: str) -> Iterable[T]:
    """`items`, with a bar counting them on stderr (one line per item when not a terminal)."""
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)
    if not console.is_terminal:
        for i, item in enumerate(items, 1):
            click.echo(f"{what}: {i}/{len(items)}", err=True)
            yield item
        return
    yield from track(items, description=what, console=console, transient=True)
