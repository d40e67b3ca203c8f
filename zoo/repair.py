"""`cellzoo zoo repair`: put a damaged zoo back in order without losing a readable run.

A killed writer never needs this (the next open cleans up by itself). It is for
damage from outside: an unreadable journal entry (set aside into
``z.h5.journal/quarantine/``) or a main file whose index no longer matches its
run groups (the index is rebuilt from the groups' attributes).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cellzoo.common.io import publish
from cellzoo.zoo import h5file
from cellzoo.zoo.journal import Journal
from cellzoo.zoo.lock import WriterLock
from cellzoo.zoo.records import ZooError
from cellzoo.zoo.store import Zoo


def repair(path: str | Path, timeout: float = 0.0) -> list[str]:
    """Repair the zoo at `path`; returns what was done, one line per action."""
    path = Path(path)
    if not path.exists():
        raise ZooError(f"no zoo file at {path}")
    done: list[str] = []
    lock = WriterLock(path.with_name(path.name + ".lock"))
    lock.acquire(timeout, what=f"zoo {path}")
    try:
        done += _quarantine_unreadable(Journal(path))
        if _index_mismatch(path):
            _rebuild_index(path)
            done.append(f"rebuilt the index of {path} from its run groups")
    finally:
        lock.release()
    with Zoo.open(path, "a", timeout=timeout) as zoo:
        pending = zoo.pending_runs
        zoo.compact()
        if pending:
            done.append(f"moved {pending} journal runs into {path}")
        done.append(f"{path}: {len(zoo)} runs, all readable")
    return done


def _quarantine_unreadable(journal: Journal) -> list[str]:
    journal.remove_temporaries()
    done = []
    for entry in journal.entries():
        try:
            journal.read(entry)
        except ZooError as err:
            quarantine = journal.dir / "quarantine"
            quarantine.mkdir(exist_ok=True)
            shutil.move(entry, quarantine / entry.name)
            done.append(f"set aside unreadable {entry.name} into {quarantine} ({err})")
    return done


def _index_mismatch(path: Path) -> bool:
    try:
        with h5file.open_file(path) as f:
            indexed = {h5file.run_path(row) for row in h5file.read_rows(f)}
            stored = {f"cells/{c}/runs/{r}" for c in f["cells"] for r in f[f"cells/{c}/runs"]}
    except (OSError, KeyError, ValueError):
        return True
    return indexed != stored


def _rebuild_index(path: Path) -> None:
    tmp = path.with_name(path.name + ".compacting")
    shutil.copyfile(path, tmp)
    with h5file.open_file(tmp, "r+") as f:
        try:
            rows = h5file.rows_from_groups(f)
        except (OSError, KeyError, ValueError) as err:
            raise ZooError(f"{path} is damaged beyond repair: its run groups cannot be read "
                           f"({err}); restore it from a backup") from None
        if "index" in f:
            del f["index"]
        h5file.create_index(f)
        h5file.append_rows(f, rows)
    publish(tmp, path)
