"""A trained run saved to a file when it could not be stored, so that no result is lost.

`cellzoo train --zoo` writes the result (metadata, curve and weights) here before it
stores the run, and deletes the file once the zoo has acknowledged the run. A file
that is left over, because storing failed or the process was killed, is added later
with `cellzoo zoo add ZOO FILE`; a run the zoo already holds is recognised and skipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from cellzoo.common.io import atomic_write
from cellzoo.train.config import TrainResult
from cellzoo.zoo.records import Run, ZooError
from cellzoo.zoo.store import Zoo

FORMAT = 1


def save_pending(path: Path, result: TrainResult, lineage: dict[str, Any]) -> Path:
    """Write `result` durably to `path` (atomically: a reader never sees half a file, and a
    failed write leaves no temporary file)."""
    data = {"format": FORMAT, "result": result.to_json(), "lineage": lineage,
            "state_dict": result.state_dict}
    return atomic_write(path, lambda f: torch.save(data, f))


def load_pending(path: Path) -> tuple[TrainResult, dict[str, Any]]:
    try:
        data = torch.load(path, weights_only=True)
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        result = TrainResult.from_json(data["result"])
    except Exception as err:  # any unreadable file is the same user-facing problem
        raise ZooError(f"{path}: not a saved cellzoo training result ({err})") from None
    result.state_dict = data["state_dict"]
    return result, data["lineage"]


def stored_as(zoo: Zoo, result: TrainResult) -> Run | None:
    """The zoo's run of exactly this result (same cell, config, tokens, time and perplexity)."""
    key = result.config.key()
    for run in zoo.runs(result.config.task):
        if (run.hash == result.hash and run.config_key == key
                and run.tokens_trained == result.tokens_trained
                and run.seconds == float(result.seconds)
                and _same(run.val_ppl, result.val_ppl)):
            return run
    return None


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def add_pending(zoo: Zoo, path: Path) -> tuple[str, bool]:
    """Store the saved result in `zoo` unless it is there already; delete the file.
    Returns the run id and whether it was added now."""
    result, lineage = load_pending(path)
    found = stored_as(zoo, result)
    run_id = found.run_id if found else zoo.add_run(result, lineage=lineage)
    path.unlink()
    return run_id, found is None
