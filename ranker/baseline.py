"""The simple baselines: operator counts (and edge counts) of a cell fed to random forests."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from cellzoo.ranker.graph import VOCAB, Packed


def count_features(packed: Packed, edges: bool = False) -> np.ndarray:
    """[cells, len(VOCAB) + 2]: how often each node type occurs, the node count, the depth;
    with ``edges``, also how often each (parent type, child type) edge occurs."""
    sizes = np.diff(packed.ptr)
    cell = np.repeat(np.arange(len(sizes)), sizes)
    counts = np.zeros((len(sizes), len(VOCAB)))
    np.add.at(counts, (cell, packed.op), 1)
    depth = np.zeros(len(sizes))
    np.maximum.at(depth, cell, packed.level + 1)
    columns = [counts, sizes, depth]
    if edges:
        start = np.repeat(packed.ptr[:-1], sizes)
        node, slot = np.nonzero(packed.kids >= 0)
        child = packed.kids[node, slot] + start[node]
        pair = packed.op[node] * len(VOCAB) + packed.op[child]
        edge_counts = np.zeros((len(sizes), len(VOCAB) ** 2))
        np.add.at(edge_counts, (cell[node], pair), 1)
        columns.append(edge_counts)
    return np.column_stack(columns)


class CountBaseline:
    """Random forests on `count_features`: a regressor for log ppl, a classifier for divergence."""

    def __init__(self, seed: int = 0, trees: int = 200, edges: bool = False):
        self.edges = edges
        self.reg = RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, random_state=seed,
                                         n_jobs=1)
        self.div = RandomForestClassifier(n_estimators=trees, min_samples_leaf=2,
                                          random_state=seed, n_jobs=1)

    def fit(self, packed: Packed, log_ppl: np.ndarray, diverged: np.ndarray) -> CountBaseline:
        x = count_features(packed, self.edges)
        done = np.isfinite(log_ppl)
        self.reg.fit(x[done], log_ppl[done])
        self.div.fit(x, diverged.astype(int))
        return self

    def predict(self, packed: Packed) -> tuple[np.ndarray, np.ndarray]:
        """(predicted log ppl, probability of divergence) per cell."""
        x = count_features(packed, self.edges)
        proba = self.div.predict_proba(x)
        classes = list(self.div.classes_)
        p = proba[:, classes.index(1)] if 1 in classes else np.zeros(len(x))
        return self.reg.predict(x), p
