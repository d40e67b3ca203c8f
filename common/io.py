"""Files that survive a kill: atomic, durable writes and JSON-lines logs.

`atomic_write` writes beside the target, fsyncs, renames over it and fsyncs the
folder, so a reader sees the old file or the new one, never a torn one, and the
new one survives power loss once the call returns. JSON is written strictly
(no NaN): `json_safe` turns non-finite floats into null first where a value may
hold them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: Path, final: Path) -> None:
    """Make the fully written ``tmp`` appear as ``final`` in one step, surviving power loss."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(final.parent)


def remove_durably(paths: list[Path]) -> None:
    """Delete files and make the deletion durable (the paths share one folder)."""
    for path in paths:
        path.unlink(missing_ok=True)
    if paths:
        fsync_path(paths[0].parent)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, then `publish` it as ``path``.
    A failure leaves ``path`` as it was and removes the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(data, indent=1, allow_nan=False)
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (recursively), so the result is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row, allow_nan=False) + "\n"


def append_jsonl(path: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row and fsync: a row is on disk once the call returns."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(_line(row))
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file ([] if there is none); a torn line (a kill mid-write) is
    skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    text = "".join(_line(row) for row in rows)
    return write_bytes_atomic(path, text.encode("utf-8"))
