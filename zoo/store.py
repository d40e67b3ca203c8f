"""The zoo: an HDF5 file of trained cells, safe against killed writers and concurrent readers.

Design (docs/zoo-format.md has the details):

* ``z.h5`` is only ever replaced whole (written aside, fsynced, renamed), never
  changed in place, so every reader sees a complete file.
* ``add_run`` writes the run as its own small file into ``z.h5.journal/`` and
  returns only once that file is durable: an acknowledged run survives SIGKILL.
* Compaction copies journal entries into a copy of ``z.h5``, renames the copy
  over it and only then deletes the entries; a kill at any point leaves every
  run in the main file, in the journal, or in both (duplicates are dropped by
  run id).
* One writer at a time, enforced by ``flock`` on ``z.h5.lock``; readers take no
  lock: they list the journal first, then read the main file.
* Metadata comes from each file's ``index`` (one JSON row per run): listing and
  querying never read curves or weights. No HDF5 file stays open between calls.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cellzoo.common.io import publish, remove_durably
from cellzoo.dsl import DSLError, parse
from cellzoo.zoo import h5file
from cellzoo.zoo.journal import Journal
from cellzoo.zoo.lock import WriterLock
from cellzoo.zoo.records import RUN_FIELDS, Cell, Run, ZooError, cell_attrs, run_record

MODES = ("r", "a")


class Zoo:
    """Open with `Zoo.open(path, "r" | "a")`, preferably as a context manager."""

    def __init__(self, path: Path, mode: str, max_pending: int, compact_fraction: float,
                 compact_on_close: bool):
        self.path = path
        self.mode = mode
        self.max_pending = max_pending
        self.compact_fraction = compact_fraction
        self.compact_on_close = compact_on_close
        self.journal = Journal(path)
        self._lock = WriterLock(path.with_name(path.name + ".lock"))
        self._runs: dict[str, Run] = {}
        self._source: dict[str, Path] = {}  # run id -> file holding it
        self._by_key: dict[tuple[str, str], list[str]] = {}
        self._pending: dict[Path, list[str]] = {}  # journal entry -> its runs not yet in main
        self._seq = 0
        self._closed = False

    # ---- opening and closing -------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", timeout: float = 0.0,
             max_pending: int = 256, compact_fraction: float = 0.25,
             compact_on_close: bool = True) -> Zoo:
        """Open a zoo. Mode "a" creates it if missing and takes the writer lock, waiting up
        to `timeout` seconds for another writer; mode "r" takes no lock and sees the runs
        committed when it was opened (`refresh()` to look again).

        A writer compacts its journal into the main file once it holds `max_pending` runs
        or `compact_fraction` times the main file's bytes (copying the main file then costs
        O(1) amortised per byte added), and when it closes if `compact_on_close`."""
        if mode not in MODES:
            raise ZooError(f"unknown zoo mode {mode!r}: choose 'r' (read) or 'a' (append)")
        zoo = cls(Path(path), mode, max_pending, compact_fraction, compact_on_close)
        if mode == "r":
            zoo.refresh()
            return zoo
        zoo._lock.acquire(timeout, what=f"zoo {zoo.path}")
        try:
            zoo._recover()
        except BaseException:
            zoo._lock.release()
            raise
        return zoo

    def _recover(self) -> None:
        """Writer start-up: create the file, clear what a killed writer left behind."""
        if not self.path.exists():
            tmp = self._tmp_path()
            with h5file.open_file(tmp, "w") as f:
                h5file.init_file(f)
            publish(tmp, self.path)
        self._tmp_path().unlink(missing_ok=True)
        self.journal.remove_temporaries()
        self.refresh()
        merged = [e for e in self.journal.entries() if e not in self._pending]
        remove_durably(merged)  # compaction copied them, then was killed before deleting them
        self._seq = self.journal.next_seq()

    def _tmp_path(self) -> Path:
        return self.path.with_name(self.path.name + ".compacting")

    def close(self) -> None:
        """Release the writer lock, compacting first (so z.h5 alone holds every run)."""
        if self._closed:
            return
        try:
            if self.mode == "a" and self.compact_on_close and self._pending:
                self.compact()
        finally:
            self._closed = True
            self._lock.release()

    def __enter__(self) -> Zoo:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reading metadata --------------------------------------------------------------

    def refresh(self) -> None:
        """(Re)read all metadata: the journal first, then the main file (see module doc)."""
        pending = []
        for entry in self.journal.entries():
            rows = self.journal.read(entry)
            if rows is not None:
                pending.append((entry, rows))
        self._runs, self._source, self._by_key, self._pending = {}, {}, {}, {}
        for row in self._read_main_rows():
            self._register(row, self.path)
        for entry, rows in pending:
            fresh = [row for row in rows if row["run_id"] not in self._runs]
            for row in fresh:
                self._register(row, entry)
            if fresh:
                self._pending[entry] = [row["run_id"] for row in fresh]

    def _read_main_rows(self) -> list[dict[str, Any]]:
        with h5file.open_file(self.path) as f:
            try:
                return h5file.read_rows(f)
            except (OSError, KeyError, ValueError) as err:
                raise ZooError(f"zoo file {self.path} is truncated or corrupt: its index cannot "
                               f"be read ({err}); try `cellzoo zoo repair {self.path}`") from None

    def _register(self, row: dict[str, Any], source: Path) -> None:
        self._index(Run.from_dict(row, self), source)

    def _index(self, run: Run, source: Path) -> None:
        self._runs[run.run_id] = run
        self._source[run.run_id] = source
        self._by_key.setdefault((run.hash, run.config_key), []).append(run.run_id)

    # ---- writing -----------------------------------------------------------------------

    def add_run(self, result: Any, lineage: dict | None = None) -> str:
        """Store a `cellzoo.train.TrainResult`; returns the new run id once it is durable."""
        self._require_writer()
        try:
            cell = cell_attrs(parse(result.expr))
        except DSLError as err:
            raise ZooError(f"cannot store run: its cell text {result.expr!r} does not parse "
                           f"({err})") from None
        if result.hash and result.hash != cell["hash"]:
            raise ZooError(f"cannot store run: hash {result.hash} does not match its cell "
                           f"{cell['expr']} (hash {cell['hash']})")
        run = run_record(result, lineage, cell)
        entry = self.journal.commit(self._seq, run, cell, list(result.curve), result.state_dict)
        self._seq += 1
        run._zoo = self
        self._index(run, entry)
        self._pending[entry] = [run.run_id]
        if self._compaction_due():
            self.compact()
        return run.run_id

    def _compaction_due(self) -> bool:
        if len(self._pending) >= self.max_pending:
            return True
        pending_bytes = sum(e.stat().st_size for e in self._pending)
        return pending_bytes >= self.compact_fraction * self.path.stat().st_size

    def compact(self) -> None:
        """Move every journal entry into the main file (atomically, see module doc)."""
        self._require_writer()
        self._rewrite(self._pending_rows())

    def _pending_rows(self) -> list[tuple[Path, list[dict]]]:
        """Each journal entry with the index rows of its runs not yet in the main file."""
        return [(entry, [self._runs[r].to_dict() for r in ids])
                for entry, ids in self._pending.items()]

    def import_from(self, source: str | Path, weights: bool = True) -> tuple[int, int]:
        """Merge another zoo's runs into this one, skipping run ids already here; without
        ``weights``, runs come without their weights. Returns (runs added, runs skipped)."""
        self._require_writer()
        with Zoo.open(source, "r") as other:
            by_file: dict[Path, list[dict]] = {}
            for run in other.runs():
                if run.run_id not in self._runs:
                    by_file.setdefault(other._source[run.run_id], []).append(run.to_dict())
            skipped = len(other) - sum(len(rows) for rows in by_file.values())
        self._rewrite(self._pending_rows() + list(by_file.items()),
                      without_weights=frozenset() if weights else frozenset(by_file))
        for rows in by_file.values():
            for row in rows:
                self._register(row, self.path)
        return sum(len(rows) for rows in by_file.values()), skipped

    def _rewrite(self, additions: list[tuple[Path, list[dict]]],
                 without_weights: frozenset[Path] = frozenset()) -> None:
        """Copy the main file aside, add runs from other files (without their weights from
        the files in ``without_weights``), publish it, drop the journal."""
        if not additions:
            return
        tmp = self._tmp_path()
        shutil.copyfile(self.path, tmp)
        with h5file.open_file(tmp, "r+") as dst:
            rows = []
            for source, source_rows in additions:
                with h5file.open_file(source) as src:
                    for row in source_rows:
                        h5file.copy_run(src, dst, row, source not in without_weights)
                        rows.append(row)
            h5file.append_rows(dst, rows)
        publish(tmp, self.path)
        entries = list(self._pending)
        for ids in self._pending.values():
            for run_id in ids:
                self._source[run_id] = self.path
        self._pending = {}
        remove_durably(entries)

    def _require_writer(self) -> None:
        if self.mode != "a" or self._closed:
            raise ZooError(f"zoo {self.path} is not open for writing (open it with mode 'a')")

    # ---- queries -----------------------------------------------------------------------

    @property
    def pending_runs(self) -> int:
        """Runs that live in the journal, not yet in the main file."""
        return sum(len(ids) for ids in self._pending.values())

    def __len__(self) -> int:
        return len(self._runs)

    def runs(self, task: str | None = None, status: str | None = None) -> Iterator[Run]:
        """Runs in the order they were added, optionally filtered (metadata only)."""
        for run in self._runs.values():
            if (task is None or run.task == task) and (status is None or run.status == status):
                yield run

    def has_run(self, cell_hash: str, config_key: str) -> bool:
        """Has this cell been trained under this configuration? (one dict lookup)"""
        return (cell_hash, config_key) in self._by_key

    def find_run(self, cell_hash: str, config_key: str) -> Run | None:
        """The run of this cell under this configuration: the best ok one, else the latest."""
        ids = self._by_key.get((cell_hash, config_key))
        if not ids:
            return None
        runs = [self._runs[i] for i in ids]
        ok = [r for r in runs if r.status == "ok" and not math.isnan(r.val_ppl)]
        return min(ok, key=lambda r: r.val_ppl) if ok else runs[-1]

    def top(self, k: int, task: str | None = None) -> list[Run]:
        """The k ok runs with the lowest validation perplexity."""
        ok = [r for r in self.runs(task, "ok") if not math.isnan(r.val_ppl)]
        return sorted(ok, key=lambda r: r.val_ppl)[:k]

    def hashes(self) -> list[str]:
        return list(dict.fromkeys(r.hash for r in self._runs.values()))

    def cell(self, hash_prefix: str) -> Cell:
        """The cell whose hash starts with `hash_prefix` (which must be unique)."""
        found = _unique(hash_prefix, self.hashes(), "cell hash", self.path)
        runs = tuple(r for r in self._runs.values() if r.hash == found)
        attrs = cell_attrs(parse(runs[0].expr))
        return Cell(hash=found, expr=runs[0].expr, op_counts=attrs["op_counts"],
                    node_count=attrs["node_count"], depth=attrs["depth"], runs=runs)

    def run(self, run_id_prefix: str) -> Run:
        return self._runs[_unique(run_id_prefix, self._runs, "run id", self.path)]

    def dataframe(self) -> pd.DataFrame:
        """All run metadata, one row per run; no curve or weight is read."""
        return pd.DataFrame([r.to_dict() for r in self._runs.values()], columns=list(RUN_FIELDS))

    # ---- curves, weights, models -------------------------------------------------------

    def curve(self, run_id: str) -> list[dict]:
        return self._read(run_id, h5file.read_curve)

    def load_state_dict(self, run_id: str) -> dict[str, torch.Tensor]:
        return self._read(run_id, h5file.read_weights)

    def _read(self, run_id: str, reader):
        run = self.run(run_id)
        source = self._source[run.run_id]
        try:
            return self._read_from(source, run, reader)
        except ZooError:
            if source == self.path or source.exists():
                raise
        # compacted since we looked: the main file holds the run now
        return self._read_from(self.path, run, reader)

    def _read_from(self, source: Path, run: Run, reader):
        with h5file.open_file(source) as f:
            try:
                return reader(f, run)
            except (OSError, KeyError) as err:
                raise ZooError(f"cannot read run {run.run_id} from {source} ({err}); "
                               f"try `cellzoo zoo repair {self.path}`") from None

    def rebuild(self, run_id: str):
        """The trained language model of a run (cellzoo.train's LanguageModel), in eval mode."""
        from cellzoo.zoo.model import rebuild

        return rebuild(self.run(run_id), self.load_state_dict(run_id))

    def reevaluate(self, run_id: str, data_dir: str | Path | None = None) -> dict[str, float]:
        """Rebuild a run's model and measure its validation and test perplexity again."""
        from cellzoo.zoo.model import reevaluate

        return reevaluate(self.run(run_id), self.load_state_dict(run_id), data_dir)


def _unique(prefix: str, keys, what: str, path: Path) -> str:
    if prefix in keys:
        return prefix
    matches = [k for k in keys if k.startswith(prefix)]
    if not prefix or not matches:
        raise ZooError(f"no {what} starting with {prefix!r} in {path}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise ZooError(f"{what} prefix {prefix!r} is ambiguous in {path}: {shown}")
    return matches[0]
