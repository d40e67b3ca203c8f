"""Representation similarity of hidden states recorded on the same tokens.

Both measures take two matrices with one row per token (the same tokens, in the
same order) and any number of columns (hidden units), so cells of different
widths compare directly.

- linear CKA (Kornblith et al., "Similarity of neural network representations
  revisited", 2019): invariant to orthogonal transforms and isotropic scaling.
- SVCCA (Raghu et al., "SVCCA: singular vector canonical correlation analysis",
  2017): each representation is cut to the principal directions holding 99% of
  its variance, then the mean canonical correlation between the two is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

Measure = Callable[[np.ndarray, np.ndarray], float]


def _check_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(f"need 2-D [tokens, units] matrices, got shapes {x.shape} and {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"representations cover different numbers of tokens: "
                         f"{x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError("need at least 2 tokens")
    return x - x.mean(axis=0), y - y.mean(axis=0)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """||Yc' Xc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F) on column-centred matrices; in [0, 1],
    nan when either representation is constant over the tokens."""
    x, y = _check_pair(x, y)
    cross = np.linalg.norm(y.T @ x) ** 2
    norm = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norm) if norm > 0 else float("nan")


def _principal_basis(x: np.ndarray, variance: float, max_dims: int | None) -> np.ndarray:
    """An orthonormal basis [T, k] of the centred data's top principal directions: the
    fewest that hold more than ``variance`` of its variance (scikit-learn's PCA rule)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    share = np.cumsum(s**2) / np.sum(s**2)
    dims = min(int(np.searchsorted(share, variance, side="right")) + 1, len(s))
    return u[:, : dims if max_dims is None else min(dims, max_dims)]


def svcca(x: np.ndarray, y: np.ndarray, variance: float = 0.99,
          max_dims: int | None = 50) -> float:
    """Mean canonical correlation between the top principal subspaces; nan when either
    representation is constant over the tokens.

    Closed form (as in Raghu et al.'s reference code): the canonical correlations of two
    subspaces are the singular values of the product of their orthonormal bases, so no
    iterative CCA is needed. ``max_dims`` caps each subspace as earlier versions did (they
    used scikit-learn's iterative CCA), so values match theirs."""
    x, y = _check_pair(x, y)
    if not (np.any(x) and np.any(y)):
        return float("nan")
    bx, by = _principal_basis(x, variance, max_dims), _principal_basis(y, variance, max_dims)
    k = min(bx.shape[1], by.shape[1])
    corrs = np.linalg.svd(bx.T @ by, compute_uv=False)[:k]
    return float(np.mean(np.clip(corrs, 0.0, 1.0)))


MEASURES: dict[str, Measure] = {"cka": linear_cka, "svcca": svcca}


def similarity_matrix(reps: Mapping[str, np.ndarray], measure: Measure | str = "cka"
                      ) -> pd.DataFrame:
    """Symmetric matrix of ``measure`` between every pair of named representations (the
    diagonal is 1 by definition)."""
    fn = MEASURES[measure] if isinstance(measure, str) else measure
    names = list(reps)
    values = np.ones((len(names), len(names)))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            values[i, j] = values[j, i] = fn(reps[a], reps[names[j]])
    return pd.DataFrame(values, index=pd.Index(names, name="cell"),
                        columns=pd.Index(names, name="other"))
