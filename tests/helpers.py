"""Small helpers shared by several test files (importable because pytest puts tests/ on
the path: `pythonpath` in pyproject.toml)."""

from __future__ import annotations

from cellzoo.evolve.executors import Executor, Job
from cellzoo.train import TrainResult


def collect(executor: Executor, n: int) -> dict[int, tuple[Job, TrainResult]]:
    """Wait for `n` submitted jobs to finish; their results by job id."""
    out: dict[int, tuple[Job, TrainResult]] = {}
    while len(out) < n:
        for job, result in executor.completed():
            out[job.job_id] = (job, result)
    return out
