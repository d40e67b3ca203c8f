"""Edges a new user hits: unwritable or locked outputs, incomplete corpus folders, huge tokens.

Read-only folders are real: as root (where permission bits stop nothing) the command
runs in its own mount namespace with the folder bind-mounted read-only; as another
user the folder's write bits are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.cli import train as train_cli
from cellzoo.zoo import Zoo

TINY = ["--task", "synthetic", "--hidden", "8", "--batch-size", "4", "--bptt", "10",
        "--budget-tokens", "400", "--eval-tokens", "200"]
CELLZOO = [sys.executable, "-m", "cellzoo.cli"]


def cli(*args, code=0, **kwargs):
    result = CliRunner().invoke(main, [str(a) for a in args], **kwargs)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def run(*args, cwd=None, env=None, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *CELLZOO, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=300)


def read_only(folder: Path) -> list[str]:
    """A command prefix under which `folder` cannot be written, even by root."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("running as root without `unshare`: cannot make a read-only folder")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {probe.stderr.decode().strip()}")
    return ["unshare", "-m", "sh", "-c", script, str(folder)]


def assert_user_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert any(line.startswith("Error: ") for line in proc.stderr.splitlines()), proc.stderr
    for word in words:
        assert word in proc.stderr


# --- train --zoo: the zoo is checked before training ----------------------------------------


@pytest.mark.parametrize("case", ["missing folder", "garbage file", "read-only folder"])
def test_train_refuses_an_unwritable_zoo_before_training(tmp_path, case):
    prefix = []
    if case == "missing folder":
        zoo, words = tmp_path / "nowhere" / "z.h5", ["nowhere", "does not exist"]
    elif case == "garbage file":
        zoo, words = tmp_path / "z.h5", ["not an HDF5 file"]
        zoo.write_text("not a zoo")
    else:
        (tmp_path / "ro").mkdir()
        zoo, words = tmp_path / "ro" / "z.h5", ["cannot write the zoo"]
        prefix = read_only(tmp_path / "ro")
    proc = run("train", "tanh-RNN", *TINY, "--zoo", zoo, prefix=prefix)
    assert_user_error(proc, *words)
    assert proc.stdout == "" and "tokens" not in proc.stderr  # no training happened


HOLD = """
import sys, time
from cellzoo.zoo import Zoo
with Zoo.open(sys.argv[1], "a"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_train_waits_for_a_locked_zoo_or_says_who_holds_it(tmp_path):
    zoo = tmp_path / "z.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(zoo), "600"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = run("train", "tanh-RNN", *TINY, "--zoo", zoo)
        assert_user_error(proc, f"pid {holder.pid}", "--lock-timeout")
        assert "tokens" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()
    brief = subprocess.Popen([sys.executable, "-c", HOLD, str(zoo), "2"],
                             stdout=subprocess.PIPE, text=True)
    assert brief.stdout.readline().strip() == "locked"
    proc = run("train", "tanh-RNN", *TINY, "--zoo", zoo, "--lock-timeout", "300")
    brief.wait()
    assert proc.returncode == 0, proc.stderr
    assert "stored run" in proc.stderr
    with Zoo.open(zoo) as z:
        assert len(list(z.runs())) == 1


def test_runs_train_side_by_side_into_one_zoo(tmp_path):
    """The lock is taken only to store: a second run trains and stores while a first is
    still training into the same zoo."""
    zoo, first_ckpt = tmp_path / "z.h5", tmp_path / "first"
    long_run = [*TINY[:-4], "--budget-tokens", "100000000", "--eval-at", "40"]
    first = subprocess.Popen([*CELLZOO, "train", "tanh-RNN", *long_run, "--checkpoint",
                              first_ckpt, "--zoo", zoo], stderr=subprocess.DEVNULL)
    try:
        wait_for(first_ckpt / "checkpoint.pt", first)
        proc = run("train", "GRU", *TINY, "--zoo", zoo)
        assert proc.returncode == 0, proc.stderr
        assert first.poll() is None  # still training
    finally:
        first.kill()
        first.wait()
    with Zoo.open(zoo) as z:
        (stored,) = z.runs()
    assert "stored run " + stored.run_id in proc.stderr


def test_a_run_finished_under_someone_elses_lock_is_saved(tmp_path, monkeypatch):
    """Another writer takes the zoo while the run trains and keeps it: the finished run
    waits (here 0.2 s), then is saved aside with the command that stores it later."""
    zoo, holders = tmp_path / "z.h5", []

    def train_then_lose_the_zoo(*args):
        result = real_run(*args)
        holders.append(subprocess.Popen([sys.executable, "-c", HOLD, str(zoo), "600"],
                                        stdout=subprocess.PIPE, text=True))
        assert holders[0].stdout.readline().strip() == "locked"
        return result

    real_run = train_cli._run
    monkeypatch.setattr(train_cli, "_run", train_then_lose_the_zoo)
    monkeypatch.setattr(train_cli, "STORE_WAIT", 0.2)
    try:
        result = cli("train", "tanh-RNN", *TINY, "--checkpoint", tmp_path / "ckpt",
                     "--zoo", zoo, code=2)
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    saved = tmp_path / "ckpt" / train_cli.RESULT_NAME
    assert f"pid {holders[0].pid}" in result.output
    assert f"cellzoo zoo add {zoo} {saved}" in result.output
    assert "stored as run" in cli("zoo", "add", zoo, saved).output


def wait_for(path: Path, proc: subprocess.Popen) -> None:
    while not path.exists():
        assert proc.poll() is None, "the command ended early"
        time.sleep(0.05)


FILL_DURING_TRAINING = """
mount -t tmpfs -o size=1m tmpfs "$0" || exit 99
"$@" 2>"$0.err" &
until grep -q tokens "$0.err" 2>/dev/null; do sleep 0.05; done
dd if=/dev/zero of="$0/fill" bs=64k 2>/dev/null
wait $!; code=$?; cat "$0.err" >&2; exit $code
"""


def test_a_run_that_cannot_be_stored_is_saved_and_added_later(tmp_path):
    """The zoo's disk fills up during training: the result is printed, saved, and
    `cellzoo zoo add` stores it afterwards (once, however often it is run)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and `unshare` to fill a private tmpfs during training")
    (tmp_path / "disk").mkdir()
    saved = tmp_path / "kept" / "result.pt"
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", FILL_DURING_TRAINING, str(tmp_path / "disk"), *CELLZOO,
         "train", "tanh-RNN", *TINY, "--budget-tokens", "20000", "--zoo",
         str(tmp_path / "disk" / "z.h5"), "--save-result", str(saved), "--json"],
        capture_output=True, text=True, timeout=300)
    if proc.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    assert_user_error(proc, "could not be stored", str(saved), "cellzoo zoo add")
    assert "No space left on device" in proc.stderr and "not an HDF5 file" not in proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["status"] == "ok"
    zoo = tmp_path / "z.h5"
    backup = saved.with_name("copy.pt")
    shutil.copy(saved, backup)
    assert "stored as run" in cli("zoo", "add", zoo, saved).output
    assert not saved.exists()
    assert "already in the zoo" in cli("zoo", "add", zoo, backup).output
    with Zoo.open(zoo) as z:
        (stored,) = z.runs()
        assert stored.val_ppl == pytest.approx(printed["val_ppl"]) and stored.has_weights
        assert z.load_state_dict(stored.run_id)


def test_train_zoo_says_it_stored_the_run(tmp_path):
    result = cli("train", "tanh-RNN", *TINY, "--zoo", tmp_path / "z.h5")
    with Zoo.open(tmp_path / "z.h5") as z:
        (stored,) = z.runs()
    assert f"stored run {stored.run_id} in {tmp_path / 'z.h5'}" in result.stderr
    assert not list(Path.cwd().glob("unstored-result-*.pt"))


# --- unwritable outputs: exit 2, no traceback ----------------------------------------------


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "zoo" / "z.h5"
    path.parent.mkdir()
    for cell in ("tanh-RNN", "GRU"):
        cli("train", cell, *TINY, "--zoo", path)
    return path


def test_checkpoint_in_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir()
    proc = run("train", "tanh-RNN", *TINY, "--checkpoint", tmp_path / "ro" / "ck",
               prefix=read_only(tmp_path / "ro"))
    assert_user_error(proc, "cannot write the checkpoint", str(tmp_path / "ro" / "ck"))
    assert proc.stdout == ""


def test_export_to_a_read_only_folder(small_zoo, tmp_path):
    (tmp_path / "ro").mkdir()
    with Zoo.open(small_zoo) as z:
        cell = next(iter(z.runs())).hash
    proc = run("zoo", "export", small_zoo, cell, "--out", tmp_path / "ro" / "out",
               prefix=read_only(tmp_path / "ro"))
    assert_user_error(proc, str(tmp_path / "ro" / "out"))


def test_compare_and_ensemble_on_a_read_only_zoo_run_without_the_cache(small_zoo, tmp_path):
    prefix = read_only(small_zoo.parent)
    for args in (["compare", small_zoo, "--top", "2", "--tokens", "200", "--out",
                  tmp_path / "cmp"],
                 ["ensemble", small_zoo, "--top", "2", "--eval-tokens", "200"]):
        proc = run(*args, prefix=prefix)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.count("running without a cache") == 1, proc.stderr
        if args[0] == "compare":  # long work shows its progress
            assert "recording hidden states: 2/2" in proc.stderr
    assert not Path(f"{small_zoo}.analysis.h5").exists()


# --- corpora ---------------------------------------------------------------------------------


def test_an_incomplete_data_folder_is_refused_not_swapped(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("CELLZOO_DATA", str(shared_data))  # a complete ptb is available there
    folder = tmp_path / "mine"
    folder.mkdir()
    for split in ("train", "valid"):
        shutil.copy(shared_data / "ptb" / f"{split}.txt", folder)
    result = cli("train", "tanh-RNN", "--task", "ptb", "--data", folder, "--budget-tokens",
                 "100", code=2)
    assert "test.txt" in result.output and str(shared_data) not in result.output
    listed = cli("data", "path", "ptb", "--data", folder, code=2).output
    assert f"partial {folder}  (no test.txt)" in listed


def test_fetch_failure_names_the_destination(tmp_path, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # nothing listens: fails at once
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    result = cli("data", "fetch", "ptb", "--dest", tmp_path / "dest", code=2)
    assert f"into {tmp_path / 'dest'}," in result.output.replace("\n", " ")


def test_a_huge_unknown_token_is_cut_in_the_error():
    token = "a" * 50_000
    result = CliRunner().invoke(main, ["dsl", "check", f"Tanh(Add(MM(x), {token}))"])
    assert result.exit_code == 2 and "50,000 characters" in result.output
    assert len(result.output) < 1000
    result = CliRunner().invoke(main, ["train", token])
    assert result.exit_code == 2 and len(result.output) < 1000


def test_the_ray_executor_asks_for_its_extra_by_name(tmp_path, monkeypatch):
    loaded = [m for m in sys.modules if m == "ray" or m.startswith(("ray.", "cellzoo.evolve.ray"))]
    for name in loaded:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra has
    result = cli("evolve", "--run-dir", tmp_path / "run", "--zoo", tmp_path / "z.h5",
                 "--executor", "ray", "--evaluations", "1", code=2)
    assert "cellzoo[ray]" in result.output


def test_one_default_pool_and_token_count_for_compare_ensemble_and_report():
    from cellzoo.analysis.selection import POOL, TOKENS
    from cellzoo.cli.analysis import compare, ensemble
    from cellzoo.cli.report import report

    def default(command, name):
        return next(p.default for p in command.params if p.name == name)

    assert default(report, "top") == POOL and f"default {POOL})" in (
        next(p.help for p in ensemble.params if p.name == "top"))
    assert f"default {POOL})" in next(p.help for p in compare.params if p.name == "top")
    assert default(compare, "tokens") == default(report, "tokens") == TOKENS


EVOLVE = ["evolve", "--task", "synthetic", "--hidden", "8", "--budget-tokens", "600",
          "--population", "4", "--sample", "2", "--no-library"]


def test_evolve_rerun_says_it_resumes_and_plot_progress_refuses_a_read_only_out(tmp_path):
    run_dir, zoo = tmp_path / "run", tmp_path / "z.h5"
    first = cli(*EVOLVE, "--evaluations", "4", "--zoo", zoo, "--run-dir", run_dir, "--json")
    assert "resuming" not in first.stderr
    again = cli(*EVOLVE, "--evaluations", "6", "--zoo", zoo, "--run-dir", run_dir, "--json")
    assert f"resuming the search in {run_dir}: 4 of 6 candidates trained" in again.stderr
    (tmp_path / "ro").mkdir()
    proc = run("plot", "progress", run_dir, "--out", tmp_path / "ro" / "p.png",
               prefix=read_only(tmp_path / "ro"))
    assert_user_error(proc, str(tmp_path / "ro" / "p.png"))


def test_progress_plot_keeps_its_top_point_and_counts_cut_outliers():
    import matplotlib.pyplot as plt
    import pandas as pd

    from cellzoo.evolve.progress import _clip_outliers

    for values, cut in (([10.0, 11, 12, 13, 14, 15, 16, 17, 18, 40], None),
                        ([10.0] * 9 + [1e7], "1 point above")):
        fig, ax = plt.subplots()
        ax.set_yscale("log")
        ax.scatter(range(len(values)), values)
        _clip_outliers(ax, pd.Series(values))
        shown = [v for v in values if v < 1e6]
        assert ax.get_ylim()[1] > max(shown)  # the highest point shown is inside the axes
        notes = [t.get_text() for t in ax.texts]
        assert notes == ([] if cut is None else [f"{cut} 100 not shown"])
        plt.close(fig)


def test_progress_title_counts_each_kind_of_search_apart():
    import pandas as pd

    from cellzoo.evolve.progress import _arm_summary

    frame = pd.DataFrame({
        "run": ["a", "a", "a", "b", "b", "c"],
        "arm": ["aging+ladder"] * 3 + ["random+ladder"] * 3,
        "cells": [1, 1, 2, 1, 2, 1],  # run a's second training is a promotion
        "status": ["ok", "ok", "diverged", "ok", "failed", "ok"]})
    lines = [_arm_summary(part, True) for _, part in frame.groupby("arm", sort=False)]
    assert lines == ["aging+ladder: 2 new cells, 3 trainings, 1 diverged or failed",
                     "random+ladder (2 runs): 3 new cells, 3 trainings, 1 diverged or failed"]
    assert _arm_summary(frame[frame["run"] == "a"], False) == (
        "aging+ladder: 3 trained, 1 diverged or failed")


def test_controller_sample_says_it_is_pre_training():
    result = cli("controller", "sample", "-n", "2", "--seed", "1")
    assert "pre-training the controller's policy" in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_nas_bench_nlp_tests_skip_with_a_reason_without_the_logs(tmp_path):
    here = Path(__file__).parent
    env = {**os.environ, "CELLZOO_DATA": str(tmp_path)}  # a data folder without the logs
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q",
         str(here / "test_ranker_nbnlp.py"), str(here / "test_ranker_cli.py"),
         "-k", "reference or nbnlp"],
        capture_output=True, text=True, env=env, cwd=here.parent, timeout=600)
    assert proc.returncode == 0, proc.stdout
    assert " error" not in proc.stdout
    assert "nas-bench-nlp/ptb_single_run.jsonl not found" in proc.stdout
