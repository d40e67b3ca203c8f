"""Rebuilding a lost ladder search from its evaluations log (`cellzoo evolve --restore`): the
rebuilt search makes the same choices (breeding, ASHA, the ranker's pre-filter, the
controller) and ends like the original, taking each logged result instead of training it,
also where its own pre-filter and controller would choose otherwise;
from a log cut short it trains on and still ends like the original; a failed promotion is
trained again; a search that leaves its log stops there; a search whose
workers trained side by side is rebuilt in the order its results came; bad uses are refused
before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import LADDER_TOML, evolve_cmd, kill_when_logged, run_evolve, search_outcome

from cellzoo.analysis.cache import AnalysisError
from cellzoo.analysis.selection import only_task
from cellzoo.cli import main
from cellzoo.evolve.rundir import RunDir
from cellzoo.report.context import resolve_task
from cellzoo.zoo import Zoo

#: two trainings side by side, in a local process pool
TWO_WORKERS = ("--executor", "process", "--workers", "2")

pytestmark = pytest.mark.slow

#: the ladder search with every plug-in: the cold ranker fits after 8 results and filters
#: offspring, the controller proposes a share of them
TOML = "ranker = true\ncontroller = true\ncontroller_share = 0.5\n" + \
    LADDER_TOML.replace("evaluations = 6", "evaluations = 10")


def outcome(zoo: Path, run_dir: Path) -> dict:
    """What a rebuilt search must share with the original: the log (without times, run ids,
    costs and restore marks), the population, ASHA, the ranker's predictions, and the zoo's
    runs (cell, status, perplexities, lineage, configuration key: width, rung and rate)."""
    runs, state, log = search_outcome(zoo, run_dir)
    return {"log": [{k: v for k, v in row.items() if k != "restored"} for row in log],
            "population": state["strategy"]["members"], "asha": state["ladder"]["asha"],
            "ranker": [{k: v for k, v in row.items() if k != "n"}
                       for row in RunDir(run_dir).ranker_log()],
            "runs": [run[:9] for run in runs]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("restore")
    toml = tmp / "search.toml"
    toml.write_text(TOML)
    done = run_evolve(toml, tmp / "ref.h5", tmp / "ref")
    assert done.returncode == 0, done.stderr
    return tmp, toml, outcome(tmp / "ref.h5", tmp / "ref")


def rebuild(tmp: Path, toml: Path, name: str, log: Path, *extra: str):
    return run_evolve(toml, tmp / f"{name}.h5", tmp / name, "--restore", str(log), *extra)


def write_log(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_whole_log_rebuilds_the_search_without_training(reference):
    tmp, toml, expected = reference
    assert expected["ranker"] and any(r[5] == "controller" for r in expected["runs"])
    assert max(row["rung"] for row in expected["log"]) == 2
    done = rebuild(tmp, toml, "all", tmp / "ref" / "evaluations.jsonl", "--json")
    assert done.returncode == 0, done.stderr
    log = RunDir(tmp / "all").evaluations()
    assert f"{len(log)} results to take from" in done.stderr
    assert json.loads(done.stdout)["restored"] == len(log)
    assert outcome(tmp / "all.h5", tmp / "all") == expected
    original = RunDir(tmp / "ref").evaluations()
    assert all(row["restored"] for row in log)
    assert [row["seconds"] for row in log] == [row["seconds"] for row in original]
    assert not (tmp / "all" / "cells").exists()  # nothing trained: no rung checkpoints
    with Zoo.open(tmp / "all.h5", "r") as zoo:
        for run in zoo.runs():
            assert not run.has_weights
            assert f"restored from {tmp / 'all' / 'restore.jsonl'} (row n=" in run.error
        with Zoo.open(tmp / "ref.h5", "r") as ref:  # the width each rung trained at
            assert [r.params for r in zoo.runs()] == [r.params for r in ref.runs()]
        assert resolve_task(zoo, [], None) == "synthetic"  # the report's cells table ranks them
        with pytest.raises(AnalysisError, match="no ok run with weights"):
            only_task(zoo, "synthetic")  # what runs cells needs weights


def test_a_log_cut_short_is_restored_then_the_search_trains_on(reference):
    tmp, toml, expected = reference
    original = RunDir(tmp / "ref").evaluations()
    cut = next(i for i, row in enumerate(original) if row["rung"] == 1) + 2
    done = rebuild(tmp, toml, "cut", write_log(tmp / "cut.jsonl", original[:cut]))
    assert done.returncode == 0, done.stderr
    log = RunDir(tmp / "cut").evaluations()
    assert [bool(row.get("restored")) for row in log] == [i < cut for i in range(len(log))]
    assert outcome(tmp / "cut.h5", tmp / "cut") == expected
    assert (tmp / "cut" / "restore.jsonl").read_text() == (tmp / "cut.jsonl").read_text()
    again = run_evolve(toml, tmp / "cut.h5", tmp / "cut", "--resume")
    assert again.returncode == 0, again.stderr
    assert len(RunDir(tmp / "cut").evaluations()) == len(log)


def test_a_failed_promotion_in_the_log_is_trained_again(reference):
    tmp, toml, expected = reference
    original = RunDir(tmp / "ref").evaluations()
    k = next(i for i, row in enumerate(original) if row["rung"] == 2)
    failed = dict(original[k], status="failed", val_ppl=None)
    done = rebuild(tmp, toml, "failed", write_log(tmp / "failed.jsonl",
                                                  [*original[:k], failed, *original[k + 1:]]))
    assert done.returncode == 0, done.stderr
    log = RunDir(tmp / "failed").evaluations()
    assert [i for i, row in enumerate(log) if not row.get("restored")] == [k]
    assert outcome(tmp / "failed.h5", tmp / "failed") == expected


def test_a_search_whose_own_choices_differ_follows_its_log(reference):
    """Another seed stands for another PyTorch build or device: its controller proposes other
    cells and its pre-filter keeps others (the ranker's predictions differ), yet each round
    trains what the log says it trained, so the rebuild ends like the original, nothing
    trained."""
    tmp, toml, expected = reference
    done = rebuild(tmp, toml, "seed1", tmp / "ref" / "evaluations.jsonl", "--seed", "1")
    assert done.returncode == 0, done.stderr
    assert all(row["restored"] for row in RunDir(tmp / "seed1").evaluations())
    rebuilt = outcome(tmp / "seed1.h5", tmp / "seed1")
    assert rebuilt["ranker"] != expected["ranker"]  # its own pre-filter chose otherwise
    assert {**rebuilt, "ranker": None} == {**expected, "ranker": None}
    # and its ranker log still predicts every cell the pre-filter stood before
    cells = [(row["round"], row["rung"], row["hash"]) for row in expected["ranker"]]
    assert [(row["round"], row["rung"], row["hash"]) for row in rebuilt["ranker"]] == cells


@pytest.mark.parametrize("workers", [(), TWO_WORKERS], ids=["as-logged", "more-workers"])
def test_a_search_that_leaves_its_log_stops_before_training(reference, workers):
    """A log without one of the search's promotions (as another ladder's log would be): the
    rebuild takes what the log holds up to that promotion and stops there, also with more
    workers than the log's one (which had no job in flight without a row when it ended);
    deleting restore.jsonl, as the error says, lets it train on."""
    tmp, toml, _ = reference
    original = RunDir(tmp / "ref").evaluations()
    k = next(i for i, row in enumerate(original) if row["rung"] == 1)
    log = write_log(tmp / "gap.jsonl", [*original[:k], *original[k + 1:]])
    name = f"gap-{len(workers)}"
    done = rebuild(tmp, toml, name, log, *workers)
    assert done.returncode == 2, done.stderr
    assert f"has left its log {tmp / name / 'restore.jsonl'}" in done.stderr
    assert f"cell {original[k]['hash'][:8]} at rung 1" in done.stderr
    taken = RunDir(tmp / name).evaluations()
    assert taken and all(row["restored"] for row in taken)  # nothing was trained
    assert f"while {len(original) - 1 - len(taken)} of its {len(original) - 1} results" \
        in done.stderr
    (tmp / name / "restore.jsonl").unlink()
    again = run_evolve(toml, tmp / f"{name}.h5", tmp / name, "--resume")
    assert again.returncode == 0, again.stderr
    assert any(not row.get("restored") for row in RunDir(tmp / name).evaluations())


def how_it_ran(run_dir: Path) -> list[tuple]:
    """Each row's cell, rung, workers, wave and device: the order a rebuild replays, and where
    the run that wrote the row trained it."""
    return [(row["hash"], row["rung"], row["slots"], row["wave"], row["device"])
            for row in RunDir(run_dir).evaluations()]


def test_a_two_worker_search_is_rebuilt_in_the_order_its_results_came(reference):
    """Two workers train side by side, so the search breeds and promotes while a job is in
    flight: the rebuild holds each restored job in flight until the log's order completes
    it (taken at once, the later choices would see results the search had not yet had)."""
    tmp, toml, _ = reference
    done = run_evolve(toml, tmp / "two.h5", tmp / "two", *TWO_WORKERS)
    assert done.returncode == 0, done.stderr
    ran = how_it_ran(tmp / "two")
    assert {slots for _, _, slots, _, _ in ran} == {2}
    assert {device for *_, device in ran} == {"cpu"}
    again = rebuild(tmp, toml, "two-again", tmp / "two" / "evaluations.jsonl", *TWO_WORKERS)
    assert again.returncode == 0, again.stderr
    assert outcome(tmp / "two-again.h5", tmp / "two-again") == outcome(tmp / "two.h5", tmp / "two")
    assert how_it_ran(tmp / "two-again") == ran
    assert all(row["restored"] for row in RunDir(tmp / "two-again").evaluations())


def test_a_search_resumed_with_a_second_worker_is_rebuilt(reference):
    """One worker, killed, resumed with two: the rows say how many workers wrote them, and
    the rebuild keeps as many jobs in flight as the run did at each point."""
    tmp, toml, _ = reference
    kill_when_logged(evolve_cmd(toml, tmp / "grew.h5", tmp / "grew"),
                     tmp / "grew" / "evaluations.jsonl", 7)
    resumed = run_evolve(toml, tmp / "grew.h5", tmp / "grew", "--resume", *TWO_WORKERS)
    assert resumed.returncode == 0, resumed.stderr
    ran = how_it_ran(tmp / "grew")
    slots = [slots for _, _, slots, _, _ in ran]
    assert slots == sorted(slots) and slots[0] == 1 and slots[-1] == 2
    again = rebuild(tmp, toml, "grew-again", tmp / "grew" / "evaluations.jsonl")
    assert again.returncode == 0, again.stderr
    assert outcome(tmp / "grew-again.h5", tmp / "grew-again") == \
        outcome(tmp / "grew.h5", tmp / "grew")
    assert how_it_ran(tmp / "grew-again") == ran


def test_a_search_moved_with_its_files_and_a_weightless_zoo_ends_like_the_original(
        reference):
    """Moving a search to another machine (docs/search.md): its run directory without the
    branch checkpoints under cells/, and its zoo as a weightless copy, at the same paths;
    --resume replays nothing and ends where the uninterrupted search did (the jobs in flight
    train again from scratch)."""
    tmp, toml, expected = reference
    zoo, run_dir = tmp / "moved.h5", tmp / "moved"
    kill_when_logged(evolve_cmd(toml, zoo, run_dir), run_dir / "evaluations.jsonl", 9)
    assert (run_dir / "cells").is_dir()
    (tmp / "move").mkdir()
    done = CliRunner().invoke(main, ["zoo", "import", "--without-weights",
                                     str(tmp / "move" / zoo.name), str(zoo)])
    assert done.exit_code == 0, done.output
    for path in [*tmp.glob(f"{zoo.name}*"), run_dir / "cells"]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (tmp / "move" / zoo.name).rename(zoo)
    with Zoo.open(zoo) as light:
        assert len(light) and not any(run.has_weights for run in light.runs())
    resumed = run_evolve(toml, zoo, run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert outcome(zoo, run_dir) == expected


def test_restore_refuses_a_run_dir_with_a_search_and_a_search_without_a_ladder(reference):
    tmp, toml, _ = reference
    before = {p.name: p.read_bytes() for p in (tmp / "ref").iterdir() if p.is_file()}
    log = str(tmp / "ref" / "evaluations.jsonl")
    done = CliRunner().invoke(main, ["evolve", "--config", str(toml), "--zoo",
                                     str(tmp / "ref.h5"), "--run-dir", str(tmp / "ref"),
                                     "--restore", log])
    assert done.exit_code == 2 and "--restore starts a new search" in done.output
    assert {p.name: p.read_bytes() for p in (tmp / "ref").iterdir() if p.is_file()} == before
    plain = CliRunner().invoke(main, ["evolve", "--zoo", str(tmp / "p.h5"), "--run-dir",
                                      str(tmp / "plain"), "--restore", log])
    assert plain.exit_code == 2 and "this search has no ladder" in plain.output
    assert not (tmp / "plain").exists()


def test_a_log_that_is_not_a_ladder_search_s_is_refused_with_its_line(reference, tmp_path):
    tmp, toml, _ = reference
    rows = RunDir(tmp / "ref").evaluations()[:3]
    del rows[2]["lr"]
    bad = write_log(tmp_path / "bad.jsonl", rows)
    done = CliRunner().invoke(main, ["evolve", "--config", str(toml), "--zoo",
                                     str(tmp_path / "z.h5"), "--run-dir", str(tmp_path / "run"),
                                     "--restore", str(bad)])
    assert done.exit_code == 2, done.output
    assert f"cannot restore from {bad}: line 3 has no lr" in done.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "z.h5").exists()


def test_a_log_of_another_ladder_is_refused_at_its_first_row(reference):
    """Each row names its rung's budget: a rebuild under another ladder (a lower top rung,
    so every rung smaller) stops at the first result it would take, nothing trained; a log
    written before the column rebuilds as before."""
    tmp, toml, expected = reference
    original = RunDir(tmp / "ref").evaluations()
    done = rebuild(tmp, toml, "other-ladder", tmp / "ref" / "evaluations.jsonl",
                   "--top-tokens", "30000")
    assert done.returncode == 2, done.stderr
    assert ("at rung 0 for 9,000 tokens, and this search's rung 0 is 7,500 tokens; rebuild "
            "with the configuration") in done.stderr
    assert not (tmp / "other-ladder" / "cells").exists()
    older = [{k: v for k, v in row.items() if k != "rung_tokens"} for row in original]
    again = rebuild(tmp, toml, "older", write_log(tmp / "older.jsonl", older))
    assert again.returncode == 0, again.stderr
    assert outcome(tmp / "older.h5", tmp / "older") == expected
