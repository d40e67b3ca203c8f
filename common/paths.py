"""Checking, before long work starts, that its outputs can be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cellzoo.common.errors import UserError


def check_writable_dir(folder: str | os.PathLike, what: str, create: bool = True) -> Path:
    """Make sure files can be created in `folder` (made if missing and `create`), by creating
    one; a `UserError` naming `what` and the folder otherwise. Works for root too, where
    permission bits say nothing (a read-only mount still refuses)."""
    path = Path(folder)
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise UserError(f"cannot write {what}: folder {path} does not exist")
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(f"cannot write {what} in {path}: {err.strerror or err}") from None
    return path
