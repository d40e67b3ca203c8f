"""The bottom layer: atomic durable writes, JSON lines, JSON-safe values, RNG states."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from cellzoo.common.io import (
    append_jsonl,
    atomic_write,
    json_safe,
    read_jsonl,
    write_json_atomic,
)
from cellzoo.common.rng import rng_states, set_rng_states


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "a.json", {"v": 1})
    assert path.read_text() == '{\n "v": 1\n}'

    def fail(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_text() == '{\n "v": 1\n}'
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_jsonl_rows_and_json_safe_values(tmp_path):
    path = tmp_path / "log.jsonl"
    assert read_jsonl(path) == []
    append_jsonl(path, json_safe({"a": [1.5, math.nan], "b": (math.inf, "x")}))
    with open(path, "a") as f:
        f.write('{"torn": ')
    assert read_jsonl(path) == [{"a": [1.5, None], "b": [None, "x"]}]
    with pytest.raises(ValueError):
        append_jsonl(path, {"a": math.nan})  # strict JSON: convert with json_safe first


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_states_restore_every_generator():
    states = rng_states()
    first = _draws()
    set_rng_states(states)
    assert _draws() == first
    legacy = {("random" if k == "python" else k): v for k, v in states.items()}
    set_rng_states(legacy)  # search checkpoints written before named Python's state "random"
    assert _draws() == first
