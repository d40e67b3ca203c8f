"""Small helpers shared by several test files (importable because pytest puts tests/ on
the path: `pythonpath` in pyproject.toml)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cellzoo.evolve.executors import Executor, Job
from cellzoo.train import TrainResult


def collect(executor: Executor, n: int) -> dict[int, tuple[Job, TrainResult]]:
    """Wait for `n` submitted jobs to finish; their results by job id."""
    out: dict[int, tuple[Job, TrainResult]] = {}
    while len(out) < n:
        for job, result in executor.completed():
            out[job.job_id] = (job, result)
    return out


def env() -> dict[str, str]:
    """The environment of a `cellzoo` subprocess: one thread, so results are exact."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def evolve_cmd(toml: Path, zoo: Path, run_dir: Path, *extra: str) -> list[str]:
    """`cellzoo evolve` on a config file, as a subprocess command line."""
    return [sys.executable, "-m", "cellzoo.cli", "evolve", "--run-dir", str(run_dir),
            "--zoo", str(zoo), "--config", str(toml), *extra]


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
