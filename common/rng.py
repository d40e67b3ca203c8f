"""Saving and restoring every global random generator: Python's, NumPy's and torch's (CPU and,
where present, CUDA), in types `torch.load(weights_only=True)` accepts."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    states = {"python": random.getstate(),
              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` saved (search checkpoints written before this module named
    Python's state ``random``; both are read)."""
    random.setstate(tuples(states["python"] if "python" in states else states["random"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def tuples(value: Any) -> Any:
    """Lists back to tuples: `random.setstate` wants the nested tuples `getstate` gave, and a
    round trip through a checkpoint may turn them into lists."""
    return tuple(tuples(v) for v in value) if isinstance(value, list | tuple) else value
