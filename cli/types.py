"""Click parameter types shared by the commands."""

from __future__ import annotations

import click


class IntList(click.ParamType):
    """A comma-separated list of integers in ``[low, high]`` (``high`` None: no upper bound),
    as a tuple; the empty string is the empty tuple."""

    name = "N,N,..."

    def __init__(self, low: int = 1, high: int | None = None, example: str = "1,5,20"):
        self.low, self.high, self.example = low, high, example

    def convert(self, value, param, ctx) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            numbers = tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r}: expected whole numbers like {self.example}", param, ctx)
        bad = [n for n in numbers if n < self.low or (self.high is not None and n > self.high)]
        if bad:
            span = f"from {self.low} to {self.high}" if self.high is not None else \
                f"at least {self.low}"
            self.fail(f"{value!r}: each number must be {span} (got {bad[0]})", param, ctx)
        return numbers
