"""Fault injection: `cellzoo train --zoo` killed (SIGKILL) at random moments loses no run.

Each trial runs the real command in a forked process (forked from this one, so no trial
pays for importing torch again) with its own seed and checkpoint folder, into one shared
zoo, and kills it: half the trials at a random moment of the whole run (mostly training),
half after the result was saved (storing), some of them at once, until 24 trials were
killed (one that finishes first aims the later ones earlier). Afterwards every trial is in
the zoo, or has its saved result (which `cellzoo zoo add` stores), or left no result
and finishes when rerun; in the end every seed is in the zoo exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.cli.train import RESULT_NAME
from cellzoo.zoo import Zoo

KILLS = 24
TRAIN = ["train", "tanh-RNN", "--task", "synthetic", "--hidden", "8", "--batch-size", "4",
         "--bptt", "10", "--budget-tokens", "1500", "--eval-tokens", "400"]


def args(zoo: Path, folder: Path, seed: int) -> list[str]:
    return [*TRAIN, "--seed", str(seed), "--zoo", str(zoo), "--checkpoint", str(folder)]


def spawn(argv: list[str]) -> int:
    """A child process running `cellzoo ARGV` (exit status as the command's)."""
    pid = os.fork()
    if pid == 0:  # the child: run the command, never return into pytest
        code = 1
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            code = main.main(argv, prog_name="cellzoo", standalone_mode=False) or 0
        finally:
            os._exit(code)
    return pid


def exited(pid: int) -> bool:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        assert os.waitstatus_to_exitcode(status) == 0
    return bool(done)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def timeline(argv: list[str], saved: Path) -> tuple[float, float]:
    """Seconds from the start of one run to its result being saved, and to its exit."""
    start, saved_at = time.monotonic(), None
    pid = spawn(argv)
    while not exited(pid):
        if saved_at is None and saved.exists():
            saved_at = time.monotonic() - start
        time.sleep(0.0005)
    assert saved_at is not None
    return saved_at, time.monotonic() - start


def seeds_in(zoo: Path) -> list[int]:
    with Zoo.open(zoo) as z:
        return sorted(run.seed for run in z.runs())


def kill_one(argv: list[str], saved: Path, rng: random.Random, storing: bool,
             window: tuple[float, float]) -> bool:
    """Run one trial and SIGKILL it: during the whole run, or (``storing``) after its
    result was saved, at once or a random moment later. False if it finished first."""
    saved_at, end = window
    pid, start = spawn(argv), time.monotonic()
    if storing:
        while not saved.exists() and not exited(pid):
            time.sleep(0.0005)
        start, at = time.monotonic(), 0 if rng.random() < 0.5 else rng.uniform(0, end - saved_at)
    else:
        at = rng.uniform(0, end)
    while time.monotonic() - start < at and not exited(pid):
        time.sleep(0.0005)
    try:
        kill(pid)
    except (ProcessLookupError, ChildProcessError):
        return False
    return True


@pytest.mark.slow
def test_killed_trainings_are_in_the_zoo_or_saved(tmp_path):
    zoo = tmp_path / "z.h5"
    saved_at, end = timeline(args(zoo, tmp_path / "base", 0), tmp_path / "base" / RESULT_NAME)
    rng = random.Random(0)
    phases = {"no result yet": 0, "saved": 0, "stored": 0, "finished": 0}
    seed = 0
    while KILLS > sum(phases.values()) - phases["finished"] and seed < 3 * KILLS:
        seed += 1
        folder = tmp_path / f"ck{seed}"
        if not kill_one(args(zoo, folder, seed), folder / RESULT_NAME, rng, bool(seed % 2),
                        (saved_at, end)):
            # a busy machine ran this one slower than the timed run: aim earlier from now on
            phases["finished"] += 1
            saved_at, end = 0.8 * saved_at, 0.8 * end
            continue
        stored, saved = seed in seeds_in(zoo), (folder / RESULT_NAME).exists()
        phases["stored" if stored else "saved" if saved else "no result yet"] += 1
    print("kills by phase:", phases)
    assert sum(phases.values()) - phases["finished"] == KILLS, phases

    for n in range(1, seed + 1):  # recover: add the saved results, rerun what left none
        saved = tmp_path / f"ck{n}" / RESULT_NAME
        if saved.exists():
            done = CliRunner().invoke(main, ["zoo", "add", str(zoo), str(saved)])
            assert done.exit_code == 0, done.output
        if n not in seeds_in(zoo):
            done = CliRunner().invoke(main, args(zoo, tmp_path / f"ck{n}", n))
            assert done.exit_code == 0, done.output
    assert seeds_in(zoo) == list(range(seed + 1))  # each seed once, the timed run's too
