"""Help texts that name a setting's default take it from the dataclass that defines it, so
the two never disagree."""

from __future__ import annotations

import dataclasses
from typing import Any


def default(cls: type, name: str) -> str:
    """The default of dataclass field ``name`` of ``cls``, as a help text shows it."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    if field.default is dataclasses.MISSING:
        raise ValueError(f"{cls.__name__}.{name} has no plain default")
    return _shown(field.default)


def _shown(value: Any) -> str:
    return "yes" if value is True else "no" if value is False else str(value)
