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


def _iterative_svcca(x: np.ndarray, y: np.ndarray, variance: float = 0.99) -> float:
    """The earlier implementation: scikit-learn PCA, then its iterative CCA (slow: tiny only)."""
    import warnings

    from sklearn.cross_decomposition import CCA
    from sklearn.decomposition import PCA

    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    xr = PCA(n_components=variance, svd_solver="full").fit_transform(x)
    yr = PCA(n_components=variance, svd_solver="full").fit_transform(y)
    k = min(xr.shape[1], yr.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xc, yc = CCA(n_components=k, max_iter=5000, tol=1e-12).fit(xr, yr).transform(xr, yr)
    xc, yc = xc.reshape(len(x), -1), yc.reshape(len(y), -1)
    return float(np.mean([abs(np.corrcoef(xc[:, i], yc[:, i])[0, 1]) for i in range(k)]))


@pytest.mark.parametrize("seed", range(4))
def test_closed_form_svcca_equals_the_iterative_one(seed):
    """Tanh 'hidden states' of two cells reading one shared signal, of different widths."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(400, 4))
    x = np.tanh(signal @ rng.normal(size=(4, 6)) + 0.3 * rng.normal(size=(400, 6)))
    y = np.tanh(signal[:, :3] @ rng.normal(size=(3, 5)) + 0.5 * rng.normal(size=(400, 5)))
    assert svcca(x, y) == pytest.approx(_iterative_svcca(x, y), abs=1e-5)
