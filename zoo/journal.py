"""The journal: runs added since the last compaction, one small immutable HDF5 file each.

Each entry is a complete one-run zoo file written aside and renamed into
``<zoo>.journal/`` (see `cellzoo.common.io.publish`), so an entry either exists whole or
not at all. Compaction copies entries into the main file and then deletes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cellzoo.common.io import publish
from cellzoo.zoo import h5file
from cellzoo.zoo.records import Run, ZooError


class Journal:
    def __init__(self, zoo_path: Path):
        self.zoo_path = zoo_path
        self.dir = zoo_path.with_name(zoo_path.name + ".journal")

    def entries(self) -> list[Path]:
        """Committed entries, oldest first (names start with a zero-padded sequence number)."""
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob("*.h5"))

    def read(self, entry: Path) -> list[dict[str, Any]] | None:
        """The entry's index rows, or None if compaction removed it meanwhile."""
        try:
            with h5file.open_file(entry, kind="pending run") as f:
                return h5file.read_rows(f)
        except ZooError as err:
            if not entry.exists():
                return None
            raise ZooError(f"{err}; run `cellzoo zoo repair {self.zoo_path}` to set it "
                           f"aside and recover the rest") from None
        except (OSError, KeyError, ValueError) as err:
            raise ZooError(f"pending run file {entry} is corrupt ({err}); run "
                           f"`cellzoo zoo repair {self.zoo_path}`") from None

    def commit(self, seq: int, run: Run, cell: dict[str, Any], curve: list[dict],
               state_dict: dict[str, torch.Tensor] | None) -> Path:
        self.dir.mkdir(exist_ok=True)
        final = self.dir / f"{seq:09d}-{run.run_id}.h5"
        tmp = final.with_name(final.name + ".tmp")
        try:
            with h5file.open_file(tmp, "w") as f:
                h5file.init_file(f)
                h5file.write_run(f, run, cell, curve, state_dict)
            publish(tmp, final)
        except (OSError, ZooError) as err:  # a full disk, mostly: say so, leave no part behind
            tmp.unlink(missing_ok=True)
            raise ZooError(f"cannot write the run to {final}: {err}") from None
        return final

    def next_seq(self) -> int:
        entries = self.entries()
        return int(entries[-1].name.split("-")[0]) + 1 if entries else 0

    def remove_temporaries(self) -> None:
        """Drop entries a killed writer left half-written (only the lock holder may call this)."""
        if self.dir.is_dir():
            for tmp in self.dir.glob("*.tmp"):
                tmp.unlink(missing_ok=True)
