"""A writer killed with SIGKILL loses no acknowledged run; readers read while it writes."""

import random
import signal
import subprocess
import sys
import threading

import h5py
import pytest
from click.testing import CliRunner

from cellzoo.cli.zoo import zoo as zoo_cli
from cellzoo.train import TrainConfig, train_cell
from cellzoo.zoo import Zoo
from cellzoo.zoo.soak import lost_runs, save_template

CFG = TrainConfig(task="synthetic", hidden=8, batch_size=4, bptt=10, budget_tokens=400,
                  eval_tokens=200)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "result.pt"
    save_template(train_cell("Tanh(Add(MM(x), MM(h)))", CFG), path)
    return path


class Writer:
    """`python -m cellzoo.zoo.soak` in a subprocess; collects the run ids it acknowledged."""

    def __init__(self, zoo_path, template, max_pending=256):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cellzoo.zoo.soak", str(zoo_path), str(template),
             str(max_pending)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.acked: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self):
        for line in self.proc.stdout:
            if line.startswith("ACK "):
                with self.changed:
                    self.acked.append(line.split()[1])
                    self.changed.notify_all()

    def wait_for(self, count, timeout=120):
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.acked) >= count, timeout):
                self.proc.kill()
                raise AssertionError(f"writer acknowledged only {len(self.acked)} runs:\n"
                                     f"{self.proc.stderr.read()}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.thread.join()
        assert self.proc.returncode == -signal.SIGKILL, self.proc.stderr.read()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_run(tmp_path, template):
    path = tmp_path / "z.h5"
    rng = random.Random(7)
    acknowledged: list[str] = []
    for kill in range(3):
        # small max_pending makes compactions frequent, so kills land inside them too
        writer = Writer(path, template, max_pending=rng.choice([2, 3, 256]))
        writer.wait_for(1)
        threading.Event().wait(rng.uniform(0.0, 0.4))
        writer.kill()
        acknowledged += writer.acked
        assert lost_runs(path, acknowledged, template) == [], f"after kill {kill + 1}"
    with Zoo.open(path, "a", timeout=5) as zoo:  # no repair needed; the lock was released
        assert set(acknowledged) <= {r.run_id for r in zoo.runs()}
    with Zoo.open(path) as zoo:
        assert zoo.pending_runs == 0
    assert not path.with_name("z.h5.compacting").exists()


def test_readers_read_while_a_writer_writes(tmp_path, template):
    path = tmp_path / "z.h5"
    writer = Writer(path, template, max_pending=4)
    try:
        writer.wait_for(1)
        seen = 0
        for _ in range(15):
            with Zoo.open(path) as zoo:
                runs = list(zoo.runs())
                assert len(runs) >= seen
                seen = len(runs)
                zoo.load_state_dict(runs[-1].run_id)  # possibly compacted away meanwhile
            result = CliRunner().invoke(zoo_cli, ["list", str(path), "--format", "json"])
            assert result.exit_code == 0, result.output
            with h5py.File(path, "r") as f:  # plain h5py, HDF5 file locking on
                assert f["index"].shape[0] >= 1
        acked_before_kill = len(writer.acked)
        assert acked_before_kill > 1 and seen > 1
    finally:
        writer.kill()
    assert lost_runs(path, writer.acked, template) == []
