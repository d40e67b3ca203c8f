"""The ranker's prior in a search: a pre-trained ranker scores from the first breeding round,
`none` waits for results as before, the choice is stored for resume, and a missing or damaged
prior file stops the command before anything is written."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cellzoo.cli import main
from cellzoo.cli.evolve import make_ranker, ranker_prior
from cellzoo.evolve.breeding import MIN_RANKER_RUNS
from cellzoo.evolve.config import SearchConfig
from cellzoo.evolve.rundir import RANKER_LOG
from cellzoo.evolve.search import Search

TINY_TRAIN = {"hidden": 8, "budget_tokens": 1000, "eval_tokens": 300, "batch_size": 4,
              "bptt": 10}
EVOLVE = ["evolve", "--task", "synthetic", "--hidden", "8", "--budget-tokens", "600",
          "--population", "4", "--sample", "2", "--no-library", "--ranker"]


def search(tmp_path, prior: str, evaluations: int) -> Search:
    config = SearchConfig(zoo=str(tmp_path / f"{prior}.h5"), evaluations=evaluations,
                          population=4, sample=2, ranker=True, ranker_prior=prior,
                          train=TINY_TRAIN)
    return Search.open(config, tmp_path / prior, ranker=make_ranker(config))


def ranker_log(run_dir) -> list[dict]:
    path = run_dir / RANKER_LOG
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_the_prior_scores_from_the_first_breeding_round_and_fine_tunes(tmp_path):
    done = search(tmp_path, "default", evaluations=8).run()
    rounds = [row["round"] for row in ranker_log(tmp_path / "default")]
    # 4 results before round 1: fewer than a cold ranker waits for
    assert 4 < MIN_RANKER_RUNS and rounds == [1, 1, 1, 1]
    assert done.ranker.pretrained and done.ranker.history  # fine-tuned on the 4 results
    again = search(tmp_path, "default", evaluations=8)
    assert again.resumed and again.ranker_ready and again.ranker.pretrained


@pytest.mark.slow
def test_without_the_prior_the_ranker_waits_for_results(tmp_path):
    done = search(tmp_path, "none", evaluations=12).run()
    assert not done.ranker.pretrained
    rounds = [row["round"] for row in ranker_log(tmp_path / "none")]
    assert all(r >= 2 for r in rounds)  # round 1 came after 4 results: not scored


def test_the_default_prior_follows_the_task():
    assert ranker_prior(SearchConfig(task="ptb", ranker=True)) == "default"
    assert ranker_prior(SearchConfig(task="wikitext-2", ranker=True)) == "default"
    assert ranker_prior(SearchConfig(task="synthetic", ranker=True)) == "none"
    assert ranker_prior(SearchConfig(task="synthetic", ranker=True,
                                     ranker_prior="default")) == "default"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("content", [None, b"not a torch file", b"PK\x03\x04 truncated"])
def test_a_missing_or_damaged_prior_stops_the_search_before_it_starts(tmp_path, content):
    prior = tmp_path / "prior.pt"
    if content is not None:
        prior.write_bytes(content)
    run_dir, zoo = tmp_path / "run", tmp_path / "z.h5"
    result = invoke(*EVOLVE, "--evaluations", "4", "--ranker-prior", prior, "--zoo", zoo,
                    "--run-dir", run_dir)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert str(prior) in result.output and "--ranker-prior none" in result.output
    assert not run_dir.exists() and not zoo.exists()


def test_a_prior_in_a_config_file_is_relative_to_it(tmp_path):
    (tmp_path / "cfg").mkdir()
    toml = tmp_path / "cfg" / "search.toml"
    toml.write_text('ranker = true\nranker_prior = "missing.pt"\n')
    result = invoke(*EVOLVE, "--config", toml, "--evaluations", "4", "--zoo", tmp_path / "z.h5",
                    "--run-dir", tmp_path / "run")
    assert result.exit_code == 2 and str(tmp_path / "cfg" / "missing.pt") in result.output


@pytest.mark.slow
def test_the_prior_choice_is_stored_and_a_resume_keeps_it(tmp_path):
    run_dir, zoo = tmp_path / "run", tmp_path / "z.h5"
    first = invoke(*EVOLVE, "--evaluations", "4", "--zoo", zoo, "--run-dir", run_dir)
    assert first.exit_code == 0, first.output
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["ranker_prior"] == "none"  # the synthetic task has no prior head
    other = invoke(*EVOLVE, "--evaluations", "6", "--ranker-prior", "default", "--zoo", zoo,
                   "--run-dir", run_dir)
    assert other.exit_code == 2 and "ranker_prior (stored 'none', given 'default')" in \
        other.output
