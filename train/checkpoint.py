"""Checkpoints of a training run: one plain dict in ``DIR/checkpoint.pt``, written atomically.

The dict holds state dicts, the loop's position, the carried hidden state and
every RNG state, so a resumed run continues exactly where the saved one was.
It is loaded with ``weights_only=True`` (no pickled classes).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellzoo.common.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 1



def checkpoint_path(folder: str | os.PathLike) -> Path:
    return Path(folder) / CHECKPOINT_NAME


def save_checkpoint(folder: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to a temporary file, then rename it over the old checkpoint."""
    path = checkpoint_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"format": FORMAT, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint in ``folder``, or None when there is none."""
    path = checkpoint_path(folder)
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


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in weights-only-safe types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    states = {"python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_tuples(states["python"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples it gave (a round trip may turn them to lists)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value
