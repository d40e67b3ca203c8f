"""`cellzoo report` on a real tiny synthetic search: a ranker-filtered aging search, a random
search into the same zoo, and one longer training of the search's best cell."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from cellzoo.analysis import ensemble as ens
from cellzoo.cli import main
from cellzoo.evolve.config import SearchConfig
from cellzoo.zoo import Run, Zoo

TINY = ["--task", "synthetic", "--hidden", "8", "--budget-tokens", "2000", "--population", "4",
        "--sample", "2"]


class Page(HTMLParser):
    """What the tests read from the page: references, ids, scripts and each table's cells."""

    def __init__(self, text: str):
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.tags: set[str] = set()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.ids.update([attrs["id"]] if "id" in attrs else [])
        self.refs += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


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
            assert run.hash in row[1]
            assert row[2] == run.expr
            assert row[3] == f"{run.params:,}"
            assert row[4] == f"{run.val_ppl:,.2f}" and row[5] == f"{run.test_ppl:,.2f}"
            assert run.origin in row[7]
        trained = made["trained"]
        longer = next(r for r in zoo.runs() if r.hash == trained.hash
                      and r.config["hidden"] == 12)
        row = next(r for r in rows if trained.hash in r[1])
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
    from cellzoo.report.page import config_label
    from cellzoo.train import TrainConfig

    def label(config: TrainConfig) -> str:
        return config_label(SimpleNamespace(task=config.task, config=config.to_dict()))

    small = TrainConfig.preset("zaremba-small")
    assert label(small) == "ptb 2×200, 13 epochs (zaremba-small)"
    retrained = small.replace(hidden=203, lr=0.25)
    assert label(retrained) == "ptb 2×203, 13 epochs (zaremba-small, lr 0.25)"
    assert label(TrainConfig.proxy("ptb")) == "ptb 1×128, 200,000 tokens"
