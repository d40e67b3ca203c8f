"""`cellzoo report` on a real tiny synthetic search: a ranker-filtered aging search, a random
search into the same zoo, and one longer training of the search's best cell; training
labels; and two ladder searches of made-up results (progress per arm and rung, best cells).
The report of a real ladder search is tested in test_evolve_ladder_search.py."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import Page

from cellzoo.analysis import ensemble as ens
from cellzoo.cli import main
from cellzoo.dsl.library import LIBRARY
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.ladder import Ladder
from cellzoo.evolve.progress import best_curves, draw_progress, progress_frame
from cellzoo.evolve.rundir import RunDir
from cellzoo.report.context import Options
from cellzoo.report.page import write_report
from cellzoo.train import TrainConfig, TrainResult, load_corpus
from cellzoo.train.model import build_model, count_params
from cellzoo.zoo import Run, Zoo

TINY = ["--task", "synthetic", "--hidden", "8", "--budget-tokens", "2000", "--population", "4",
        "--sample", "2"]


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The zoo, two run directories and the report written from them."""
    tmp = tmp_path_factory.mktemp("report")
    zoo = str(tmp / "zoo.h5")
    _invoke(["evolve", *TINY, "--evaluations", "12", "--ranker", "--zoo", zoo,
             "--run-dir", str(tmp / "search"), "--json"])
    _invoke(["evolve", *TINY, "--evaluations", "6", "--strategy", "random", "--no-library",
             "--zoo", zoo, "--run-dir", str(tmp / "random"), "--json"])
    with Zoo.open(zoo) as z:
        best = z.top(1, "synthetic")[0]
    _invoke(["train", best.expr, "--task", "synthetic", "--hidden", "12", "--budget-tokens",
             "3000", "--zoo", zoo, "--json"])
    out = tmp / "page"
    summary = json.loads(_invoke(["report", "--zoo", zoo, "--run-dir", str(tmp / "search"),
                                  "--run-dir", str(tmp / "random"), "--out", str(out),
                                  "--top", "4", "--tokens", "200", "--eval-tokens", "500",
                                  "--no-cache", "--json"]))
    page = Page((out / "index.html").read_text(encoding="utf-8"))
    return {"tmp": tmp, "zoo": zoo, "out": out, "summary": summary, "page": page,
            "trained": best}


def test_every_section_is_there_and_every_reference_resolves(made):
    page, out = made["page"], made["out"]
    assert made["summary"]["unavailable"] == {k: None for k in
                                              ("configs", "progress", "cells", "ranker",
                                               "hidden", "ensemble")}
    assert "script" not in page.tags and "link" not in page.tags  # self-contained
    images = [r for r in page.refs if r.endswith(".png")]
    assert {Path(i).name for i in images} == {"progress.png", "ranker-0.png", "heatmaps.png",
                                               "clustermap.png", "diversity.png"}
    for ref in page.refs:
        assert "://" not in ref, ref
        if ref.startswith("#"):
            assert ref[1:] in page.ids, ref
        else:
            assert (out / ref).is_file() and (out / ref).stat().st_size > 0, ref
    assert sorted(str(out / i) for i in images) == made["summary"]["images"]


def test_configuration_table_shows_each_run(made):
    rows = {r[0]: r[1:] for r in made["page"].tables["search-config"][1:]}
    assert rows["kind of search"] == ["aging+ranker", "random"]
    assert rows["evaluations"] == ["12", "6"]
    assert rows["offspring_factor"][0] != "– (no effect)"  # the first search has a ranker
    for name in ("sample", "crossover_prob", "offspring_factor", "controller_share"):
        assert rows[name][1] == "– (no effect)"  # random search, no ranker, no controller
    train = {r[0]: r[1:] for r in made["page"].tables["train-config"][1:]}
    assert train["hidden"] == ["8", "8"] and train["budget_tokens"] == ["2000", "2000"]


def test_progress_table_counts_the_logged_trainings(made):
    table = made["page"].tables["progress-table"]
    for row, run in zip(table[1:], ("search", "random"), strict=True):
        logged = [json.loads(line) for line in
                  (made["tmp"] / run / "evaluations.jsonl").read_text().splitlines()]
        trained = [r for r in logged if not r["reused"]]
        assert row[0] == run and int(row[2]) == len(trained)
        best = min(r["val_ppl"] for r in trained if r["status"] == "ok")
        assert row[4] == f"{best:,.2f}"


def test_best_cells_table_holds_the_zoo_numbers(made):
    rows = made["page"].tables["best-cells"][1:]
    config = json.loads((made["tmp"] / "search" / "config.json").read_text())
    proxy = SearchConfig.from_dict(config).train_config().key()
    with Zoo.open(made["zoo"]) as zoo:
        best: dict[str, Run] = {}
        for run in zoo.runs("synthetic", "ok"):
            if run.config_key == proxy and (run.hash not in best
                                            or run.val_ppl < best[run.hash].val_ppl):
                best[run.hash] = run
        top = sorted(best.values(), key=lambda r: (r.val_ppl, r.hash))[:10]
        assert len(rows) == len(top)
        for row, run in zip(rows, top, strict=True):
            assert run.hash[:8] in row[1]
            assert row[2] == run.expr
            assert row[3] == f"{run.params:,}"
            assert row[4] == f"{run.val_ppl:,.2f}" and row[5] == f"{run.test_ppl:,.2f}"
            assert run.origin in row[7]
        trained = made["trained"]
        longer = next(r for r in zoo.runs() if r.hash == trained.hash
                      and r.config["hidden"] == 12)
        row = next(r for r in rows if trained.hash[:8] in r[1])
        assert f"{longer.val_ppl:,.2f} / {longer.test_ppl:,.2f}" in row[6]
        assert f"{longer.params:,} params" in row[6]


def test_ensemble_tables_match_the_saved_ensemble(made):
    page, out = made["page"], made["out"]
    with Zoo.open(made["zoo"]) as zoo:
        again = ens.load(zoo, out / "ensemble.json")
    summary = {r[0]: r[1:] for r in page.tables["ensemble-summary"][1:]}
    assert summary["greedy ensemble"] == [f"{again.val_ppl:,.2f}", f"{again.test_ppl:,.2f}"]
    best = next(v for k, v in summary.items() if k.startswith("best member"))
    assert best[1] == f"{again.best_member_test_ppl:,.2f}"
    members = {r[4]: r for r in page.tables["ensemble-members"][1:]}
    assert len(members) == len(again.pool) == 4
    # the same run has other perplexities here than in training: the headers say which
    assert page.tables["ensemble-members"][0][2] == "val ppl (first 500 tokens)"
    assert page.tables["best-cells"][0][4] == "proxy val ppl (as trained)"
    for m in again.pool:
        assert members[m.run_id][3] == f"{m.test_ppl:,.2f}"
        assert members[m.run_id][1].split("/")[0] == str(m.weight)


def test_missing_data_gives_notes_not_failures(made, tmp_path):
    """No run directory, a folder that is not one, and a zoo with a single run."""
    zoo = str(tmp_path / "one.h5")
    _invoke(["train", "tanh-RNN", "--task", "synthetic", "--hidden", "8", "--budget-tokens",
             "1000", "--zoo", zoo, "--json"])
    (tmp_path / "empty").mkdir()
    summary = json.loads(_invoke(["report", "--zoo", zoo, "--run-dir", str(tmp_path / "empty"),
                                  "--out", str(tmp_path / "page"), "--tokens", "100",
                                  "--no-cache", "--json"]))
    reasons = summary["unavailable"]
    assert reasons["configs"] is None and reasons["cells"] is None
    assert "--run-dir" in reasons["progress"]
    assert "ranker" in reasons["ranker"]
    assert "at least 2" in reasons["ensemble"]
    page = Page((tmp_path / "page" / "index.html").read_text(encoding="utf-8"))
    assert len(page.tables["best-cells"]) == 2  # header and the one cell
    assert "clustermap.png" not in " ".join(page.refs)


def test_a_missing_zoo_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["report", "--zoo", str(tmp_path / "missing.h5"),
                                       "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "missing.h5" in result.output


def test_training_labels_name_the_preset_a_retraining_follows():
    from cellzoo.report.labels import config_label
    from cellzoo.train import TrainConfig

    def label(config: TrainConfig) -> str:
        return config_label(SimpleNamespace(task=config.task, config=config.to_dict()))

    small = TrainConfig.preset("zaremba-small")
    assert label(small) == "ptb 2×200, 13 epochs (zaremba-small)"
    retrained = small.replace(hidden=203, lr=0.25)
    assert label(retrained) == "ptb 2×203, 13 epochs (zaremba-small, lr 0.25)"
    assert label(small.replace(seed=1)) == "ptb 2×200, 13 epochs (zaremba-small, seed 1)"
    assert label(TrainConfig.proxy("ptb")) == "ptb 1×128, 200,000 tokens"
    # a ladder rung keeps the preset's 13 epochs: its label names its share of the full run
    rung = small.replace(hidden=222, lr=0.5, budget_tokens=149188, schedule_tokens=12084280)
    assert label(rung) == "ptb 2×222, 149,188 of 12,084,280 tokens (zaremba-small, lr 0.5)"
    compressed = rung.replace(schedule_tokens=149188)
    assert label(compressed) == ("ptb 2×222, 149,188 tokens, compressed schedule "
                                 "(zaremba-small, lr 0.5)")
    ladder = Ladder("synthetic-small", rungs=3, eta=2, top_tokens=36000)
    full = ladder.full_tokens(load_corpus("synthetic"))
    for config, tokens in zip(ladder.configs("LSTM", load_corpus("synthetic"), 0.5),
                              (9000, 18000, 36000), strict=True):
        assert f"{tokens:,} of {full:,} tokens (synthetic-small, lr 0.5)" in label(config)


# ---- two ladder searches from made-up results (no training) ----------------------------

#: (cell, rung, val_ppl or None for diverged, seconds) per training, in order. Cell e's
#: rung-0 result is better than a's and h's rung-1 results, and d diverged at rung 1: the
#: best-cells table ranks by the rung reached first.
EVOLVED = [("a", 0, 20.0, 10), ("b", 0, 15.0, 20), ("b", 1, 12.0, 40), ("c", 0, None, 1),
           ("d", 0, 14.0, 10), ("d", 1, None, 30), ("a", 1, 11.0, 30), ("b", 2, 9.0, 90),
           ("e", 0, 10.0, 10)]
RANDOM = [("f", 0, 30.0, 10), ("g", 0, None, 2), ("h", 0, 16.0, 10), ("h", 1, 14.0, 30),
          ("i", 0, 25.0, 10)]
LOGS = {"evolved": EVOLVED, "random": RANDOM}
#: the ranking that table must show: rung 2, rung 1 and rung 0 by perplexity, then diverged
RANKED = ["b", "a", "h", "e", "i", "f"]
LADDER = {"preset": "synthetic-small", "rungs": 3, "eta": 2, "top_tokens": 36000}
CELLS = dict(zip("abcdefghi", (LIBRARY[name].expr for name in LIBRARY), strict=False))


def _ladder_run_dir(path: Path, strategy: str, log: list[tuple], zoo: Zoo) -> Path:
    """A ladder search's run directory (configuration, checkpoint and log) whose results
    are made up and stored in ``zoo`` as rung runs."""
    files, config = RunDir(path), SearchConfig(strategy=strategy, ladder=LADDER)
    files.write_config(config)
    train = config.train_config()
    files.save_checkpoint(1, {"config_key": train.key(), "train_config": train.to_dict()}, {})
    ladder, corpus = config.make_ladder(), load_corpus("synthetic")
    origin = "mutation" if strategy == "aging" else "random"
    rows = []
    for cell, rung, val, seconds in log:
        status = "ok" if val else "diverged"
        config = ladder.configs(CELLS[cell], corpus, 0.5)[rung]
        model = build_model(CELLS[cell], corpus.vocab_size, config)  # untrained weights
        result = TrainResult(CELLS[cell], "", status, val or math.nan, val or math.nan,
                             count_params(model), 1.0, seconds, 0, [], "cpu", None, config,
                             model.state_dict() if val else None)
        run_id = zoo.add_run(result, {"origin": origin, "generation": 0, "parents": []})
        rows.append({"hash": zoo.run(run_id).hash, "expr": CELLS[cell], "rung": rung,
                     "reused": False, "status": status, "val_ppl": val, "origin": origin,
                     "seconds": seconds, "branch_seconds": 0.0, "lr": 0.5,
                     "run_id": run_id})
    (path / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def ladders(tmp_path_factory):
    """Two ladder searches on one ladder (an evolution and random search), their zoo and
    the report of both."""
    tmp = tmp_path_factory.mktemp("ladders")
    with Zoo.open(tmp / "zoo.h5", "a") as zoo:
        dirs = [_ladder_run_dir(tmp / name, strategy, LOGS[name], zoo)
                for name, strategy in (("evolved", "aging"), ("random", "random"))]
        hashes = {r["expr"]: r["hash"] for d in dirs for r in RunDir(d).evaluations()}
    summary = write_report(tmp / "zoo.h5", dirs, tmp / "page",
                           Options(top=3, tokens=100, eval_tokens=300))
    page = Page((tmp / "page" / "index.html").read_text(encoding="utf-8"))
    return {"tmp": tmp, "dirs": dirs, "summary": summary, "page": page,
            "hash": {cell: hashes[expr] for cell, expr in CELLS.items() if expr in hashes}}


def _best(log: list[tuple], rung: int, cells: int = 10**6) -> float:
    """The best ok val_ppl at ``rung`` among the trainings up to the ``cells``-th rung-0 one
    (counted from the log itself, independently of `progress_frame`)."""
    seen, best = 0, math.inf
    for _, at, val, _ in log:
        seen += at == 0
        if seen > cells:
            break
        if at == rung and val is not None:
            best = min(best, val)
    return best


def test_a_ladder_searchs_progress_has_one_monotone_line_per_arm_and_rung(ladders):
    frame = progress_frame(ladders["dirs"])
    assert list(frame.loc[frame["run"] == "evolved", "cells"]) == [1, 2, 2, 3, 4, 4, 4, 4, 5]
    curves = best_curves(frame)
    series = curves.groupby(["arm", "rung"]).size()
    assert len(series) == 5  # rungs 0, 1, 2 of the search; 0 and 1 of random search
    for (run, rung), part in curves.groupby(["run", "rung"]):
        cells = list(part["cells"])
        assert cells == list(range(cells[0], cells[-1] + 1))  # one point per rung-0 cell
        assert part["best_so_far"].is_monotonic_decreasing
        assert cells[-1] == frame.loc[frame["run"] == run, "cells"].max()
        for n, best in zip(cells, part["best_so_far"], strict=True):
            assert best == _best(LOGS[run], rung, n)
    png = draw_progress(frame, ladders["tmp"] / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    failed = frame.iloc[[-1]].assign(rung=3, val_ppl=math.nan, status="failed",
                                     best_so_far=math.nan)
    same = draw_progress(pd.concat([frame, failed]), ladders["tmp"] / "q.png")
    assert _png_size(same) == _png_size(png)  # no panel for a rung with nothing finished


def _png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[16:24]  # IHDR: width and height, big-endian
    return int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")


def test_a_ladder_searchs_progress_table_compares_within_rungs(ladders):
    page = ladders["page"]
    assert ladders["summary"]["unavailable"]["progress"] is None
    header, *rows = page.tables["progress-table"]
    assert header[2] == "rung" and header[6] == "best val ppl"
    budgets = Ladder(**LADDER).budgets(load_corpus("synthetic"))
    for run, log in LOGS.items():
        mine = [r for r in rows if r[0] == run]
        for rung in sorted({at for _, at, _, _ in log}):
            row = next(r for r in mine if r[2] == f"{rung} ({budgets[rung]:,} tokens)")
            at = [t for t in log if t[1] == rung]
            assert row[3] == str(len(at)) and row[4] == str(sum(v is None for _, _, v, _ in at))
            assert row[6] == f"{_best(log, rung):,.2f}"
            target = _best(RANDOM, rung)  # random's best at the same rung only
            assert row[8] == (f"{target:,.2f}" if math.isfinite(target) else "–")
        total = next(r for r in mine if r[2] == "all rungs")
        assert total[3] == str(len(log))
        assert total[5] == f"{sum(t[3] for t in log) / 3600:,.2f}"
    reach = {r[2]: r[9] for r in rows if r[0] == "evolved"}
    assert reach["0 (9,000 tokens)"] == "2"  # 15 <= 16 at its second cell
    assert reach["1 (18,000 tokens)"] == "2"  # 12 <= 14, promoted after its second cell
    assert reach["2 (36,000 tokens)"] == "–"  # random search has no rung-2 result
    ladder = {r[0]: r[1:] for r in page.tables["ladder-config"][1:]}
    full = Ladder(**LADDER).full_tokens(load_corpus("synthetic"))
    assert ladder["rung 0"] == [f"9,000 tokens ({9000 / full:.1%} of the full run)"] * 2
    assert page.tables["train-config"][0][0] == "the ladder's base training (its preset)"


def test_a_ladder_searchs_best_cells_rank_by_rung_reached_then_perplexity(ladders):
    header, *rows = ladders["page"].tables["best-cells"]
    assert header[:3] == ["#", "cell", "found by"]
    assert header[6:9] == ["rung 0 val ppl (9,000 tokens)", "rung 1 val ppl (18,000 tokens)",
                           "rung 2 val ppl (36,000 tokens)"]
    order = [next(c for c, h in ladders["hash"].items() if h[:8] in row[1]) for row in rows]
    assert order[: len(RANKED)] == RANKED
    assert sorted(order[len(RANKED):]) == ["c", "d", "g"]  # diverged last, at any rung
    for cell, row in zip(order, rows, strict=True):
        for rung in (0, 1, 2):
            at = [v for c, k, v, _ in EVOLVED + RANDOM if c == cell and k == rung]
            assert row[6 + rung] == ("–" if not at else "diverged" if at[0] is None
                                     else f"{at[0]:,.2f}")
    saved = pd.read_csv(ladders["tmp"] / "page" / "best_cells.csv")
    assert list(saved["role"].unique()) == ["rung"] and len(saved) == len(EVOLVED + RANDOM)
    assert sorted(saved["rung"]) == sorted(k for _, k, _, _ in EVOLVED + RANDOM)


def test_trainings_the_zoo_lacks_are_counted_on_the_page(ladders, tmp_path):
    run_dir = tmp_path / "evolved"
    shutil.copytree(ladders["dirs"][0], run_dir)
    log = run_dir / "evaluations.jsonl"
    last = json.loads(log.read_text().splitlines()[-1])
    with log.open("a") as f:  # a training stored in another zoo
        f.write(json.dumps(last | {"run_id": "0" * 16}) + "\n")
    write_report(ladders["tmp"] / "zoo.h5", [run_dir], tmp_path / "page",
                 Options(top=3, tokens=100, eval_tokens=300))
    text = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    assert "1 of the trainings evolved logged are not in the zoo zoo.h5" in text
    assert "zoo.h5.journal/" in text
    whole = (ladders["tmp"] / "page" / "index.html").read_text(encoding="utf-8")
    assert "are not in the zoo" not in whole  # every logged training is there


def test_runs_without_weights_are_said_to_be_left_out_of_the_pools(ladders, tmp_path):
    """A rebuilt search's zoo holds its restored results without weights: the similarity
    and ensemble sections say how many ok runs they could not run."""
    zoo = tmp_path / "zoo.h5"
    shutil.copy(ladders["tmp"] / "zoo.h5", zoo)
    with Zoo.open(zoo, "a") as z:
        ok = z.top(1, "synthetic")[0]
        z.add_run(TrainResult(ok.expr, ok.hash, "ok", 9.5, 9.6, ok.params, 1.0, 1.0, 0, [],
                              "", "restored from a log", TrainConfig.from_dict(ok.config)),
                  {"origin": "mutation", "generation": 0, "parents": []})
    write_report(zoo, ladders["dirs"], tmp_path / "page",
                 Options(top=3, tokens=100, eval_tokens=300))
    text = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    assert text.count("1 ok run has no weights") == 2
    whole = (ladders["tmp"] / "page" / "index.html").read_text(encoding="utf-8")
    assert "no weights" not in whole
