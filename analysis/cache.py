"""The analysis cache: one HDF5 file of per-run arrays, so plots and ensembles never rerun models.

Layout (every array is keyed by the run id, which names one immutable set of weights, and
by a hash of the exact token ids and evaluation layout it was computed on)::

    /<run_id>/<key>/<name>    float32 or float64 datasets, e.g. layer0, target_logp

By default the file sits beside the zoo as ``<zoo>.analysis.h5``. It is only a cache:
a file a killed writer left unreadable is set aside (renamed ``*.corrupt``) and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import numpy as np

from cellzoo.common.errors import UserError

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


class AnalysisError(UserError):
    """An analysis problem a user can fix (bad selection, mismatched vocabularies, busy cache)."""


class _Unwritable(OSError):
    """The cache file cannot be created or changed (a read-only folder, a full disk)."""


def _writable(path: Path) -> bool:
    """Can `path` be opened for writing? (asks the file system, so it holds for root too)"""
    try:
        with open(path, "r+b"):
            return True
    except OSError:
        return False


def default_cache_path(zoo_path: str | Path) -> Path:
    path = Path(zoo_path)
    return path.with_name(path.name + ".analysis.h5")


def array_key(*parts: object) -> str:
    """A short stable hash of token ids (numpy arrays, hashed by their bytes) and settings."""
    digest = hashlib.sha256()
    for part in parts:
        data = np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part)
        digest.update(data if isinstance(data, bytes) else data.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


class AnalysisCache:
    """Get-or-compute of named arrays per (run id, key); ``path=None`` caches nothing."""

    def __init__(self, path: str | Path | None):
        self.path = None if path is None else Path(path)

    def get(self, run_id: str, key: str) -> Arrays | None:
        if self.path is None or not self.path.exists():
            return None
        with self._open("r") as f:
            group = f.get(f"{run_id}/{key}")
            if group is None:
                return None
            return {name: group[name][()] for name in group}

    def put(self, run_id: str, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        if self.path is None:
            return
        try:
            f = self._open("a")
        except _Unwritable as err:
            log.warning("analysis cache %s cannot be written (%s); running without a cache",
                        self.path, err)
            self.path = None  # said once: nothing is cached from here on
            return
        with f:
            name = f"{run_id}/{key}"
            if name in f:
                del f[name]
            group = f.create_group(name)
            for array_name, values in arrays.items():
                group.create_dataset(array_name, data=values, compression="gzip")

    def fetch(self, run_id: str, key: str, compute: Callable[[], Arrays]) -> Arrays:
        """The cached arrays, or ``compute()``'s, stored for next time."""
        found = self.get(run_id, key)
        if found is not None:
            return found
        arrays = compute()
        self.put(run_id, key, arrays)
        return arrays

    def _open(self, mode: str) -> h5py.File:
        try:
            return h5py.File(self.path, mode)
        except OSError as err:
            if "lock" in str(err).lower():
                raise AnalysisError(f"analysis cache {self.path} is in use by another process "
                                    f"({err}); wait for it or pass another --cache") from None
            if not self.path.exists() or not _writable(self.path):
                raise _Unwritable(err.strerror or str(err)) from None
        aside = self.path.with_name(self.path.name + ".corrupt")
        log.warning("analysis cache %s is unreadable; moved to %s and starting afresh",
                    self.path, aside)
        self.path.replace(aside)
        return h5py.File(self.path, "a")
