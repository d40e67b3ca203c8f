"""The run directory of a search: the one reader and writer of its files.

```
RUN_DIR/
  config.json              the resolved SearchConfig (written when the search starts)
  checkpoint.json          counters, population, queue, in-flight jobs, the config key,
                           a ladder search's ASHA state and cells' rates ...
  checkpoint-NNNNNN.pt     RNG states, ranker and controller state dicts (named by the JSON)
  evaluations.jsonl        one line per result that joined the population (or, on a
                           ladder, a rung result that updated its member)
  ranker_log.jsonl         one line per trained candidate the ranker had scored (and rung)
  restore.jsonl            the earlier evaluations log a rebuilt search takes results from
                           (`cellzoo evolve --restore LOG` copies it here; `evolve.restore`)
  cells/<hash>/            a ladder search's per-cell rung checkpoints: the branch a promotion
                           continues, and the run under way (`Climb.prune` deletes the rest)
```

Checkpoints: each save writes a new .pt first, then replaces the JSON atomically, then
deletes older .pt files, so a kill at any moment leaves a JSON whose .pt exists. The .pt
is loaded with ``weights_only=True``. The logs are appended (and fsynced) before each
checkpoint; `RunDir.cut_logs` drops the lines a killed run wrote after its last
checkpoint, so a resumed run does not log them twice.

The search (`evolve.search`), `--resume`, `cellzoo plot progress` and the report all go
through `RunDir`; nothing else knows these names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cellzoo.common.errors import CheckpointError
from cellzoo.common.io import (
    append_jsonl,
    atomic_write,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from cellzoo.evolve.config import SearchConfig

FORMAT = 1
CONFIG_NAME = "config.json"
STATE_NAME = "checkpoint.json"
EVALUATIONS_LOG = "evaluations.jsonl"
RANKER_LOG = "ranker_log.jsonl"
RESTORE_LOG = "restore.jsonl"
CELLS_DIR = "cells"


class RunDir:
    """The files of one search run (see the module doc for the layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    @property
    def is_search(self) -> bool:
        """Whether a search has logged here (it has an evaluations log)."""
        return (self.path / EVALUATIONS_LOG).is_file()

    def cell_dir(self, cell_hash: str) -> Path:
        """The folder for one cell's training checkpoints."""
        return self.path / CELLS_DIR / cell_hash

    # ---- the stored configuration --------------------------------------------------------

    def write_config(self, config: SearchConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / CONFIG_NAME, config.to_dict())

    def config(self) -> SearchConfig:
        """The stored configuration; ValueError (or OSError) saying why when unreadable. A
        ladder stored before rungs had a ``schedule`` ran the compressed one; a search stored
        before ``dedup`` told duplicates by structure alone."""
        path = self.path / CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data.get("ladder"), dict):
                data["ladder"].setdefault("schedule", "compressed")
            data.setdefault("dedup", "structure")
            return SearchConfig.from_dict(data)
        except TypeError as err:
            raise ValueError(f"{path}: not a search configuration ({err})") from None

    def resumable_config(self) -> SearchConfig | None:
        """The configuration of the search checkpointed here (None if nothing is)."""
        if not (self.path / STATE_NAME).is_file():
            return None
        try:
            return self.config()
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{self.path / CONFIG_NAME}: cannot read the configuration "
                                  f"of the search checkpointed in {self.path} ({err})") from None

    def training(self) -> tuple[str, dict[str, Any]] | None:
        """(config key, TrainConfig dict) of the training the search judged candidates by, as
        it stored them (None before its first checkpoint). Read these rather than derive
        them from the config: the task's proxy defaults may have changed since."""
        state = self.state()
        return None if state is None else (state["config_key"], state["train_config"])

    # ---- checkpoints ---------------------------------------------------------------------

    def save_checkpoint(self, seq: int, state: dict[str, Any], tensors: dict[str, Any]) -> None:
        """Write ``tensors`` to a new .pt file (number ``seq``), then ``state`` (naming it)
        as checkpoint.json, then remove older .pt files."""
        name = f"checkpoint-{seq:06d}.pt"
        atomic_write(self.path / name, lambda f: torch.save(tensors, f))
        write_json_atomic(self.path / STATE_NAME, {"format": FORMAT, **state, "tensors": name})
        for old in self.path.glob("checkpoint-*.pt"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def state(self) -> dict[str, Any] | None:
        """The checkpoint's JSON part, or None when there is no checkpoint."""
        path = self.path / STATE_NAME
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{path}: not a readable cellzoo search checkpoint "
                                  f"({err})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            found = state.get("format") if isinstance(state, dict) else None
            raise CheckpointError(f"{path}: checkpoint format {found!r}, expected {FORMAT}")
        return state

    def load_checkpoint(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(state, tensors) of the checkpoint, or None when there is none."""
        state = self.state()
        if state is None:
            return None
        try:
            tensors = torch.load(self.path / state["tensors"], map_location="cpu",
                                 weights_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise CheckpointError(f"{self.path / STATE_NAME}: not a readable cellzoo search "
                                  f"checkpoint ({err})") from None
        return state, tensors

    # ---- logs ----------------------------------------------------------------------------

    def log_evaluation(self, row: dict[str, Any]) -> None:
        append_jsonl(self.path / EVALUATIONS_LOG, row)

    def evaluations(self) -> list[dict[str, Any]]:
        """Rows of the evaluations log, in order ([] when there is none)."""
        return read_jsonl(self.path / EVALUATIONS_LOG)

    def log_ranker(self, row: dict[str, Any]) -> None:
        append_jsonl(self.path / RANKER_LOG, row)

    def ranker_log(self) -> list[dict[str, Any]]:
        """Rows of the ranker log, in order ([] when there is none)."""
        return read_jsonl(self.path / RANKER_LOG)

    @property
    def has_ranker_log(self) -> bool:
        return (self.path / RANKER_LOG).is_file()

    @property
    def restore_log(self) -> Path:
        """Where a rebuilt search keeps the log it restores results from (`evolve.restore`)."""
        return self.path / RESTORE_LOG

    def keep_restore_log(self, source: str | Path) -> None:
        """Copy the log a new search restores results from into the run directory, so that
        ``--resume`` goes on restoring from it."""
        data = Path(source).read_bytes()
        atomic_write(self.restore_log, lambda f: f.write(data))

    def cut_logs(self, evaluated: int) -> None:
        """Keep only the log lines of the first ``evaluated`` results (those a checkpoint
        covers)."""
        for name in (EVALUATIONS_LOG, RANKER_LOG):
            path = self.path / name
            if path.is_file():
                write_jsonl_atomic(path, [r for r in read_jsonl(path) if r["n"] < evaluated])
