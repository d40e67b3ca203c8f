"""The search loop: configuration, selection, the population, dedup against the zoo,
lineage, logs, and the progress plot's data, on tiny real trainings."""

from __future__ import annotations

import json
import math
import random

import pytest

from cellzoo.dsl import parse
from cellzoo.evolve.candidates import Candidate, allowed, library_candidates, prefilter
from cellzoo.evolve.config import ConfigError, SearchConfig, for_resume, load_toml, resolve
from cellzoo.evolve.display import describe
from cellzoo.evolve.population import AgingEvolution, Member, MuPlusLambda, tournament
from cellzoo.evolve.progress import draw_progress, progress_frame
from cellzoo.evolve.search import Event, Search
from cellzoo.zoo import Zoo

TINY_TRAIN = {"hidden": 8, "budget_tokens": 1200, "eval_tokens": 300, "batch_size": 4,
              "bptt": 10}


def tiny_config(tmp_path, **changes) -> SearchConfig:
    settings = dict(zoo=str(tmp_path / "z.h5"), evaluations=9, population=5, sample=2,
                    train=TINY_TRAIN)
    settings.update(changes)
    return SearchConfig(**settings)


def member(i: int, ppl: float, status: str = "ok") -> Member:
    return Member(f"h{i}", f"cell{i}", status, ppl, born=i, origin="random", generation=0)


# ---- configuration --------------------------------------------------------------------------


def test_options_override_the_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text('population = 8\nsample = 3\nevaluations = 40\n'
                    '[train]\nhidden = 16\n')
    config = resolve(load_toml(path), {"evaluations": 12, "sample": None})
    assert (config.population, config.sample, config.evaluations) == (8, 3, 12)
    assert config.train_config().hidden == 16
    assert config.strategy == "aging"  # a default


def test_bad_settings_are_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("populaton = 8\n")
    with pytest.raises(ConfigError, match="populaton"):
        load_toml(path)
    with pytest.raises(ConfigError, match="sample .* cannot exceed population"):
        SearchConfig(population=3, sample=4)
    with pytest.raises(ConfigError, match="choose one of aging"):
        SearchConfig(strategy="annealing")
    with pytest.raises(ConfigError, match="bad training settings"):
        SearchConfig(train={"hiden": 3})


def test_resume_accepts_only_changes_that_keep_the_search():
    stored = SearchConfig(zoo="z.h5", evaluations=10)
    assert for_resume(stored, {}, {"evaluations": 20, "workers": 2}).evaluations == 20
    with pytest.raises(ConfigError, match="seed"):
        for_resume(stored, {}, {"seed": 3})


# ---- selection --------------------------------------------------------------------------------


def test_prefilter_keeps_the_best_plus_a_random_share():
    cands = [Candidate(parse("Tanh(Add(MM(x), MM(h)))"), "random") for _ in range(16)]
    scores = list(range(16))  # candidate i scores i: the best are 15, 14, ...
    chosen = prefilter(cands, scores, 4, 0.25, random.Random(0))
    picked = sorted(cands.index(c) for c in chosen)
    assert len(picked) == 4
    assert {15, 14, 13} <= set(picked)  # 3 best by score, 1 drawn from the other 13
    assert all(c.score is not None for c in chosen)
    again = prefilter(cands, scores, 4, 0.25, random.Random(0))
    assert [cands.index(c) for c in again] == [cands.index(c) for c in chosen]
    only_random = prefilter(cands, None, 4, 0.25, random.Random(1))
    assert len(only_random) == 4


def test_the_progress_line_says_at_which_rung_a_ladder_search_s_best_is():
    def member(hash_: str, val: float, rung: int) -> Member:
        return Member(hash_ * 16, "x", "ok", val, 0, "mutation", 1, rung=rung)

    last = member("a", 240.5, 1)
    top = describe(Event(last, member("b", 116.22, 4), 10, 150, 0, 600.0))
    assert top == ("last 240.50 (mutation, rung 1, aaaaaaaa)  "
                   "best 116.22 (rung 4, bbbbbbbb)  1.0/min")
    proxy = describe(Event(member("c", 300.0, 0), member("c", 300.0, 0), 3, 30, 0, 60.0))
    assert proxy == "last 300.00 (mutation, cccccccc)  best 300.00  3.0/min"


def test_tournament_picks_the_fittest_of_the_sample_and_failures_lose():
    members = [member(0, 5.0), member(1, 3.0), member(2, math.nan, "diverged")]
    assert tournament(members, 3, random.Random(0)).hash == "h1"
    assert members[2].fitness == -math.inf


def test_aging_evolution_kills_the_oldest_even_when_it_is_the_best():
    pop = AgingEvolution(size=3, sample=2)
    for i, ppl in enumerate([2.0, 9.0, 8.0, 7.0]):
        pop.add(member(i, ppl))
    assert [m.hash for m in pop.members] == ["h1", "h2", "h3"]


def test_mu_plus_lambda_keeps_the_best_mu_of_parents_and_offspring():
    pop = MuPlusLambda(size=2, sample=2)
    for i, ppl in enumerate([5.0, 4.0, 9.0]):
        pop.add(member(i, ppl))
    pop.end_generation()
    assert sorted(m.hash for m in pop.members) == ["h0", "h1"]
    pop.add(member(3, 1.0))
    pop.end_generation()
    assert sorted(m.hash for m in pop.members) == ["h1", "h3"]


def test_library_respects_the_operator_level():
    core = library_candidates("core", SearchConfig().limits)
    assert core and all(c.origin == "library" for c in core)
    extended_only = parse("Tanh(Add(MM(x), Sin(MM(h))))")
    assert not allowed(extended_only, "core", SearchConfig().limits)
    assert allowed(extended_only, "extended", SearchConfig().limits)


# ---- a real (tiny) search -------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    config = tiny_config(tmp)
    events = []
    search = Search.open(config, tmp / "run", on_event=events.append).run()
    return tmp, config, search, events


@pytest.fixture(scope="module")
def second(finished):
    """A second, shorter search over the first one's zoo (its own run directory)."""
    tmp, config, _, _ = finished
    return Search.open(config.changed(evaluations=3, seed=1), tmp / "run2").run()


def test_search_fills_the_zoo_with_distinct_cells_and_lineage(finished):
    tmp, config, search, events = finished
    with Zoo.open(config.zoo, "r") as zoo:  # the second search may have added runs
        runs = [r for r in zoo.runs() if r.search_id == search.search_id]
    assert len(runs) == config.evaluations == search.counters.trained
    assert len({r.hash for r in runs}) == len(runs)  # no cell trained twice
    assert {r.config_key for r in runs} == {config.train_config().key()}
    first = runs[: config.population]
    assert all(r.origin in ("library", "random") and r.generation == 0 for r in first)
    bred = runs[config.population:]
    assert bred and all(r.origin in ("mutation", "crossover") for r in bred)
    hashes = {r.hash for r in runs}
    for run in bred:
        assert run.parents and set(run.parents) <= hashes  # parents were evaluated before
        assert run.operator and run.generation >= 1
    assert [e.trained for e in events] == list(range(1, config.evaluations + 1))
    assert events[-1].best.val_ppl == min(r.val_ppl for r in runs if r.status == "ok")


def test_aging_population_holds_the_youngest_members(finished):
    tmp, config, search, _ = finished
    log = [json.loads(line) for line in (tmp / "run" / "evaluations.jsonl").read_text()
           .splitlines()]
    assert [row["n"] for row in log] == list(range(config.evaluations))
    youngest = [row["hash"] for row in log[-config.population:]]
    assert [m.hash for m in search.strategy.members] == youngest


def test_a_second_search_reuses_the_zoo_and_never_retrains(finished, second):
    _, config, _, _ = finished
    assert second.counters.reused >= 1  # at least the library cells were known
    with Zoo.open(config.zoo, "r") as zoo:
        keys = [(r.hash, r.config_key) for r in zoo.runs()]
    assert len(keys) == len(set(keys)) == config.evaluations + 3
    reused = [m for m in second.strategy.members if m.reused]
    assert reused and all(m.origin == "library" for m in reused)


def test_running_a_finished_search_again_changes_nothing(finished, second):
    tmp, config, search, _ = finished
    again = Search.open(config, tmp / "run")
    assert again.resumed and again.finished
    again.run()
    assert [m.hash for m in again.strategy.members] == [m.hash for m in search.strategy.members]
    with Zoo.open(config.zoo, "r") as zoo:
        assert len(zoo) == config.evaluations + 3  # the runs of the two searches above


def test_progress_frame_and_plot_from_a_real_run(finished, second, tmp_path):
    tmp, config, search, _ = finished
    frame = progress_frame([tmp / "run"])
    assert list(frame["n"]) == list(range(1, config.evaluations + 1))
    ok = frame["val_ppl"].dropna()
    assert frame["best_so_far"].iloc[-1] == pytest.approx(ok.min())
    assert frame["best_so_far"].dropna().is_monotonic_decreasing
    two = progress_frame([tmp / "run", tmp / "run2"])
    assert set(two["run"]) == {"run", "run2"}
    assert len(two[two["run"] == "run2"]) == 3  # reused results are not trainings
    assert set(frame["arm"]) == {config.kind}  # drawn as one curve per kind of search
    out = draw_progress(two, tmp_path / "progress.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
