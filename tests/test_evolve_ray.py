"""The Ray executor on a local Ray instance (2 CPUs, started once for the module).

A search through Ray stores the same runs as an inline one even when a worker is killed
mid-task (it is retried: no lost or duplicated zoo run); past its attempts a job is a
failed result; `cellzoo evolve --executor ray` resumes after its driver is SIGKILLed.
GPU paths run only where torch sees CUDA."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import collect

ray = pytest.importorskip("ray", reason="Ray is an extra: ./install.sh ray (CI installs it)")

from cellzoo.evolve.config import SearchConfig  # noqa: E402  (after the skip: needs Ray)
from cellzoo.evolve.executors import Job, make_executor  # noqa: E402
from cellzoo.evolve.ray_executor import TASK_NAME, RayExecutor, start_local_ray  # noqa: E402
from cellzoo.evolve.search import Search  # noqa: E402
from cellzoo.train import TrainConfig  # noqa: E402
from cellzoo.zoo import Zoo  # noqa: E402

pytestmark = pytest.mark.slow

TRAIN = dict(hidden=8, budget_tokens=1500, eval_tokens=300, batch_size=4, bptt=10)
TINY = TrainConfig.proxy("synthetic", **TRAIN).to_dict()
CELLS = ["Tanh(Add(MM(x), MM(h)))", "ReLU(Add(MM(h), MM(x)))",
         "Gate3(h, Tanh(MM(x)), Add(MM(h), MM(x)))"]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (Ray starts slowly); its address for drivers
    in subprocesses."""
    start_local_ray(num_cpus=2, object_store_mb=100)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def jobs() -> list[Job]:
    return [Job(i, expr, TINY, lineage={"origin": "manual"}) for i, expr in enumerate(CELLS)]


def busy_workers() -> list[int]:
    """Pids of this process's Ray workers that are running a training task now."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(entry.name)] = (ppid, cmd)

    def mine(pid: int) -> bool:
        while pid > 1 and pid in table:
            pid = table[pid][0]
            if pid == os.getpid():
                return True
        return False

    return [pid for pid, (_, cmd) in table.items() if cmd == f"ray::{TASK_NAME}" and mine(pid)]


def kill_a_busy_worker(timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in busy_workers():
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.01)
    raise AssertionError("no Ray worker started a training task")


class Recording:
    """An executor that notes every (job, result) it hands back (to see retried attempts)."""

    def __init__(self, inner):
        self.inner, self.slots, self.done = inner, inner.slots, []

    def submit(self, job: Job) -> None:
        self.inner.submit(job)

    def completed(self, block: bool = True):
        for job, result in self.inner.completed(block):
            self.done.append((job, result))
            yield job, result

    def close(self) -> None:
        self.inner.close()


def zoo_runs(path: Path) -> list[tuple]:
    with Zoo.open(path, "r") as zoo:
        return [(r.hash, r.status, r.val_ppl, r.test_ppl, r.config_key, r.search_id)
                for r in zoo.runs()]


def test_killed_worker_is_retried_and_the_zoo_holds_each_run_once(cluster, tmp_path):
    """A search of one round (evaluations = population) through Ray, with a worker killed
    while it trains, stores exactly the runs (same cells, same perplexities) an inline
    search stores."""
    settings = dict(evaluations=4, population=4, sample=2, round_size=2, train=TRAIN)
    Search(SearchConfig(zoo=str(tmp_path / "inline.h5"), **settings), tmp_path / "inline").run()
    recording = Recording(RayExecutor(slots=2))
    search = Search(SearchConfig(zoo=str(tmp_path / "ray.h5"), executor="ray", workers=2,
                                 **settings), tmp_path / "ray", executor=recording)
    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    search.run()
    killer.join()
    assert sorted(job.attempt for job, _ in recording.done) == [0, 0, 0, 1]  # one retry
    assert recording.inner.gpus_per_trial == 0  # no GPU in this cluster: trials take none
    assert all(result.device == "cpu" for _, result in recording.done)
    got = zoo_runs(tmp_path / "ray.h5")
    assert len({run[0] for run in got}) == len(got) == 4
    want = zoo_runs(tmp_path / "inline.h5")
    assert sorted(run[:5] for run in got) == sorted(run[:5] for run in want)


def test_a_ladder_search_through_ray_equals_the_inline_one(cluster, tmp_path):
    """Ladder jobs (probe at rung 0, promotions from branch checkpoints) are plain data: one
    Ray worker stores the runs and reaches the ASHA state an inline search does."""
    ladder = dict(preset="synthetic-small", rungs=3, eta=2, top_tokens=36000, probe=[1.0, 0.5])
    settings = dict(evaluations=5, population=4, sample=2, round_size=2, ladder=ladder)
    inline = Search(SearchConfig(zoo=str(tmp_path / "inline.h5"), **settings),
                    tmp_path / "inline").run()
    search = Search(SearchConfig(zoo=str(tmp_path / "ray.h5"), executor="ray", **settings),
                    tmp_path / "ray", executor=RayExecutor(slots=1)).run()
    assert search.counters.promoted > 0
    assert search.climb.asha.state_dict() == inline.climb.asha.state_dict()
    got, want = zoo_runs(tmp_path / "ray.h5"), zoo_runs(tmp_path / "inline.h5")
    assert [run[:5] for run in got] == [run[:5] for run in want]


def test_a_job_past_its_attempts_is_a_failed_result(cluster):
    executor = RayExecutor(slots=1, max_attempts=1)
    try:
        executor.submit(jobs()[0])
        kill_a_busy_worker()
        ((job, result),) = collect(executor, 1).values()
    finally:
        executor.close()
    assert (job.job_id, job.attempt, result.status) == (0, 0, "failed")
    assert "Ray worker lost 1 times" in result.error and "WorkerCrashedError" in result.error
    assert math.isnan(result.val_ppl)


def evolve_cmd(run_dir: Path, zoo: Path, toml: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cellzoo.cli", "evolve", "--run-dir", str(run_dir), "--zoo",
            str(zoo), "--config", str(toml), "--executor", "ray", "--workers", "2", *extra]


def test_evolve_with_ray_resumes_after_the_driver_is_killed(cluster, tmp_path):
    toml, zoo, run_dir = tmp_path / "s.toml", tmp_path / "zoo.h5", tmp_path / "run"
    toml.write_text("evaluations = 8\npopulation = 4\nsample = 2\nround_size = 2\n[train]\n" +
                    "".join(f"{k} = {v}\n" for k, v in TRAIN.items()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = run_dir / "evaluations.jsonl"
    driver = subprocess.Popen(evolve_cmd(run_dir, zoo, toml, "--address", cluster), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while driver.poll() is None and time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    assert driver.wait() == -signal.SIGKILL
    assert 3 <= len(log.read_text().splitlines()) < 8  # killed mid-run
    resumed = subprocess.run(evolve_cmd(run_dir, zoo, toml, "--address", cluster, "--resume",
                                        "--json"),
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["evaluations"] == 8
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["n"] for row in rows] == list(range(8))
    runs = [run for run in zoo_runs(zoo) if run[5] == summary["search_id"]]
    assert sorted(run[0] for run in runs) == sorted(row["hash"] for row in rows)
    assert len({run[0] for run in runs}) == 8  # none lost, none twice
    state = json.loads((run_dir / "checkpoint.json").read_text())
    assert state["in_flight"] == [] and state["counters"]["trained"] == 8


def test_ray_options_need_the_ray_executor():
    with pytest.raises(ValueError, match=r"Ray options \(address\) apply only"):
        make_executor("inline", address="auto")
    with pytest.raises(ValueError, match="cpus_per_trial must be > 0"):
        RayExecutor(slots=1, cpus_per_trial=0)


def test_a_clear_error_when_ray_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    monkeypatch.delitem(sys.modules, "cellzoo.evolve.ray_executor")
    with pytest.raises(ValueError, match=r"install cellzoo\[ray\]"):
        make_executor("ray", 2)


@CUDA
def test_ray_gives_each_trial_a_share_of_a_gpu(cluster):
    executor = RayExecutor(slots=2, gpus_per_trial=0.5)
    try:
        for job in jobs()[:2]:
            executor.submit(job)
        results = [result for _, result in collect(executor, 2).values()]
    finally:
        executor.close()
    assert [r.status for r in results] == ["ok", "ok"]
    assert all(r.device.startswith("cuda") for r in results)


@CUDA
@pytest.mark.parametrize("mode", ["eager", "compile"])
def test_compiled_cell_on_cuda_matches_cpu(mode):
    from cellzoo.dsl.compile import CompiledCell
    from cellzoo.dsl.library import LIBRARY

    torch.manual_seed(0)
    cpu = CompiledCell(LIBRARY["LSTM"].expr, 6, 8)
    gpu = CompiledCell(LIBRARY["LSTM"].expr, 6, 8, mode=mode).cuda()
    gpu.load_state_dict(cpu.state_dict())
    inputs = torch.randn(5, 3, 6)
    want, _ = cpu(inputs)
    got, state = gpu(inputs.cuda())
    got.sum().backward()
    assert all(t.is_cuda for t in state)
    assert torch.allclose(got.cpu(), want, atol=1e-5)
    assert all(p.grad is not None and p.grad.is_cuda for p in gpu.parameters())


@CUDA
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_a_ladder_job_trains_on_its_configs_device(device, tmp_path):
    """What the Ray executor relies on: a trial Ray gave no GPU sets the job's device to cpu."""
    from cellzoo.dsl.library import LIBRARY
    from cellzoo.evolve.jobs import run_job

    ladder = dict(preset="synthetic-small", eta=2, rungs=2, rung0_tokens=None,
                  top_tokens=4000, reference="LSTM", probe=[1.0])
    config = TrainConfig.preset("synthetic-small", device=device).to_dict()
    job = Job(0, LIBRARY["LSTM"].expr, config, ladder=ladder, rung=1, lr=1.0,
              checkpoint=str(tmp_path))
    result = run_job(job)
    assert result.status == "ok" and result.device.startswith("cpu" if device == "cpu"
                                                               else "cuda")


@CUDA
def test_training_on_cuda():
    from cellzoo.train import train_cell

    result = train_cell(CELLS[0], TrainConfig.from_dict({**TINY, "device": "auto"}))
    assert result.status == "ok" and result.device.startswith("cuda")
    assert math.isfinite(result.val_ppl)
