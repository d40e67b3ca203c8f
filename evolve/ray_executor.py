"""The Ray executor: each candidate is one Ray task, on this machine or on a Ray cluster.

The search submits `Job`s and collects results with `ray.wait` as they finish, so a
new candidate starts as soon as a slot frees. Only the driver (the search process)
writes the zoo and the checkpoint; workers just train and return a `TrainResult`.

Ray's own task retries are off: a task whose worker dies (killed, out of memory,
node lost) is resubmitted here with ``attempt + 1`` up to ``max_attempts`` times in
all, then becomes a ``failed`` result that names the reason, and the search goes on.

A trial gets ``gpus_per_trial`` GPUs (fractions share one GPU) and trains on CUDA
only when Ray gave it one; with the default (None) a trial takes one whole GPU when
the cluster has GPUs, else none. Ray is an optional extra: ``pip install 'cellzoo[ray]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import ray

from cellzoo.evolve.jobs import MAX_ATTEMPTS, Job, failed_result, run_job
from cellzoo.train import TrainResult

#: the Ray task name (worker processes show it as ``ray::cellzoo_train`` while they train)
TASK_NAME = "cellzoo_train"


def start_local_ray(num_cpus: int | None = None, object_store_mb: int | None = None) -> None:
    """A fresh, quiet Ray instance on this machine (never one found running here: to join
    an existing cluster give its address, e.g. ``auto``). ``num_cpus`` defaults to all
    cores; GPUs are detected by Ray."""
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(),
             object_store_memory=object_store_mb and object_store_mb * 2**20,
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def connect_ray(address: str | None) -> bool:
    """Use the Ray this process already has, else join ``address`` (or ``$RAY_ADDRESS``),
    else start a local instance. True when this call started Ray (and so owns it)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        start_local_ray()
    else:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except ConnectionError as err:
            raise ConnectionError(f"cannot join the Ray cluster at {address!r}: {err}") from None
    return True


def _train(job: Job, threads: int) -> TrainResult:
    """Runs on a Ray worker. A job may use CUDA only when Ray assigned this task a GPU."""
    import torch

    torch.set_num_threads(threads)
    if job.config.get("device", "auto") == "auto" and not ray.get_gpu_ids():
        job = Job.from_dict({**job.to_dict(), "config": {**job.config, "device": "cpu"}})
    return run_job(job)


class RayExecutor:
    """Trains up to ``slots`` jobs at a time as Ray tasks of ``cpus_per_trial`` CPUs and
    ``gpus_per_trial`` GPUs each. Ray starts (or is joined, with ``address``) on the first
    `submit`; it is shut down by `close` only when this executor started it."""

    def __init__(self, slots: int, address: str | None = None,
                 gpus_per_trial: float | None = None, cpus_per_trial: float = 1,
                 max_attempts: int = MAX_ATTEMPTS):
        if slots < 1 or max_attempts < 1:
            raise ValueError(f"slots and max_attempts must be at least 1, got {slots} and "
                             f"{max_attempts}")
        if cpus_per_trial <= 0 or (gpus_per_trial is not None and gpus_per_trial < 0):
            raise ValueError(f"cpus_per_trial must be > 0 and gpus_per_trial >= 0, got "
                             f"{cpus_per_trial} and {gpus_per_trial}")
        self.slots = slots
        self.address = address
        self.gpus_per_trial = gpus_per_trial
        self.cpus_per_trial = cpus_per_trial
        self.max_attempts = max_attempts
        self._task: Any = None
        self._owns_ray = False
        self._pending: dict[ray.ObjectRef, Job] = {}

    def _remote(self) -> Any:
        if self._task is None:
            self._owns_ray = connect_ray(self.address)
            gpus = self.gpus_per_trial
            if gpus is None:
                gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
            self.gpus_per_trial = gpus
            self._task = ray.remote(_train).options(
                name=TASK_NAME, num_cpus=self.cpus_per_trial, num_gpus=gpus, max_retries=0)
        return self._task

    def submit(self, job: Job) -> None:
        threads = max(1, int(self.cpus_per_trial))
        self._pending[self._remote().remote(job, threads)] = job

    def completed(self, block: bool = True) -> Iterator[tuple[Job, TrainResult]]:
        if not self._pending:
            return
        refs = list(self._pending)
        ready, _ = ray.wait(refs, num_returns=1, timeout=None if block else 0)
        if ready:  # take every job that has finished by now, not just the first
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in sorted(ready, key=lambda r: self._pending[r].job_id):
            job = self._pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as err:  # the worker or its node was lost
                lost = self._lost(job, err)
                if lost is not None:
                    yield lost
                continue
            yield job, result

    def _lost(self, job: Job, err: Exception) -> tuple[Job, TrainResult] | None:
        """Resubmit a job whose task died; after ``max_attempts`` it is a failed result."""
        if job.attempt + 1 < self.max_attempts:
            self.submit(Job.from_dict({**job.to_dict(), "attempt": job.attempt + 1}))
            return None
        reason = (str(err).strip().splitlines() or [""])[0]
        return job, failed_result(job, f"Ray worker lost {job.attempt + 1} times, last: "
                                       f"{type(err).__name__}: {reason}")

    def close(self) -> None:
        for ref in self._pending:
            ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False
        self._task = None
