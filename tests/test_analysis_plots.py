"""The plots' data steps (tidy frames) and that the drawing steps accept them."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from cellzoo.analysis import plots
from cellzoo.analysis.ensemble import ensemble_logp, perplexity
from cellzoo.analysis.similarity import similarity_matrix


@pytest.fixture
def acts() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"A": rng.normal(size=(6, 4)), "B": rng.normal(size=(6, 9)),
            "C": rng.normal(size=(6, 3))}


def test_heatmap_frame(acts):
    words = ["the", "cat", "sat", "<eos>", "a", "dog"]
    frame = plots.heatmap_frame(acts, words, max_units=8)
    assert list(frame.columns) == ["cell", "step", "word", "unit", "value"]
    assert len(frame) == 6 * 4 + 6 * 8 + 6 * 3
    row = frame[(frame.cell == "B") & (frame.step == 2) & (frame.unit == 5)]
    assert row.word.item() == "sat" and row.value.item() == acts["B"][2, 5]
    assert isinstance(plots.draw_heatmaps(frame), Figure)


def test_first_sentence():
    assert plots.first_sentence(["a", "b", "<eos>", "c"]) == 3
    assert plots.first_sentence(["<eos>", "a", "<eos>"]) == 3
    assert plots.first_sentence(["w"] * 100, max_len=40) == 40


def test_clustermap_frame(acts):
    reps = {k: v[:, :3] for k, v in acts.items()}
    sim = similarity_matrix(reps, "cka")
    frame = plots.clustermap_frame(sim, {"A": 100.0, "B": 120.0, "C": 90.0})
    assert list(frame.columns) == ["cell", "other", "similarity", "ppl"]
    assert len(frame) == 9
    row = frame[(frame.cell == "A") & (frame.other == "C")]
    assert row.similarity.item() == sim.loc["A", "C"] and row.ppl.item() == 100.0
    assert isinstance(plots.draw_clustermap(frame), Figure)


def test_diversity_frame():
    a, b = np.log([0.5, 0.1, 0.4]), np.log([0.1, 0.5, 0.4])
    logp = {"A": a, "B": b, "C": a.copy()}
    sim = pd.DataFrame([[1, 0.2, 1], [0.2, 1, 0.3], [1, 0.3, 1]], index=list("ABC"),
                       columns=list("ABC"), dtype=float)
    frame = plots.diversity_frame(logp, sim)
    assert [(r.cell_a, r.cell_b) for r in frame.itertuples()] == [("A", "B"), ("A", "C"),
                                                                  ("B", "C")]
    ab = frame.iloc[0]
    pair = perplexity(ensemble_logp(np.stack([logp["A"], logp["B"]], axis=1), [1, 1]))
    assert ab.dissimilarity == pytest.approx(0.8) and ab.pair_ppl == pytest.approx(pair)
    assert ab.gain == pytest.approx(1 - pair / perplexity(logp["A"])) and ab.gain > 0
    assert frame.iloc[1].gain == pytest.approx(0.0)  # identical members gain nothing
    assert isinstance(plots.draw_diversity(frame), Figure)


def test_diversity_stats_hold_the_members_quality_fixed():
    """Gain driven by the quality gap alone (dissimilar pairs gain less only because their
    partner is worse) or by the pair's level alone (weaker pairs gain more and differ
    more): a strong raw rho, a partial rho near 0. Gain driven by dissimilarity at every
    gap keeps a high partial rho."""
    rng = np.random.default_rng(0)
    gap = rng.uniform(0, 1, 40)
    base = pd.DataFrame({"ppl_a": 100.0, "ppl_b": 100.0 * np.exp(gap),
                         "dissimilarity": gap + rng.normal(0, 0.05, 40)})
    by_gap = plots.diversity_stats(base.assign(gain=0.2 - 0.1 * gap + rng.normal(0, 0.01, 40)))
    assert by_gap["pairs"] == 40 and by_gap["rho"] < -0.8 and abs(by_gap["partial_rho"]) < 0.3
    noise = rng.normal(0, 0.3, 40)
    mixed = base.assign(dissimilarity=gap + noise, gain=0.1 * noise - 0.05 * gap)
    assert plots.diversity_stats(mixed)["partial_rho"] > 0.8
    level = rng.uniform(0, 1, 200)  # weaker pairs gain more, and are more dissimilar
    weak = pd.DataFrame({"ppl_a": 100.0 * np.exp(level), "ppl_b": 100.0 * np.exp(level),
                         "dissimilarity": level + rng.normal(0, 0.05, 200),
                         "gain": 0.1 * level + rng.normal(0, 0.005, 200)})
    by_level = plots.diversity_stats(weak)
    assert by_level["rho"] > 0.8 and abs(by_level["partial_rho"]) < 0.3
    few = plots.diversity_stats(base.head(4).assign(gain=[0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(few["rho"]) and np.isnan(few["partial_rho"])
