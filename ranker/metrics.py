"""How well predictions rank: Kendall tau, Spearman rho, divergence AUC, guarded against NaN.

One evaluator for the ranker and every baseline (NASLib's rule): the same
function sees both models' predictions on the same held-out cells.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import kendalltau, spearmanr


def rank_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Kendall tau and Spearman rho of pred vs true over pairs where both are finite.
    NaN (not an exception) when fewer than two points remain or either side is constant."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    ok = np.isfinite(pred) & np.isfinite(true)
    pred, true = pred[ok], true[ok]
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(true) == 0:
        return {"tau": math.nan, "rho": math.nan}
    return {"tau": float(kendalltau(pred, true).statistic),
            "rho": float(spearmanr(pred, true).statistic)}


def divergence_auc(p_diverge: np.ndarray, diverged: np.ndarray) -> float:
    """ROC AUC of the divergence probability; NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score  # scikit-learn is slow to import; only here

    diverged = np.asarray(diverged, dtype=bool)
    if diverged.all() or not diverged.any():
        return math.nan
    return float(roc_auc_score(diverged, np.asarray(p_diverge, dtype=float)))
