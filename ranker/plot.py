"""`cellzoo plot ranker RUN_DIR`: the ranker's live accuracy during a search.

Data step (tested) and drawing step (seaborn) are separate. The search writes
``RUN_DIR/ranker_log.jsonl``, one line per candidate that was then trained:
``{"round": r, "hash": ..., "predicted": <predicted log ppl>, "true_log_ppl": ...}``.
Lines whose true value is missing or not finite (diverged candidates) are kept
in the table but left out of the correlations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cellzoo.common.figures import save_figure
from cellzoo.ranker.metrics import rank_metrics

LOG_NAME = "ranker_log.jsonl"
COLUMNS = ("round", "hash", "predicted", "true_log_ppl")


def load_log(run_dir: str | Path, rung: int = 0) -> pd.DataFrame:
    """The run's ranker log as a table with `COLUMNS` (true values may be NaN), the entries
    of one ladder rung. A ladder search logs a candidate's result at every rung it reaches
    against the one prediction made before rung 0; the live accuracy is measured at the rung
    the pre-filter chose for (0), and results of other rungs are never mixed in. A proxy
    search's entries are all rung 0."""
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: was the search run with the ranker on?")
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                if d.get("rung", 0) != rung:
                    continue
                rows.append({"round": int(d["round"]), "hash": str(d["hash"]),
                             "predicted": _float(d["predicted"]),
                             "true_log_ppl": _float(d.get("true_log_ppl"))})
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}, line {number}: not a ranker log entry ({e})") from e
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _float(value) -> float:
    return math.nan if value is None else float(value)


def round_correlations(log: pd.DataFrame) -> pd.DataFrame:
    """Per round: how many candidates had a finite true value, Kendall tau, Spearman rho."""
    rows = []
    for r, part in log.groupby("round", sort=True):
        m = rank_metrics(part["predicted"].to_numpy(), part["true_log_ppl"].to_numpy())
        rows.append({"round": int(r), "n": int(np.isfinite(part["true_log_ppl"]).sum()), **m})
    return pd.DataFrame(rows, columns=["round", "n", "tau", "rho"])


def draw(log: pd.DataFrame, per_round: pd.DataFrame, out: str | Path) -> None:
    """Predicted vs true scatter (overall tau, rho in the title) beside tau per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    done = log[np.isfinite(log["true_log_ppl"])]
    overall = rank_metrics(done["predicted"].to_numpy(), done["true_log_ppl"].to_numpy())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    sns.scatterplot(data=done, x="true_log_ppl", y="predicted", hue="round", ax=left, s=18)
    left.set_title(f"predicted vs true: tau {overall['tau']:.3f}, rho {overall['rho']:.3f}")
    left.set_xlabel("true log validation perplexity")
    left.set_ylabel("predicted log perplexity")
    sns.lineplot(data=per_round, x="round", y="tau", marker="o", ax=right)
    right.set_title("Kendall tau per round (live accuracy)")
    right.axhline(0, color="grey", lw=0.8)
    fig.tight_layout()
    save_figure(fig, out)
