"""Kill a search with SIGKILL and resume it: it must end exactly like an uninterrupted run
(inline executor, same seed): same zoo contents, same population, same log. Also the
`cellzoo evolve` command's resume rules and errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import env, evolve_cmd, kill_when_logged, run_evolve, search_outcome

from cellzoo.cli import main
from cellzoo.zoo import Zoo

pytestmark = pytest.mark.slow

TOML = """\
evaluations = 8
population = 4
sample = 2
round_size = 2
[train]
hidden = 8
budget_tokens = 1500
eval_tokens = 300
batch_size = 4
bptt = 10
"""

#: dies by SIGKILL right after the N-th result reached the zoo and the log, before the
#: checkpoint that records it (the search's most delicate moment)
KILL_AFTER_RESULT = textwrap.dedent("""
    import os, signal, sys
    from cellzoo.evolve.config import load_toml, resolve
    from cellzoo.evolve.search import Search
    toml, zoo, run_dir, n = sys.argv[1:]
    config = resolve(load_toml(toml), {"zoo": zoo})
    def bomb(event):
        if event.trained == int(n):
            os.kill(os.getpid(), signal.SIGKILL)
    Search.open(config, run_dir, on_event=bomb).run()
""")


def outcome(zoo: Path, run_dir: Path) -> dict:
    """What must not depend on interruptions: zoo runs (in order) with lineage, the final
    population, the evaluation log (without times and ids)."""
    runs, state, log = search_outcome(zoo, run_dir)
    return {"runs": runs, "population": state["strategy"]["members"], "log": log,
            "counters": {k: state["counters"][k] for k in ("trained", "reused", "evaluated")}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    toml = tmp / "search.toml"
    toml.write_text(TOML)
    ref_zoo, ref_dir = tmp / "ref.h5", tmp / "ref"
    done = run_evolve(toml, ref_zoo, ref_dir, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["evaluations"] == 8
    return tmp, toml, outcome(ref_zoo, ref_dir)


def test_killed_between_zoo_write_and_checkpoint_then_resumed(setup):
    tmp, toml, expected = setup
    zoo, run_dir = tmp / "a.h5", tmp / "a"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_RESULT, str(toml), str(zoo),
                             str(run_dir), "5"], env=env(), timeout=600)
    assert killed.returncode == -signal.SIGKILL
    with Zoo.open(zoo, "r") as z:
        assert len(z) == 5  # the fifth run is in the zoo; the checkpoint has it in flight
    state = json.loads((run_dir / "checkpoint.json").read_text())
    assert state["counters"]["trained"] == 4 and len(state["in_flight"]) == 1
    resumed = run_evolve(toml, zoo, run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(zoo, run_dir) == expected


def test_killed_at_a_random_moment_twice_then_rerun(setup):
    tmp, toml, expected = setup
    zoo, run_dir = tmp / "b.h5", tmp / "b"
    log = run_dir / "evaluations.jsonl"
    for lines in (2, 6):
        kill_when_logged(evolve_cmd(toml, zoo, run_dir), log, lines)
    rerun = run_evolve(toml, zoo, run_dir)  # the same command again continues
    assert rerun.returncode == 0, rerun.stderr
    assert outcome(zoo, run_dir) == expected


def test_cli_errors_exit_2_with_a_message(setup, tmp_path):
    tmp, toml, _ = setup
    base = ["evolve", "--config", str(toml)]
    cases = [
        (base + ["--run-dir", str(tmp_path / "empty"), "--zoo", "z.h5", "--resume"], "no search"),
        (base + ["--run-dir", str(tmp / "ref"), "--zoo", str(tmp / "ref.h5"), "--seed", "5"],
         "seed"),
        (["evolve", "--run-dir", str(tmp_path / "r")], "missing --zoo"),
        (base + ["--run-dir", str(tmp_path / "r"), "--zoo", "z.h5", "--sample", "9"], "sample"),
        (["plot", "progress", str(tmp_path), "--out", str(tmp_path / "p.png")], "no evaluations"),
    ]
    for args, message in cases:
        done = CliRunner().invoke(main, args)
        assert done.exit_code == 2, (args, done.output)
        assert message in done.output
        assert isinstance(done.exception, SystemExit)  # a message, not a traceback


def test_plot_progress_command(setup, tmp_path):
    tmp, _, _ = setup
    out = tmp_path / "progress.png"
    done = CliRunner().invoke(main, ["plot", "progress", str(tmp / "ref"), "--out", str(out),
                                     "--csv", str(tmp_path / "progress.csv")])
    assert done.exit_code == 0, done.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "progress.csv").read_text().splitlines()) == 1 + 8
    assert "best val ppl " in done.output and "at rung" not in done.output
