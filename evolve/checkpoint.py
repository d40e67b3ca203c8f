"""The search checkpoint: ``RUN_DIR/checkpoint.json`` plus a tensor file it names.

The JSON holds everything a person may want to read (configuration, counters,
population, queued and in-flight jobs); ``checkpoint-NNNNNN.pt`` holds RNG
states and the ranker's and controller's state dicts (loaded with
``weights_only=True``). Each save writes a new .pt first, then replaces the
JSON atomically (temporary file, fsync, `os.replace`), then deletes older .pt
files: a kill at any moment leaves a JSON whose .pt exists.

Run-directory logs (``evaluations.jsonl``, ``ranker_log.jsonl``) are appended
before each checkpoint; `truncate_jsonl` drops the lines a killed run wrote
after its last checkpoint, so a resumed run does not log them twice.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellzoo.common.errors import CheckpointError

FORMAT = 1
STATE_NAME = "checkpoint.json"
CONFIG_NAME = "config.json"



def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, seq: int, state: dict[str, Any],
                    tensors: dict[str, Any]) -> None:
    """Write ``tensors`` to a new .pt file (number ``seq``), then ``state`` (naming it) as
    checkpoint.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"checkpoint-{seq:06d}.pt"
    tmp = run_dir / (name + f".tmp{os.getpid()}")
    torch.save(tensors, tmp)
    os.replace(tmp, run_dir / name)
    write_json_atomic(run_dir / STATE_NAME, {"format": FORMAT, **state, "tensors": name})
    for old in run_dir.glob("checkpoint-*.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(state, tensors) of the run in ``run_dir``, or None when it has no checkpoint."""
    path = run_dir / STATE_NAME
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        tensors = torch.load(run_dir / state["tensors"], map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a readable cellzoo search checkpoint ({err})") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format')!r}, expected "
                              f"{FORMAT}")
    return state, tensors


def global_rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"random": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "torch": torch.get_rng_state()}


def set_global_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_tuples(states["random"]))
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])


def _tuples(value: Any) -> Any:
    """Lists back to tuples (RNG states must be tuples all the way down)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a kill mid-write) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Rewrite ``path`` atomically with only the rows ``keep`` accepts."""
    if not path.is_file():
        return
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in read_jsonl(path):
            if keep(row):
                f.write(json.dumps(row, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
