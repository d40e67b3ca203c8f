"""The HDF5 layout of a zoo file (see docs/zoo-format.md) and every h5py call the zoo makes.

Every file is opened with ``locking=False`` and closed before the call returns:
the zoo's own writer lock and atomic replacement keep files consistent, HDF5's
lock would only make readers fail with "unable to lock file", and no HDF5
handle stays open for a fork to inherit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from cellzoo.common.io import json_safe
from cellzoo.zoo.records import JSON_FIELDS, Run, ZooError

FORMAT = "cellzoo.zoo"
FORMAT_VERSION = 1


def _hdf5_reason(err: OSError) -> str:
    """The short reason inside h5py's message, e.g. 'truncated file: eof = 96, ...'."""
    found = re.search(r"\((.*)\)\s*$", str(err))
    return found.group(1) if found else str(err)


@contextmanager
def open_file(path: Path, mode: str = "r", kind: str = "zoo") -> Iterator[h5py.File]:
    """Open a zoo (or journal entry) file, turning every failure into a ZooError naming it."""
    try:
        f = h5py.File(path, mode, locking=False)
    except FileNotFoundError:
        raise ZooError(f"no {kind} file at {path}") from None
    except IsADirectoryError:
        raise ZooError(f"{path} is a directory, not a {kind} file") from None
    except PermissionError as err:
        raise ZooError(f"cannot open {kind} file {path}: {err.strerror}") from None
    except OSError as err:
        if mode == "w":  # creating it failed: no space, say, not a damaged file
            raise ZooError(f"cannot create {kind} file {path}: {err}") from None
        raise ZooError(_open_failure(path, kind, err)) from None
    try:
        if mode == "r":
            check_format(f, path)
        yield f
    finally:
        f.close()


def _open_failure(path: Path, kind: str, err: OSError) -> str:
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError:
        is_hdf5 = False
    if not is_hdf5:
        return f"{path} is not an HDF5 file, so it cannot be a cellzoo {kind}"
    return f"{kind} file {path} is truncated or corrupt ({_hdf5_reason(err)})"


def check_format(f: h5py.File, path: Path) -> None:
    fmt = f.attrs.get("format")
    if fmt != FORMAT:
        raise ZooError(f"{path} is an HDF5 file but not a cellzoo zoo "
                       f"(root attribute 'format' is {fmt!r}, expected {FORMAT!r})")
    version = int(f.attrs.get("format_version", -1))
    if version > FORMAT_VERSION:
        raise ZooError(f"{path} uses zoo format version {version}, but this cellzoo reads only "
                       f"up to version {FORMAT_VERSION}: upgrade cellzoo to read it")
    if version < 1:
        raise ZooError(f"{path} has an invalid zoo format_version {version}")


def init_file(f: h5py.File) -> None:
    f.attrs["format"] = FORMAT
    f.attrs["format_version"] = FORMAT_VERSION
    f.require_group("cells")
    create_index(f)


def create_index(f: h5py.File) -> None:
    f.create_dataset("index", shape=(0,), maxshape=(None,), chunks=(1024,),
                     dtype=h5py.string_dtype())


def read_rows(f: h5py.File) -> list[dict[str, Any]]:
    """The index: one JSON record per run, in the order the runs were added."""
    return [json.loads(s) for s in f["index"].asstr()[:]]


def append_rows(f: h5py.File, rows: Iterable[dict[str, Any]]) -> None:
    texts = [json.dumps(json_safe(r), sort_keys=True) for r in rows]
    index = f["index"]
    start = index.shape[0]
    index.resize((start + len(texts),))
    if texts:
        index[start:] = np.array(texts, dtype=object)


def run_path(run: Run | dict) -> str:
    hash_, run_id = (run.hash, run.run_id) if isinstance(run, Run) else (run["hash"], run["run_id"])
    return f"cells/{hash_}/runs/{run_id}"


def _write_attrs(obj: h5py.Group, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            continue  # absent attribute = unknown
        if key in JSON_FIELDS or isinstance(value, dict | list):
            value = json.dumps(json_safe(value), sort_keys=True)
        obj.attrs[key] = value


def write_run(f: h5py.File, run: Run, cell: dict[str, Any], curve: list[dict],
              state_dict: dict[str, torch.Tensor] | None) -> None:
    """Write one run (its cell group too, if new) and its index row into an open file."""
    cell_group = f.get(f"cells/{run.hash}")
    if cell_group is None:
        cell_group = f.create_group(f"cells/{run.hash}")
        _write_attrs(cell_group, cell)
        cell_group.create_group("runs")
    group = f.create_group(run_path(run))
    _write_attrs(group, run.to_dict())
    write_curve(group, curve)
    if state_dict is not None:
        weights = group.create_group("weights", track_order=True)
        for name, tensor in state_dict.items():
            _write_tensor(weights, name, tensor)
    append_rows(f, [run.to_dict()])


def write_curve(group: h5py.Group, curve: list[dict]) -> None:
    keys = {k for row in curve for k in row} | {"tokens", "train_loss", "val_ppl"}
    columns = sorted(keys, key=lambda k: (k != "tokens", k))
    dtype = np.dtype([(c, "f8") for c in columns])
    data = np.array([tuple(float(row.get(c, np.nan)) for c in columns) for row in curve],
                    dtype=dtype)
    group.create_dataset("curve", data=data, shape=(len(curve),), dtype=dtype)


def read_curve(f: h5py.File, run: Run) -> list[dict]:
    data = f[run_path(run)]["curve"][()]
    return [{name: _plain(row[name], name) for name in data.dtype.names} for row in data]


def _plain(value: np.floating, name: str) -> float | int:
    return int(value) if name == "tokens" and np.isfinite(value) else float(value)


def _write_tensor(group: h5py.Group, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu()
    stored = tensor.float() if tensor.dtype == torch.bfloat16 else tensor
    ds = group.create_dataset(name, data=stored.numpy())
    ds.attrs["torch_dtype"] = str(tensor.dtype).removeprefix("torch.")


def read_weights(f: h5py.File, run: Run) -> dict[str, torch.Tensor]:
    group = f[run_path(run)].get("weights")
    if group is None:
        raise ZooError(f"run {run.run_id} ({run.status}) has no stored weights")
    out = {}
    for name, ds in group.items():
        tensor = torch.from_numpy(np.asarray(ds[()]))
        out[name] = tensor.to(getattr(torch, ds.attrs.get("torch_dtype", str(tensor.dtype))))
    return out


def copy_run(src: h5py.File, dst: h5py.File, row: dict[str, Any], weights: bool = True) -> None:
    """Copy one run group (and its cell's attributes, if the cell is new) between files;
    without ``weights`` the copy leaves them out and ``row`` says it has none."""
    cell_path = f"cells/{row['hash']}"
    if cell_path not in dst:
        cell_group = dst.create_group(cell_path)
        for key, value in src[cell_path].attrs.items():
            cell_group.attrs[key] = value
        cell_group.create_group("runs")
    source, runs = src[run_path(row)], dst[f"{cell_path}/runs"]
    if weights or "weights" not in source:
        src.copy(source, runs, name=row["run_id"])
        return
    group = runs.create_group(row["run_id"])
    for key, value in source.attrs.items():
        group.attrs[key] = value
    for name in source:
        if name != "weights":
            src.copy(source[name], group, name=name)
    group.attrs["has_weights"] = row["has_weights"] = False


def rows_from_groups(f: h5py.File) -> list[dict[str, Any]]:
    """Rebuild index rows from the run groups' attributes (used by repair)."""
    rows = []
    for cell in f["cells"].values():
        for group in cell["runs"].values():
            row = {k: (v.item() if hasattr(v, "item") else v) for k, v in group.attrs.items()}
            for key in JSON_FIELDS:
                row[key] = json.loads(row[key])
            for key in ("error", "operator", "generation", "search_id"):
                row.setdefault(key, None)
            rows.append(row)
    return sorted(rows, key=lambda r: r["created"])
