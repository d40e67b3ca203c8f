"""Test setup: real corpora from CELLZOO_DATA (default: ../shared/data beside the checkout)."""

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if "CELLZOO_DATA" not in os.environ and _SHARED.is_dir():
    os.environ["CELLZOO_DATA"] = str(_SHARED)
elif os.environ.get("CELLZOO_DATA"):  # absolute, so it holds in every test's working folder
    os.environ["CELLZOO_DATA"] = str(Path(os.environ["CELLZOO_DATA"]).resolve())


@pytest.fixture(autouse=True)
def _small_torch():
    """One thread per test process: the suite runs on small shared machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_data() -> Path:
    """The real corpora; tests that need them skip with a reason when they are absent."""
    path = Path(os.environ.get("CELLZOO_DATA", _SHARED))
    if not (path / "ptb" / "train.txt").is_file():
        pytest.skip(f"real corpora not found under {path} (set CELLZOO_DATA)")
    return path
