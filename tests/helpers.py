"""Small helpers shared by several test files (importable because pytest puts tests/ on
the path: `pythonpath` in pyproject.toml)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

from cellzoo.evolve.executors import Executor, Job
from cellzoo.train import TrainResult
from cellzoo.zoo import Zoo


def collect(executor: Executor, n: int) -> dict[int, tuple[Job, TrainResult]]:
    """Wait for `n` submitted jobs to finish; their results by job id."""
    out: dict[int, tuple[Job, TrainResult]] = {}
    while len(out) < n:
        for job, result in executor.completed():
            out[job.job_id] = (job, result)
    return out


#: a ladder search (synthetic-small, eta 2) with rungs of 9,000, 18,000 and 36,000
#: tokens: a search of 6 new cells takes seconds
LADDER_TOML = """\
evaluations = 6
population = 4
sample = 2
round_size = 2
[ladder]
preset = "synthetic-small"
rungs = 3
eta = 2
top_tokens = 36000
probe = [1.0, 0.5]
"""


def env() -> dict[str, str]:
    """The environment of a `cellzoo` subprocess: one thread, so results are exact."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def evolve_cmd(toml: Path, zoo: Path, run_dir: Path, *extra: str) -> list[str]:
    """`cellzoo evolve` on a config file, as a subprocess command line."""
    return [sys.executable, "-m", "cellzoo.cli", "evolve", "--run-dir", str(run_dir),
            "--zoo", str(zoo), "--config", str(toml), *extra]


def run_evolve(toml: Path, zoo: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """`cellzoo evolve` on a config file, run to its end in a subprocess (output captured)."""
    return subprocess.run(evolve_cmd(toml, zoo, run_dir, *extra), env=env(),
                          capture_output=True, text=True, timeout=600)


def kill_when_logged(cmd: list[str], log: Path, lines: int, timeout: float = 300) -> None:
    """Start ``cmd`` and SIGKILL it once ``log`` holds ``lines`` lines (or it ends, or
    ``timeout`` seconds pass)."""
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= lines:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


class Page(HTMLParser):
    """What the tests read from the page: references, ids, scripts and each table's cells."""

    def __init__(self, text: str):
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.ids.update([attrs["id"]] if "id" in attrs else [])
        self.refs += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def search_outcome(zoo: Path, run_dir: Path) -> tuple[list[tuple], dict, list[dict]]:
    """What a finished search leaves that must not depend on interruptions or executors: the
    zoo's runs in order (results, lineage, config key, error), the run directory's checkpoint
    state, and its evaluation log without times, run ids, seconds (``branch_seconds`` too)
    and how it ran (``slots``, ``wave``, ``device``)."""
    with Zoo.open(zoo, "r") as z:
        runs = [(r.hash, r.status, r.val_ppl, r.test_ppl, tuple(r.parents), r.origin,
                 r.operator, r.generation, r.config_key, r.error) for r in z.runs()]
    state = json.loads((run_dir / "checkpoint.json").read_text())
    how = ("time", "run_id", "seconds", "branch_seconds", "slots", "wave", "device")
    log = [{k: v for k, v in json.loads(line).items() if k not in how}
           for line in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    return runs, state, log
