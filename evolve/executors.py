"""Executors: the one seam between the search and the machines that train candidates.

The search never trains: it `submit`s a `Job` (plain, picklable data: DSL text,
a TrainConfig dict, the data folder, lineage, an attempt count) and iterates
`completed()` for `(job, TrainResult)` pairs as they finish. It keeps at most
`slots` jobs submitted, so an asynchronous executor gets a new candidate as soon
as a slot frees. Only the search process writes the zoo and the checkpoint.

Executors: `InlineExecutor` (in this process, one job at a time, deterministic;
for tests and small runs) and `ProcessExecutor` (a local `spawn` process pool).
A Ray executor implements the same three methods.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from cellzoo.evolve.jobs import MAX_ATTEMPTS, Job, failed_result, run_job
from cellzoo.train import TrainResult


class Executor(Protocol):
    """What the search needs from an executor."""

    slots: int

    def submit(self, job: Job) -> None:
        """Start (or queue) a job; the search submits at most `slots` at a time."""

    def completed(self, block: bool = True) -> Iterator[tuple[Job, TrainResult]]:
        """Finished jobs: with ``block``, wait for at least one when any is pending."""

    def close(self) -> None:
        """Stop workers; jobs still running are abandoned (the checkpoint resubmits them)."""




class InlineExecutor:
    """Trains each job in this process when `completed()` asks for it, in submission order."""

    slots = 1

    def __init__(self) -> None:
        self._queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def completed(self, block: bool = True) -> Iterator[tuple[Job, TrainResult]]:
        if self._queue:
            job = self._queue.popleft()
            yield job, run_job(job)

    def close(self) -> None:
        self._queue.clear()


#: seconds between a pool worker's checks that the search that started it is alive
PARENT_POLL = 2.0


def _init_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """Stop this worker once ``parent``, the search process that spawned it, is gone (killed
    by SIGKILL, or by SIGTERM, which ends it without cleanup). Otherwise the worker trains
    its job on for up to hours, beside the resumed search that trains the same job in the
    same checkpoint folder, and its result goes nowhere. The pid is passed in rather than
    read here because the search may already be gone when the worker starts."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL)
    os._exit(1)


class ProcessExecutor:
    """A pool of `workers` spawned processes (never forked: CUDA and open HDF5 files do not
    survive a fork). A job whose worker dies is retried up to `MAX_ATTEMPTS` times.

    The workers share the driver's torch threads (``OMP_NUM_THREADS`` when set, else the
    cores): with ``OMP_NUM_THREADS=1`` each worker trains on one thread, as the driver
    would, so its results are those of ``cellzoo train`` and the inline executor (thread
    counts change float rounding, which SGD amplifies) and it does not oversubscribe cores
    shared with other runs."""

    def __init__(self, workers: int, threads_per_worker: int | None = None):
        import torch

        self.slots = workers
        self.threads = threads_per_worker or max(1, torch.get_num_threads() // workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future, Job] = {}

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(
                self.slots, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.threads, os.getpid()))
        return self._pool

    def submit(self, job: Job) -> None:
        self._futures[self._ensure_pool().submit(run_job, job)] = job

    def completed(self, block: bool = True) -> Iterator[tuple[Job, TrainResult]]:
        if not self._futures:
            return
        done, _ = cf.wait(list(self._futures), timeout=None if block else 0,
                          return_when=cf.FIRST_COMPLETED)
        broken = []
        for future in sorted(done, key=lambda f: self._futures[f].job_id):
            job = self._futures.pop(future)
            error = future.exception()
            if error is None:
                yield job, future.result()
            elif job.attempt + 1 < MAX_ATTEMPTS:
                broken.append(job)
            else:
                yield job, failed_result(job, f"worker lost {MAX_ATTEMPTS} times: {error!r}")
        if broken:
            self._restart(broken)

    def _restart(self, lost: list[Job]) -> None:
        """A dead worker breaks the whole pool: start a new one and resubmit what ran on it."""
        orphans = list(self._futures.values())
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        for job in sorted(lost, key=lambda j: j.job_id):
            self.submit(Job(**{**job.to_dict(), "attempt": job.attempt + 1}))
        for job in orphans:
            self.submit(job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._futures.clear()


def make_executor(name: str, workers: int = 1, **ray_options: Any) -> Executor:
    """The executor called ``name`` ("inline", "process" or "ray"); ``ray_options`` are
    `RayExecutor` arguments (address, gpus_per_trial, cpus_per_trial)."""
    ray_options = {k: v for k, v in ray_options.items() if v is not None}
    if ray_options and name != "ray":
        raise ValueError(f"the Ray options ({', '.join(sorted(ray_options))}) apply only to "
                         f"the ray executor, not {name!r}")
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "ray":
        try:
            from cellzoo.evolve.ray_executor import RayExecutor
        except ImportError as err:
            raise ValueError(f"the Ray executor is not available here ({err}); install "
                             f"cellzoo[ray] or use --executor process") from None
        return RayExecutor(workers, **ray_options)
    raise ValueError(f"unknown executor {name!r}; choose inline, process or ray")
