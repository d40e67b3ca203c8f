"""Executors: inline and process pool train the same jobs to the same results; a lost
worker's job is retried; a job that cannot run is a failed result, not an exception."""

from __future__ import annotations

import math
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import collect

from cellzoo.evolve.executors import (
    InlineExecutor,
    Job,
    ProcessExecutor,
    make_executor,
    run_job,
)
from cellzoo.train import TrainConfig

TINY = TrainConfig.proxy("synthetic", hidden=8, budget_tokens=1200, eval_tokens=300,
                         batch_size=4, bptt=10).to_dict()
CELLS = ["Tanh(Add(MM(x), MM(h)))", "ReLU(Add(MM(h), MM(x)))",
         "Gate3(h, Tanh(MM(x)), Add(MM(h), MM(x)))"]


def jobs() -> list[Job]:
    return [Job(i, expr, TINY, lineage={"origin": "manual"}) for i, expr in enumerate(CELLS)]


def test_job_is_plain_picklable_data():
    job = jobs()[0]
    assert Job.from_dict(job.to_dict()) == job
    assert pickle.loads(pickle.dumps(job)) == job
    assert job.hash == Job(9, "Tanh(Add(MM(h), MM(x)))", TINY).hash  # canonical: one identity


def test_inline_trains_in_submission_order():
    ex = InlineExecutor()
    for job in jobs():
        ex.submit(job)
    order = []
    while len(order) < len(CELLS):
        order += [job.job_id for job, _ in ex.completed()]
    assert order == [0, 1, 2]
    assert list(ex.completed()) == []  # nothing pending: nothing yielded, no blocking


@pytest.mark.slow
def test_process_pool_gives_the_same_results_as_inline():
    inline = InlineExecutor()
    for job in jobs():
        inline.submit(job)
    expected = collect(inline, len(CELLS))
    pool = ProcessExecutor(workers=2, threads_per_worker=1)
    try:
        for job in jobs():
            pool.submit(job)
        got = collect(pool, len(CELLS))
    finally:
        pool.close()
    assert sorted(got) == sorted(expected)
    for job_id, (_, want) in expected.items():
        result = got[job_id][1]
        assert want.status == "ok"
        assert (result.hash, result.status) == (want.hash, want.status)
        assert result.val_ppl == pytest.approx(want.val_ppl, rel=1e-9)
        assert result.test_ppl == pytest.approx(want.test_ppl, rel=1e-9)


def test_pool_workers_share_the_drivers_threads():
    """The suite runs with one torch thread (conftest): one per worker, not the cores."""
    assert [ProcessExecutor(workers=w).threads for w in (1, 2)] == [1, 1]
    torch.set_num_threads(4)
    assert [ProcessExecutor(workers=w).threads for w in (1, 2, 3, 8)] == [4, 2, 1, 1]


@pytest.mark.slow
def test_a_killed_worker_has_its_job_retried():
    pool = ProcessExecutor(workers=1, threads_per_worker=1)
    try:
        pool.submit(jobs()[0])
        deadline = time.monotonic() + 60
        while not pool._pool._processes and time.monotonic() < deadline:
            time.sleep(0.01)
        for pid in list(pool._pool._processes):
            os.kill(pid, signal.SIGKILL)  # dies while importing or training the job
        ((job, result),) = collect(pool, 1).values()
    finally:
        pool.close()
    assert job.attempt == 1
    assert result.status == "ok" and math.isfinite(result.val_ppl)


def test_a_job_that_cannot_run_is_a_failed_result(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLZOO_DATA", str(tmp_path))
    monkeypatch.setenv("CELLZOO_CACHE", str(tmp_path))
    config = TrainConfig.proxy("ptb", budget_tokens=100).to_dict()
    result = run_job(Job(0, CELLS[0], config, data_dir=str(tmp_path / "nowhere")))
    assert result.status == "failed"
    assert "not found" in result.error
    assert math.isnan(result.val_ppl)


def test_make_executor_names():
    assert isinstance(make_executor("inline"), InlineExecutor)
    assert make_executor("process", 2).slots == 2
    with pytest.raises(ValueError, match="choose inline, process or ray"):
        make_executor("cluster")


#: starts a pool on a job that trains for many minutes, prints the worker's pid, and waits
#: to be killed
ORPHAN = """
import sys, time
from cellzoo.evolve.executors import ProcessExecutor
from cellzoo.evolve.jobs import Job
from cellzoo.train import TrainConfig
config = TrainConfig.proxy("synthetic", hidden=64, budget_tokens=50_000_000).to_dict()
pool = ProcessExecutor(workers=1, threads_per_worker=1)
pool.submit(Job(0, "Tanh(Add(MM(x), MM(h)))", config))
while not pool._pool._processes:
    time.sleep(0.05)
print(*pool._pool._processes, flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_pool_workers_stop_when_the_search_is_killed():
    search = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in search.stdout.readline().split()]
        assert workers and all(_running(pid) for pid in workers)
    finally:
        search.kill()  # SIGKILL: no cleanup in the search process
        search.wait()
    deadline = time.monotonic() + 120  # a liveness bound, far above the worker's 2 s poll
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "a pool worker kept training after its search was killed"
