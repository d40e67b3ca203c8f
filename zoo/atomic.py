"""Publishing files atomically and durably: write aside, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Make the fully written `tmp` appear as `final` in one step, surviving power loss too."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)


def remove_durably(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
    if paths:
        fsync_path(paths[0].parent)
