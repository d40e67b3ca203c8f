"""benchmarks/ladder_fidelity.py on the synthetic task: a smoke run that stops and continues."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cellzoo.dsl import canonical_text, parse_cell
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.ladder import Ladder
from cellzoo.train import load_corpus, train_cell
from cellzoo.zoo import Zoo

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ladder_fidelity.py"
TINY = ["--task", "synthetic", "--cells", "3", "--rungs", "2", "--top-tokens", "60000"]


def run(out: Path, *extra: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *TINY, *extra],
                          capture_output=True, text=True, env=os.environ | {"OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ladder_fidelity_runs_breadth_first_and_continues_where_it_stopped(tmp_path):
    first = run(tmp_path, "--max-rung", "0")
    assert first.count("probe ") == 3 and "rung 1 " not in first
    second = run(tmp_path)
    assert "probe " not in second and second.count("rung 1 ") == 3  # ReLU-RNN: none passed
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    kinds = [(r["kind"], r.get("rung")) for r in records]
    assert kinds.count(("probe", None)) == kinds.count(("proxy", None)) == 3
    assert kinds.count(("rung", 0)) == 3 and kinds.count(("rung", 1)) == 3
    relu = next(r for r in records if r["kind"] == "probe" and not r["passed"])
    assert relu["lr"] == 0.125 and all(o["reason"] for o in relu["outcomes"])
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["rung"] for r in rows] == [0, 1, "proxy 20k"]
    assert rows[0]["token_share"] == 1 / 3 and -1 <= rows[0]["tau_top"] <= 1
    assert "| 0 | 20,000 |" in second and "| proxy 20k |" in second
    cells = json.loads((tmp_path / "cells.json").read_text())
    assert sorted(c["cell"] for c in cells) == ["LSTM", "ReLU-RNN", "tanh-RNN"]
    assert all(c["rung 0"] > 0 and c["proxy"] > 0 and c["test"] > 0 for c in cells)
    assert [c["test"] for c in cells] == sorted(c["test"] for c in cells)
    assert "| cell | lr | rung 0 | proxy | test |" in second
    third = run(tmp_path)  # all finished: read back, nothing trained
    assert "rung 1 " not in third and third.split("| rung")[1] == second.split("| rung")[1]


def test_an_older_probe_record_without_a_rate_gets_one_from_its_stored_outcomes(tmp_path):
    run(tmp_path, "--max-rung", "0", "--no-proxy")
    path = tmp_path / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    relu = next(r for r in records if r["kind"] == "probe" and not r["passed"])
    # as an older benchmark wrote it: no rate, no "passed"; the stored outcomes (here made
    # to favour rate 0.5) decide the rate, the probe is not run again
    del relu["passed"]
    relu["lr"] = None
    next(o for o in relu["outcomes"] if o["lr"] == 0.5)["val_ppl"] = 10.0
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = run(tmp_path, "--no-proxy")
    assert "probe " not in out and f"rate {relu['hash']}: lr 0.5 from" in out
    records = [json.loads(line) for line in path.read_text().splitlines()]
    mine = [r for r in records if r["hash"] == relu["hash"]]
    assert [(r["kind"], r.get("rung"), r["lr"]) for r in mine[-3:]] == [
        ("rung", 0, 0.5), ("probe", None, 0.5), ("rung", 1, 0.5)]
    assert mine[-1]["result"]["status"] == "ok" and mine[-3]["result"]["val_ppl"] > 15


def test_a_rung_run_stored_in_a_zoo_is_taken_from_there_not_trained(tmp_path):
    run(tmp_path, "--max-rung", "0", "--no-proxy")
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    probe = next(r for r in records if r["kind"] == "probe" and r["passed"])
    ladder = Ladder("synthetic-small", rungs=2, top_tokens=60000)
    config = ladder.configs(probe["expr"], load_corpus("synthetic"), probe["lr"])[1]
    with Zoo.open(tmp_path / "full.h5", "a") as zoo:  # as `cellzoo train --zoo` stores it
        zoo.add_run(train_cell(probe["expr"], config))
    out = run(tmp_path, "--max-rung", "0", "--no-proxy", "--zoo", str(tmp_path / "full.h5"))
    assert out.count("rung 1 ") == 1 and f"rung 1 {probe['hash']}: val" in out
    assert "full.h5" in out  # the one stored run; no other cell trained above --max-rung
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["rung"], r["cells"]) for r in rows] == [(0, 3), (1, 1)]


def test_a_probe_of_the_older_rule_is_probed_again_and_keeps_its_runs_if_its_rate_holds(
        tmp_path):
    run(tmp_path, "--no-proxy")
    path = tmp_path / "results.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    lstm = next(r for r in records if r["kind"] == "probe" and r["expr"].startswith("Mult("))
    assert lstm["lr"] == 1.0 and [o["lr"] for o in lstm["outcomes"]] == [1.0, 0.5]
    lstm["outcomes"] = lstm["outcomes"][:1]  # as the older rule stopped: at the first pass
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = run(tmp_path, "--no-proxy")
    assert out.count("probe ") == 1 and f"probe {lstm['hash']}: lr 1.0" in out
    assert "rung 1 " not in out  # same rate: its rung-1 run still counts
    again = [json.loads(line) for line in path.read_text().splitlines()][-1]
    assert again["kind"] == "probe" and len(again["outcomes"]) == 2


def test_cells_given_with_cell_join_the_table(tmp_path):
    gru = canonical_text(parse_cell(LIBRARY["GRU"].expr))
    out = run(tmp_path, "--max-rung", "0", "--no-proxy", "--cell", "GRU", "--cell", "GRU")
    assert out.count("probe ") == 4 and gru in out  # 3 cells, then the GRU once
    bad = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "bad"), *TINY,
                          "--cell", "Tanh(MM(x)"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--cell:" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_a_journal_of_another_ladder_is_refused(tmp_path):
    (tmp_path / "results.jsonl").write_text("")  # a journal older than ladder.json: compressed
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), *TINY],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert ("holds the journal of another ladder (schedule 'compressed' there, 'prefix' here)"
            in done.stderr)
    assert not (tmp_path / "ladder.json").exists()


def test_prefix_rungs_are_read_from_a_full_runs_curve_points(tmp_path):
    prefix = ["--schedule", "prefix", "--rungs", "3", "--no-proxy"]
    run(tmp_path, "--max-rung", "0", *prefix)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    probe = next(r for r in records if r["kind"] == "probe" and r["passed"])
    ladder = Ladder("synthetic-small", rungs=3, top_tokens=60000, schedule="prefix")
    configs = ladder.configs(probe["expr"], load_corpus("synthetic"), probe["lr"])
    budgets = [c.budget_tokens for c in configs[:-1]]
    with Zoo.open(tmp_path / "full.h5", "a") as zoo:  # `cellzoo train ... --eval-at B0,B1`
        zoo.add_run(train_cell(probe["expr"], configs[-1].replace(eval_at=budgets)))
    out = run(tmp_path, "--max-rung", "0", *prefix, "--zoo", str(tmp_path / "full.h5"))
    assert f"rung 1 {probe['hash']}: val" in out and "learning curve of the full run" in out
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    rung1 = next(r for r in records if r["kind"] == "rung" and r["rung"] == 1)
    assert rung1["curve_point"] and rung1["hash"] == probe["hash"]
    assert rung1["result"]["val_ppl"] == train_cell(probe["expr"], configs[1]).val_ppl
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["rung"], r["cells"]) for r in rows] == [(0, 3), (1, 1), (2, 1)]
    # --points reads more prefixes off the same curve: here rung 1's budget, as a point
    run(tmp_path, "--max-rung", "0", *prefix, "--zoo", str(tmp_path / "full.h5"), "--points",
        str(budgets[1]))
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert rows[-1]["rung"] == f"point {budgets[1]:,}" and rows[-1]["cells"] == 1
    for bad, words in ((["--points", "10,x"], "expected whole numbers"),
                       (["--points", "10", "--schedule", "compressed"], "needs --schedule prefix")):
        done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "bad"),
                               *TINY, "--zoo", str(tmp_path / "full.h5"), *bad],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and words in done.stderr


def test_a_searchs_stored_probe_is_taken_instead_of_probing(tmp_path):
    ladder = Ladder("synthetic-small", rungs=2, top_tokens=60000)
    lstm = canonical_text(parse_cell(LIBRARY["LSTM"].expr))
    config = ladder.configs(lstm, load_corpus("synthetic"), 0.5)[0]
    with Zoo.open(tmp_path / "search.h5", "a") as zoo:  # as a ladder search stores rung 0
        stored = zoo.add_run(train_cell(lstm, config),
                             lineage={"origin": "library", "search_id": "s1"})
    out = run(tmp_path / "out", "--max-rung", "0", "--no-proxy", "--zoo",
              str(tmp_path / "search.h5"))
    assert out.count("probe ") == 3 and out.count("from the search in") == 1
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text()
               .splitlines()]
    probe = next(r for r in records if r["kind"] == "probe" and r["expr"] == lstm)
    assert (probe["lr"], probe["passed"], probe["run_id"]) == (0.5, True, stored)
    assert run(tmp_path / "out", "--max-rung", "0", "--no-proxy").count("probe ") == 0


def test_a_cell_no_rate_trains_is_counted_apart_not_in_tau(tmp_path):
    """A division by zero diverges at every rate: every rung would rank it last, in
    agreement with the full run for free, so it stays out of the correlations."""
    out = run(tmp_path, "--no-proxy", "--cell", "Div(MM(x), Sub(h, h))")
    assert "lr None (passed: False)" in out
    assert "1 of 4 cells diverged or failed at every probed rate" in out
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [(r["rung"], r["cells"], r["n_top"]) for r in rows] == [(0, 3, 3), (1, 3, 3)]
