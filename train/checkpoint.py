"""Checkpoints of a training run: one plain dict in ``DIR/checkpoint.pt``, written atomically.

The dict holds state dicts, the loop's position, the carried hidden state and
every RNG state, so a resumed run continues exactly where the saved one was.
It is loaded with ``weights_only=True`` (no pickled classes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cellzoo.common.errors import CheckpointError
from cellzoo.common.io import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
#: a scheduled run's copy of itself at its decay onset, where a longer rung branches off
BRANCH_NAME = "branch.pt"
FORMAT = 1



def checkpoint_path(folder: str | os.PathLike, name: str = CHECKPOINT_NAME) -> Path:
    return Path(folder) / name


def save_checkpoint(folder: str | os.PathLike, payload: dict[str, Any],
                    name: str = CHECKPOINT_NAME) -> Path:
    """Write ``payload`` to a temporary file, then rename it over the old checkpoint (durably).
    A failed write (a full disk: torch raises RuntimeError there, the OS OSError) is a
    `CheckpointError` that names the file; the checkpoint written before stays intact."""
    path = checkpoint_path(folder, name)
    try:
        return atomic_write(path, lambda f: torch.save({"format": FORMAT, **payload}, f))
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"cannot write the checkpoint {path}: {err}; the checkpoint "
                              f"written before it is intact, so the run can continue from it "
                              f"(--resume) once the folder can be written") from err


def load_checkpoint(folder: str | os.PathLike,
                    name: str = CHECKPOINT_NAME) -> dict[str, Any] | None:
    """The checkpoint ``name`` in ``folder``, or None when there is none."""
    path = checkpoint_path(folder, name)
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"{path}: not a readable cellzoo checkpoint ({err})") from err
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format')!r}, "
                              f"expected {FORMAT}")
    return payload
