"""Ensemble arithmetic on target log-prob matrices: mixtures, greedy selection."""

import math

import numpy as np
import pytest

from cellzoo.analysis.ensemble import ensemble_logp, greedy_select, perplexity


def _members(tokens: int = 400, members: int = 5, seed: int = 0) -> np.ndarray:
    """Target log-probs of members that are right on different tokens (diverse experts)."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.01, 0.3, size=(tokens, members))
    for m in range(members):
        probs[rng.random(tokens) < 0.3, m] = 0.9
    return np.log(probs)


def test_one_member_is_that_member():
    logp = _members()
    np.testing.assert_allclose(ensemble_logp(logp, [0, 0, 3, 0, 0]), logp[:, 2])


def test_mixture_is_the_mean_of_probabilities():
    logp = _members()
    expected = np.log(0.25 * np.exp(logp[:, 0]) + 0.75 * np.exp(logp[:, 3]))
    np.testing.assert_allclose(ensemble_logp(logp, [1, 0, 0, 3, 0]), expected)


def test_mixture_is_stable_for_tiny_probabilities():
    logp = np.full((3, 2), -2000.0)
    np.testing.assert_allclose(ensemble_logp(logp, [1, 1]), -2000.0)


def test_bad_weights_are_rejected():
    with pytest.raises(ValueError, match="non-negative weights"):
        ensemble_logp(_members(), [0, 0, 0, 0, 0])


def test_perplexity():
    assert perplexity(np.log(np.full(10, 0.25))) == pytest.approx(4.0)


@pytest.mark.parametrize("seed", range(4))
def test_greedy_is_never_worse_than_the_best_member(seed):
    logp = _members(seed=seed)
    weights = greedy_select(logp, rounds=10)
    assert weights.dtype.kind == "i" and weights.sum() >= 1
    best_single = min(perplexity(logp[:, m]) for m in range(logp.shape[1]))
    assert perplexity(ensemble_logp(logp, weights)) <= best_single
    assert perplexity(ensemble_logp(logp, weights)) < 0.95 * best_single  # diverse experts


def test_greedy_first_pick_is_the_best_member_and_a_dominant_member_stays_alone():
    logp = _members()
    logp[:, 3] = math.log(0.99)  # member 3 is nearly always right
    weights = greedy_select(logp, rounds=6)
    assert weights.tolist() == [0, 0, 0, 1, 0]


def test_greedy_weights_are_reduced_counts():
    logp = np.log(np.array([[0.9, 0.1], [0.1, 0.9]] * 50))
    assert greedy_select(logp, rounds=8).tolist() == [1, 1]
