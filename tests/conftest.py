"""Test setup: the real data folder, one torch thread per test, and the test-order seed.

The data folder is `CELLZOO_DATA`, else `../shared/data` beside the checkout; tests that
need it skip with a reason when it is absent. The suite runs in random order
(pytest-randomly); the seed is printed at the end of every run, so that an order can be
replayed with `--randomly-seed=N` (or switched off with `-p no:randomly`).
"""

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
DATA = Path(os.environ.get("CELLZOO_DATA", _SHARED))


def _needs(relative: str) -> Path:
    if not (DATA / relative).exists():
        pytest.skip(f"{relative} not found under {DATA} (set CELLZOO_DATA to the data folder; "
                    "docs/training.md and docs/ranker.md say where the data comes from)")
    return DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One thread per test process: the suite runs on small shared machines. Session-wide,
    so that module fixtures (a whole search, trained before the first test of a module)
    run on one thread too: on a loaded machine two oversubscribed threads took such a
    fixture past its timeout."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _small_torch(_one_torch_thread):
    """A test that changes the thread count gives the next one a single thread again (a
    process forked by a later test hangs in OpenMP after the parent ran several)."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data folder holding the real corpora (skips when PTB is absent)."""
    return _needs("ptb/train.txt")


@pytest.fixture(scope="session")
def nbnlp_data() -> Path:
    """The NAS-Bench-NLP logs folder (skips when absent)."""
    return _needs("nas-bench-nlp/ptb_single_run.jsonl") / "nas-bench-nlp"


def pytest_terminal_summary(terminalreporter, config):
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None and not isinstance(seed, str):
        terminalreporter.write_line(f"test order: replay with --randomly-seed={seed}")
