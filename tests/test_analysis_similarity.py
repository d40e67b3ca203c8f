"""Linear CKA and SVCCA on representations whose similarity is known."""

import numpy as np
import pytest

from cellzoo.analysis.similarity import linear_cka, similarity_matrix, svcca

MEASURES = [linear_cka, svcca]


@pytest.fixture
def rep() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(600, 12)) @ rng.normal(size=(12, 12))


def _rotation(n: int, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q


@pytest.mark.parametrize("measure", MEASURES)
def test_identical_rotated_and_scaled_give_one(measure, rep):
    assert measure(rep, rep) == pytest.approx(1.0, abs=1e-6)
    assert measure(rep, rep @ _rotation(rep.shape[1])) == pytest.approx(1.0, abs=1e-6)
    assert measure(rep, 7.5 * rep) == pytest.approx(1.0, abs=1e-6)
    assert measure(rep, rep + 3.0) == pytest.approx(1.0, abs=1e-6)  # a shift is centred away


@pytest.mark.parametrize("measure", MEASURES)
def test_independent_random_is_near_zero(measure):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(3000, 8)), rng.normal(size=(3000, 8))
    assert measure(x, y) < 0.1


@pytest.mark.parametrize("measure", MEASURES)
def test_different_widths(measure, rep):
    """A wider representation holding a rotated copy plus noise units is still close."""
    rng = np.random.default_rng(3)
    wide = np.hstack([rep @ _rotation(rep.shape[1], 4), 0.01 * rng.normal(size=(len(rep), 20))])
    assert wide.shape[1] != rep.shape[1]
    assert measure(rep, wide) > 0.95
    partial = np.hstack([rep[:, :4], rng.normal(size=(len(rep), 8))])
    assert 0.1 < measure(rep, partial) < 0.95


def test_cka_is_symmetric_and_bounded(rep):
    other = np.tanh(rep[:, :5])
    assert linear_cka(rep, other) == pytest.approx(linear_cka(other, rep))
    assert 0.0 <= linear_cka(rep, other) <= 1.0


@pytest.mark.parametrize("measure", MEASURES)
def test_constant_representation_gives_nan(measure, rep):
    assert np.isnan(measure(rep, np.ones((len(rep), 3))))


def test_token_counts_must_match(rep):
    with pytest.raises(ValueError, match="different numbers of tokens"):
        linear_cka(rep, rep[:-1])


def test_similarity_matrix(rep):
    reps = {"a": rep, "b": rep @ _rotation(12), "c": np.random.default_rng(5).normal(size=(600, 6))}
    matrix = similarity_matrix(reps, "cka")
    assert list(matrix.index) == list(matrix.columns) == ["a", "b", "c"]
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix.loc["a", "b"] == pytest.approx(1.0)
    assert matrix.loc["a", "c"] < 0.1
