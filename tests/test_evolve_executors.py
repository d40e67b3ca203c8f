"""Executors: inline and process pool train the same jobs to the same results; a lost
worker's job is retried; a job that cannot run is a failed result, not an exception."""

from __future__ import annotations

import math
import os
import pickle
import signal
import time

import pytest
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
