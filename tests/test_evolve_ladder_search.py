"""The search on the fidelity ladder (synthetic-small, three tiny rungs, eta 2): rung-0
probes, ASHA promotions continuing from branch checkpoints, fitness within a rung, every
rung result in the zoo and the log; SIGKILL and resume end like an uninterrupted run; the
process executor gives the inline results; bad ladders are refused with exit code 2 and
nothing written."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import LADDER_TOML as TOML
from helpers import Page, env, evolve_cmd, kill_when_logged, run_evolve, search_outcome

from cellzoo.cli import main
from cellzoo.common.io import read_jsonl
from cellzoo.dsl import canonical_text, parse_cell
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.config import ConfigError, SearchConfig, for_resume, load_toml, resolve
from cellzoo.evolve.executors import ProcessExecutor
from cellzoo.evolve.finalists import finalist_ranks
from cellzoo.evolve.jobs import run_job
from cellzoo.evolve.population import Member, MuPlusLambda
from cellzoo.evolve.progress import best_curves, progress_frame
from cellzoo.evolve.rundir import RunDir
from cellzoo.evolve.rungs import Climb
from cellzoo.evolve.search import Search
from cellzoo.train import load_corpus, train_cell
from cellzoo.zoo import Zoo

pytestmark = pytest.mark.slow

#: dies by SIGKILL right after the first promotion's result reached the zoo and the log,
#: before the checkpoint that records it
KILL_AFTER_PROMOTION = textwrap.dedent("""
    import os, signal, sys
    from cellzoo.evolve.config import load_toml, resolve
    from cellzoo.evolve.search import Search
    toml, zoo, run_dir = sys.argv[1:]
    config = resolve(load_toml(toml), {"zoo": zoo})
    def bomb(event):
        if event.member.rung > 0:
            os.kill(os.getpid(), signal.SIGKILL)
    Search.open(config, run_dir, on_event=bomb).run()
""")


#: corrupts the branch checkpoint that a cell's promotion to rung 2 starts from, as soon as
#: the cell's rung-1 result arrives: that promotion fails, for a reason outside the cell
CORRUPT_BRANCH = textwrap.dedent("""
    import sys
    from pathlib import Path
    from cellzoo.evolve.config import load_toml, resolve
    from cellzoo.evolve.search import Search
    toml, zoo, run_dir, cell = sys.argv[1:]
    config = resolve(load_toml(toml), {"zoo": zoo})
    def corrupt(event):
        if event.member.hash == cell and event.member.rung == 1:
            for branch in Path(run_dir, "cells", cell).glob("rung1-*/branch.pt"):
                branch.write_bytes(b"not a checkpoint")
    Search.open(config, run_dir, on_event=corrupt).run()
""")


def outcome(zoo: Path, run_dir: Path) -> dict:
    """What must not depend on interruptions or executors: the zoo's runs in order (with
    their config keys: width, rung and probed rate), the population, the evaluation log
    (without times and ids), the ASHA state and each cell's rate."""
    runs, state, log = search_outcome(zoo, run_dir)
    return {"runs": runs, "population": state["strategy"]["members"], "log": log,
            "asha": state["ladder"]["asha"],
            "rates": {h: cell["lr"] for h, cell in state["ladder"]["cells"].items()},
            "counters": {k: state["counters"][k] for k in ("trained", "promoted", "evaluated")}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ladder")
    toml = tmp / "search.toml"
    toml.write_text(TOML)
    zoo, run_dir = tmp / "ref.h5", tmp / "ref"
    done = run_evolve(toml, zoo, run_dir, "--json")
    assert done.returncode == 0, done.stderr
    return tmp, toml, json.loads(done.stdout), outcome(zoo, run_dir)


def test_the_ladder_search_promotes_and_ranks_within_rungs(reference):
    tmp, _, summary, result = reference
    log = result["log"]
    assert summary["evaluations"] == 6 and summary["promotions"] >= 2
    assert sum(row["rung"] == 0 for row in log) == 6  # evaluations counts rung-0 cells
    assert max(row["rung"] for row in log) == 2  # someone reached the top rung
    assert [row["n"] for row in log] == list(range(len(log)))
    assert len(result["runs"]) == len(log)  # every rung result is in the zoo
    for row in log[1:]:
        if row["rung"] > 0:  # promoted: a rung-0 cell whose rate stays with it
            first = next(r for r in log if r["hash"] == row["hash"] and r["rung"] == 0)
            assert row["lr"] == first["lr"] and row["n"] > first["n"]
    keys: dict[str, list[str]] = {}
    for row, run in zip(log, result["runs"], strict=True):
        assert run[0] == row["hash"]
        keys.setdefault(row["hash"], []).append(run[8])
    assert all(len(set(k)) == len(k) for k in keys.values())  # each rung its own config key
    with Zoo.open(tmp / "ref.h5", "r") as zoo:  # the probed rate is in the stored config
        assert [run.config["lr"] for run in zoo.runs()] == [row["lr"] for row in log]
        # a rung-0 row's seconds are its whole probe's; the zoo run's, the chosen rate's run
        rows = read_jsonl(tmp / "ref" / "evaluations.jsonl")
        probed = [(row["seconds"], zoo.run(row["run_id"]).seconds) for row in rows
                  if row["rung"] == 0]
        assert all(whole >= run for whole, run in probed)
        assert any(whole > run for whole, run in probed)  # a probe that tried both rates
        # a promotion's row counts its own seconds; its zoo run's add the branch run's share
        promoted = [(row, zoo.run(row["run_id"]).seconds) for row in rows if row["rung"] > 0]
        assert all(row["seconds"] + row["branch_seconds"] == pytest.approx(run)
                   and 0 < row["branch_seconds"] < run for row, run in promoted)
        assert {run.config["budget_tokens"] for run in zoo.runs()} == {9000, 18000, 36000}
    best = summary["top"][0]  # the best cell is ranked at the highest rung reached
    assert best["rung"] == 2
    asha = result["asha"]
    assert sorted(asha["results"][0]) == sorted({row["hash"] for row in log})
    for rung in (0, 1):  # the search ended because nobody else could be promoted
        done = asha["results"][rung]
        ranked = sorted((v, h) for h, v in done.items() if v is not None)
        best_share = {h for _, h in ranked[: len(done) // 2]}
        assert best_share <= set(asha["results"][rung + 1])


def test_each_cell_keeps_only_the_branch_of_its_highest_rung(reference):
    """Failed probe rates, rungs below the highest and finished runs' resume checkpoints
    are deleted once the search's checkpoint records them (the kill tests resume past it)."""
    tmp, _, _, result = reference
    kept = 0
    for cell_hash, lr in result["rates"].items():
        top = max(k for k, done in enumerate(result["asha"]["results"]) if cell_hash in done)
        root = tmp / "ref" / "cells" / cell_hash
        files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        assert files <= {f"rung{top}-lr{lr!r}/branch.pt"}, (cell_hash, files)
        kept += len(files)
    assert kept >= len(result["rates"]) // 2  # the ok cells' branches are there


def test_the_ranker_fits_on_the_ladders_rung0_runs_and_nothing_is_reused(reference):
    tmp, toml, _, result = reference
    search = Search(resolve(load_toml(toml), {"zoo": str(tmp / "ref.h5")}), tmp / "other")
    with Zoo.open(tmp / "ref.h5", "r") as zoo:
        runs = search.scope.fit_runs(zoo)
        assert len(runs) == 6 and {r.config["budget_tokens"] for r in runs} == {9000}
        assert len({r.config["hidden"] for r in runs}) > 1  # widths differ per cell
        assert search.scope.find(zoo, runs[0].hash) is None


def test_the_progress_frame_keeps_the_best_per_rung(reference):
    tmp, _, _, _ = reference
    frame = progress_frame([tmp / "ref"])
    assert set(frame["rung"]) == {0, 1, 2}
    assert list(frame["cells"]) == list((frame["rung"] == 0).cumsum())
    for _, part in frame.groupby("rung"):
        assert part["best_so_far"].equals(part["val_ppl"].cummin().ffill())
    curves = best_curves(frame)
    assert sorted(curves.groupby("rung").groups) == [0, 1, 2]  # one line per rung
    for rung, part in curves.groupby("rung"):
        assert part["best_so_far"].is_monotonic_decreasing
        assert part["best_so_far"].iloc[-1] == frame.loc[frame["rung"] == rung, "val_ppl"].min()
    out = tmp / "progress.png"
    done = CliRunner().invoke(main, ["plot", "progress", str(tmp / "ref"), "--out", str(out)])
    assert done.exit_code == 0, done.output
    for rung in (0, 1, 2):  # one best per rung, never one across rungs
        best = frame.loc[frame["rung"] == rung, "val_ppl"].min()
        assert f"best val ppl at rung {rung} {best:.2f}" in done.output


def test_a_kept_log_plots_and_sums_up_like_its_run_dir(reference, tmp_path):
    """`plot progress` reads an evaluations log kept apart from its run directory (as
    docs/data keeps the PTB arms'), and its --json summary gives each rung's best result."""
    tmp, _, _, _ = reference
    kept = tmp_path / "arm-evaluations.jsonl"
    kept.write_text((tmp / "ref" / "evaluations.jsonl").read_text())
    frame = progress_frame([tmp / "ref"])
    from_log = progress_frame([kept])
    assert set(from_log["run"]) == set(from_log["arm"]) == {"arm"}
    pd.testing.assert_frame_equal(from_log.drop(columns=["run", "arm"]),
                                  frame.drop(columns=["run", "arm"]))
    done = CliRunner().invoke(main, ["plot", "progress", str(kept), "--out",
                                     str(tmp_path / "p.png"), "--json"])
    assert done.exit_code == 0, done.output
    (run,) = json.loads(done.output)["runs"]
    assert (run["cells"], run["trainings"]) == ((frame["rung"] == 0).sum(), len(frame))
    assert run["hours"] == pytest.approx(frame["seconds"].sum() / 3600)
    for rung in run["rungs"]:
        at = frame[frame["rung"] == rung["rung"]]
        best = at.loc[at["val_ppl"].idxmin()]
        assert rung["trainings"] == len(at)
        assert (rung["best"]["hash"], rung["best"]["val_ppl"]) == (best["hash"], best["val_ppl"])
        assert rung["best"]["test_ppl"] == best["test_ppl"] > 1  # ok runs log their test
    top = frame[frame["rung"] == frame["rung"].max()]
    assert [f["hash"] for f in run["finalists"]] == list(top.sort_values("val_ppl")["hash"])
    for finalist in run["finalists"]:  # each finalist's path up the ladder, rung by rung
        mine = frame[frame["hash"] == finalist["hash"]].groupby("rung")["val_ppl"].min()
        assert finalist["val_by_rung"] == [mine.get(r) for r in range(frame["rung"].max() + 1)]
        assert finalist["val_by_rung"][-1] == finalist["val_ppl"]
    (tmp_path / "notes.jsonl").write_text('{"a": 1}\n')
    bad = CliRunner().invoke(main, ["plot", "progress", str(tmp_path / "notes.jsonl"),
                                    "--out", str(tmp_path / "q.png")])
    assert bad.exit_code == 2 and "is not a search's evaluations log" in bad.output


def test_the_finalists_chart_ranks_the_top_rungs_cells_at_every_rung(reference, tmp_path):
    """`plot finalists`: the cells trained at the highest rung, ranked among themselves per
    rung, and Kendall tau of each rung against the top rung's test perplexity."""
    tmp, _, _, _ = reference
    frame = progress_frame([tmp / "ref"])
    done = CliRunner().invoke(main, ["plot", "finalists", str(tmp / "ref"), "--out",
                                     str(tmp_path / "f.png"), "--json"])
    assert done.exit_code == 0, done.output
    (run,) = json.loads(done.output)["runs"]
    assert (tmp_path / "f.png").stat().st_size > 0
    top = frame[frame["rung"] == frame["rung"].max()]
    assert [f["hash"] for f in run["finalists"]] == list(top["hash"])
    assert run["tau"] == [None] * (frame["rung"].max() + 1)  # too few finalists for a tau
    # a kept log with three finalists: A leads rung 0, B rungs 1 and 2 (and the test)
    rows = [(h, rung, val, test) for h, path, test in
            (("A", (400, 260, 120), 115), ("B", (420, 250, 118), 112),
             ("C", (450, 270, 125), 119), ("D", (500,), None))
            for rung, val in enumerate(path)]
    log = tmp_path / "arm-evaluations.jsonl"
    log.write_text("".join(json.dumps({"hash": h, "expr": "x", "status": "ok", "rung": r,
                                       "val_ppl": v, "test_ppl": t if r == 2 else None,
                                       "origin": "mutation"}) + "\n"
                           for h, r, v, t in rows))
    done = CliRunner().invoke(main, ["plot", "finalists", str(log), "--out",
                                     str(tmp_path / "g.png"), "--json"])
    assert done.exit_code == 0, done.output
    (run,) = json.loads(done.output)["runs"]
    assert [f["hash"] for f in run["finalists"]] == ["B", "A", "C"]
    assert run["tau"] == pytest.approx([1 / 3, 1.0, 1.0])  # A-B discordant at rung 0 only
    ranks = finalist_ranks([run]).pivot(index="name", columns="rung", values="rank")
    assert ranks.to_dict("list") == {0: [1, 2, 3], 1: [2, 1, 3], 2: [2, 1, 3]}
    proxy = tmp_path / "proxy-evaluations.jsonl"  # one rung: no finalists
    proxy.write_text("".join(json.dumps({"status": "ok", "val_ppl": v, "hash": h}) + "\n"
                             for h, v in (("a", 300.0), ("b", 200.0))))
    bad = CliRunner().invoke(main, ["plot", "finalists", str(proxy), "--out",
                                    str(tmp_path / "h.png")])
    assert bad.exit_code == 2 and "no search has a finalist yet" in bad.output


def test_the_report_reads_a_ladder_run(reference, tmp_path):
    """The page of a ladder search: rung runs labelled by their tokens, per-rung bests, and
    the cells ranked by the highest rung reached, then by the perplexity there."""
    tmp, _, _, result = reference
    out = tmp_path / "report"
    done = CliRunner().invoke(main, ["report", "--zoo", str(tmp / "ref.h5"), "--run-dir",
                                     str(tmp / "ref"), "--out", str(out), "--tokens", "100",
                                     "--no-cache"])
    assert done.exit_code == 0, done.output
    page = Page((out / "index.html").read_text())
    log = [json.loads(line) for line in (tmp / "ref" / "evaluations.jsonl").read_text()
           .splitlines()]
    with Zoo.open(tmp / "ref.h5", "r") as zoo:
        full = zoo.run(log[0]["run_id"]).config["schedule_tokens"]
    trainings = [r[0] for r in page.tables["zoo-configs"][1:]]
    for tokens in (9000, 18000, 36000):
        assert any(f"{tokens:,} of {full:,} tokens (synthetic-small" in t for t in trainings)
    assert not any("epochs" in t for t in trainings)  # no rung run passes for a full run

    rows = page.tables["progress-table"][1:]
    for rung in (0, 1, 2):
        row = next(r for r in rows if r[2].startswith(f"{rung} ("))
        at = [r for r in log if r["rung"] == rung]
        assert row[3] == str(len(at))
        assert row[6] == f"{min(r['val_ppl'] for r in at if r['status'] == 'ok'):,.2f}"
        assert row[10:] == [str(6 // 2 ** rung), "0.00"]  # the forecast: a finished search
    assert next(r for r in rows if r[2] == "all rungs")[10:] == ["10", "0.00"]
    assert (out / "img" / "finalists.png").stat().st_size > 0  # the top rung's cell
    assert "ranked among themselves at every rung" in (out / "index.html").read_text()

    header, *cells = page.tables["best-cells"]
    assert header[5:8] == ["rung 0 val ppl (9,000 tokens)", "rung 1 val ppl (18,000 tokens)",
                           "rung 2 val ppl (36,000 tokens)"]
    last = {}  # each cell's result at the highest rung it reached (the log is in order)
    for r in log:
        last[r["hash"]] = (-r["rung"], r["val_ppl"]) if r["status"] == "ok" else (1, math.inf)
    assert [next(h for h in last if h[:8] in row[1]) for row in cells] == sorted(last,
                                                                            key=last.get)
    for row in cells:
        cell = next(h for h in last if h[:8] in row[1])
        for rung in (0, 1, 2):
            at = [r for r in log if r["hash"] == cell and r["rung"] == rung]
            assert row[5 + rung] == (f"{at[0]['val_ppl']:,.2f}" if at else "–")
    saved = pd.read_csv(out / "best_cells.csv")
    mine = saved[saved["role"] == "rung"]  # every rung run of the 6 cells, with its rung
    assert dict(zip(mine["run_id"], mine["rung"], strict=True)) == {r["run_id"]: r["rung"]
                                                                    for r in log}


def test_the_progress_table_forecasts_the_rungs_not_reached_yet(reference):
    """The search as it stood before its first promotion: rungs 1 and 2 have rows with the
    trainings ASHA will give them and no hours forecast yet (no promotion to measure)."""
    from cellzoo.report.progress import _ladder_progress_table

    tmp = reference[0]
    frame = progress_frame([tmp / "ref"])
    early = frame[frame["rung"] == 0]
    label = early["run"].iloc[0]
    page = Page(_ladder_progress_table(early, {label: [9000, 18000, 36000]}, {label: (6, 2)}))
    rows = {r[2]: r for r in page.tables["progress-table"][1:]}
    assert rows["0 (9,000 tokens)"][3] == "6" and rows["0 (9,000 tokens)"][10:] == ["6", "0.00"]
    assert rows["1 (18,000 tokens)"][3:6] == ["0", "0", "0.00"]
    assert rows["1 (18,000 tokens)"][10:] == ["3", "–"]
    assert rows["2 (36,000 tokens)"][10:] == ["1", "–"]
    assert rows["all rungs"][10:] == ["10", "–"]


def test_killed_after_a_promotion_result_then_resumed(reference):
    tmp, toml, _, expected = reference
    zoo, run_dir = tmp / "a.h5", tmp / "a"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_PROMOTION, str(toml), str(zoo),
                             str(run_dir)], env=env(), timeout=600)
    assert killed.returncode == -signal.SIGKILL
    state = json.loads((run_dir / "checkpoint.json").read_text())
    (job,) = state["in_flight"]  # the promotion is in the zoo, the checkpoint has it running
    assert job["rung"] == 1 and job["lr"] is not None
    with Zoo.open(zoo, "r") as z:
        assert len(z) == state["counters"]["trained"] + 1
    resumed = run_evolve(toml, zoo, run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(zoo, run_dir) == expected
    # the promotion's log line went with the kill: no rung-1 cost to forecast from yet
    assert "no forecast of the hours to go before the first promotion" in resumed.stderr


def test_a_failed_promotion_trains_again_on_resume(reference):
    """A promotion that failed (here: its branch checkpoint unreadable) is resubmitted on
    resume, and the cell gets the rung result it would have had."""
    tmp, toml, _, expected = reference
    cell, value = next((r["hash"], r["val_ppl"]) for r in expected["log"] if r["rung"] == 2)
    zoo, run_dir = tmp / "f.h5", tmp / "f"
    first = subprocess.run([sys.executable, "-c", CORRUPT_BRANCH, str(toml), str(zoo),
                            str(run_dir), cell], env=env(), capture_output=True, text=True,
                           timeout=600)
    assert first.returncode == 0, first.stderr
    failed = [r for r in RunDir(run_dir).evaluations() if r["status"] == "failed"]
    assert [(r["hash"], r["rung"]) for r in failed] == [(cell, 2)]
    with Zoo.open(zoo, "r") as z:
        assert "not a readable cellzoo checkpoint" in z.run(failed[0]["run_id"]).error
    (branch,) = (run_dir / "cells" / cell).glob("rung1-*/branch.pt")  # kept for the retry
    branch.unlink()  # the broken file goes: the retry trains rung 2 from scratch
    resumed = run_evolve(toml, zoo, run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    log = RunDir(run_dir).evaluations()
    retried = [r for r in log if (r["hash"], r["rung"]) == (cell, 2)]
    assert [r["status"] for r in retried] == ["failed", "ok"]
    assert retried[1]["val_ppl"] == value  # the result of the uninterrupted search
    state = RunDir(run_dir).state()
    assert state["ladder"]["asha"]["results"][2][cell] == value and not state["in_flight"]
    again = run_evolve(toml, zoo, run_dir, "--resume")
    assert again.returncode == 0 and len(RunDir(run_dir).evaluations()) == len(log)


def test_killed_at_random_moments_twice_then_rerun(reference):
    tmp, toml, _, expected = reference
    zoo, run_dir = tmp / "b.h5", tmp / "b"
    log = run_dir / "evaluations.jsonl"
    for lines in (2, 5):
        kill_when_logged(evolve_cmd(toml, zoo, run_dir), log, lines)
    rerun = run_evolve(toml, zoo, run_dir)
    assert rerun.returncode == 0, rerun.stderr
    assert outcome(zoo, run_dir) == expected


def test_the_process_executor_gives_the_inline_results(reference):
    """Ladder jobs are plain data: a spawned worker (one torch thread, as inline) trains
    them to the same bits."""
    tmp, toml, _, expected = reference
    zoo, run_dir = tmp / "p.h5", tmp / "p"
    config = resolve(load_toml(toml), {"zoo": str(zoo), "executor": "process"})
    Search(config, run_dir, executor=ProcessExecutor(1, threads_per_worker=1)).run()
    assert outcome(zoo, run_dir) == expected


# ---- bad input: exit code 2, nothing written ---------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--eta", "1"], "eta must be an integer of at least 2"),
    (["--rungs", "12"], "rungs do not grow"),
    (["--top-tokens", "1000000000"], "exceeds the preset"),
    (["--hidden", "16"], "hidden cannot be set for a ladder search"),
    (["--ladder", "zaremba-small"], "task 'synthetic' differs from the ladder preset"),
    (["--ladder", "huge"], "unknown preset 'huge'"),
])
def test_bad_ladders_exit_2_and_write_nothing(reference, tmp_path, args, message):
    _, toml, _, _ = reference
    zoo, run_dir = tmp_path / "z.h5", tmp_path / "run"
    done = CliRunner().invoke(main, ["evolve", "--config", str(toml), "--zoo", str(zoo),
                                     "--run-dir", str(run_dir), "--task", "synthetic", *args])
    assert done.exit_code == 2, done.output
    assert message in done.output
    assert isinstance(done.exception, SystemExit)  # a message, not a traceback
    assert not zoo.exists() and not run_dir.exists()


def test_eta_without_a_ladder_is_refused(tmp_path):
    done = CliRunner().invoke(main, ["evolve", "--zoo", str(tmp_path / "z.h5"), "--run-dir",
                                     str(tmp_path / "run"), "--eta", "3"])
    assert done.exit_code == 2 and "a ladder needs its preset" in done.output
    assert not (tmp_path / "run").exists()


def test_a_resume_with_another_ladder_exits_2_and_changes_nothing(reference):
    tmp, toml, _, _ = reference
    before = {p.name: p.read_bytes() for p in (tmp / "ref").iterdir() if p.is_file()}
    for args in (["--eta", "3"], ["--rungs", "2"], ["--resume", "--top-tokens", "18000"]):
        done = CliRunner().invoke(main, ["evolve", "--config", str(toml), "--zoo",
                                         str(tmp / "ref.h5"), "--run-dir", str(tmp / "ref"),
                                         *args])
        assert done.exit_code == 2, done.output
        assert "ladder (stored" in done.output
    assert {p.name: p.read_bytes() for p in (tmp / "ref").iterdir() if p.is_file()} == before


# ---- configuration and fitness (no training) ---------------------------------------------


def test_the_ptb_ladder_configs_load_and_share_their_ladder(shared_data):
    configs = {}
    for name in ("ptb-ladder", "ptb-ladder-random"):
        path = Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml"
        config = resolve(load_toml(path), {"zoo": "z.h5", "data_dir": str(shared_data)})
        assert config.task == "ptb" and config.ladder["preset"] == "zaremba-small"
        assert config.ladder["probe"] == [1.0, 0.5, 0.25, 0.125]
        assert config.dedup == "structure"  # as the arms ran (a rebuild must not diverge)
        assert config.train_config().key() == config.make_ladder().base.key()
        assert for_resume(config, load_toml(path), {"evaluations": 400}).evaluations == 400
        configs[name] = config
    search, baseline = configs.values()
    assert search.ladder == baseline.ladder and search.evaluations == baseline.evaluations
    assert (search.ops, search.seed) == (baseline.ops, baseline.seed)
    assert baseline.strategy == "random" and not (baseline.ranker or baseline.controller)


def test_ladder_tables_are_checked():
    with pytest.raises(ConfigError, match=r"unknown ladder settings \['grace'\]"):
        SearchConfig(ladder={"preset": "synthetic-small", "grace": 1})
    with pytest.raises(ConfigError, match="probe must be a list"):
        SearchConfig(ladder={"preset": "synthetic-small", "probe": [2.0]})
    with pytest.raises(ConfigError, match="largest first"):
        SearchConfig(ladder={"preset": "synthetic-small", "probe": [0.5, 1.0]})
    with pytest.raises(ConfigError, match="budget_tokens, train cannot be set"):
        SearchConfig(ladder={"preset": "synthetic-small"}, budget_tokens=100,
                     train={"hidden": 4})
    config = resolve({}, {"ladder": {"preset": "synthetic-small", "eta": 2}})
    assert config.ladder["eta"] == 2 and config.ladder["reference"] == "LSTM"
    with pytest.raises(ConfigError, match="only evaluations"):
        for_resume(config, {}, {"ladder": {"eta": 3}})
    assert config.ladder["schedule"] == "prefix"
    with pytest.raises(ConfigError, match="only evaluations"):
        for_resume(config, {}, {"ladder": {"schedule": "compressed"}})
    with pytest.raises(ConfigError, match="schedule must be one of"):
        SearchConfig(ladder={"preset": "synthetic-small", "schedule": "cosine"})
    compressed = resolve({}, {"ladder": {"preset": "synthetic-small",
                                         "schedule": "compressed"}})
    assert compressed.make_ladder().schedule == "compressed"


def test_a_higher_rung_ranks_above_any_lower_one_and_diverged_below_all():
    low = Member("a", "x", "ok", 5.0, 0, "random", 0)
    high = Member("b", "y", "ok", 50.0, 1, "random", 0, rung=2)
    lost = Member("c", "z", "diverged", math.nan, 2, "random", 0, rung=3)
    assert high.rank > low.rank > lost.rank
    strategy = MuPlusLambda(2, 2)
    for m in (low, high, lost):
        strategy.add(m)
    strategy.promote(Member("a", "x", "ok", 40.0, 7, "random", 0, rung=3))
    strategy.end_generation()
    assert [(m.hash, m.rung, m.val_ppl, m.born) for m in strategy.members] == [
        ("a", 3, 40.0, 0), ("b", 2, 50.0, 1)]


def test_a_cell_no_probe_rate_passes_competes_and_one_that_always_diverges_does_not(tmp_path):
    config = resolve({}, {"ladder": tomllib.loads(TOML)["ladder"]})
    climb = Climb(config, load_corpus("synthetic"), RunDir(tmp_path))
    relu = canonical_text(parse_cell(LIBRARY["ReLU-RNN"].expr))
    jobs = [climb.job(i, expr, {"origin": "random", "generation": 0})
            for i, expr in enumerate((relu, "Add(MM(x), MM(h))"))]
    results = [run_job(job) for job in jobs]
    for job, result in zip(jobs, results, strict=True):
        climb.record(job, result)
    learns, lost = results  # the ReLU-RNN stays at the unigram level at 9,000 tokens
    assert learns.status == "ok" and learns.error.startswith("no rate passed the probe: lr 1:")
    assert lost.status == "diverged" and lost.error.startswith("no rate passed the probe")
    assert climb.asha.results[0] == {jobs[0].hash: learns.val_ppl, jobs[1].hash: None}
    promoted = climb.promotion(2)  # the best half of rung 0: the ReLU-RNN, at its rate
    assert (promoted.hash, promoted.rung, promoted.lr) == (jobs[0].hash, 1, learns.config.lr)
    assert climb.promotion(3) is None


def test_a_promotion_the_zoo_already_holds_is_taken_untrained(reference, tmp_path):
    """A full run of a cell at its probed rate, stored in the search's zoo with points at the
    rung budgets (`cellzoo train --eval-at`), serves that cell's promotions: the results the
    reference search trained, read from that run, and fewer trainings."""
    _, toml, _, result = reference
    top = next(r for r in result["log"] if r["rung"] == 2)
    ladder = resolve(load_toml(toml), {}).make_ladder()
    configs = ladder.configs(top["expr"], load_corpus("synthetic"), top["lr"])
    zoo = tmp_path / "seeded.h5"
    with Zoo.open(zoo, "a") as z:  # as `cellzoo train CELL --preset ... --eval-at B0,B1 --zoo`
        stored = z.add_run(train_cell(top["expr"], configs[-1].replace(
            eval_at=[c.budget_tokens for c in configs[:-1]])))
    done = run_evolve(toml, zoo, tmp_path / "run", "--json")
    assert done.returncode == 0, done.stderr
    again = outcome(zoo, tmp_path / "run")

    def results(log: list[dict]) -> list[tuple]:
        return [(r["hash"], r["rung"], r["status"], r["val_ppl"]) for r in log]

    assert results(again["log"]) == results(result["log"])
    log = [json.loads(line) for line in (tmp_path / "run" / "evaluations.jsonl").read_text()
           .splitlines()]
    taken = [r for r in log if r["hash"] == top["hash"] and r["rung"] > 0]
    assert [r["rung"] for r in taken] == [1, 2]
    assert all(r["reused"] and r["run_id"] == stored and r["seconds"] == 0 for r in taken)
    assert again["counters"]["trained"] == result["counters"]["trained"] - 2
    assert again["asha"] == result["asha"]
