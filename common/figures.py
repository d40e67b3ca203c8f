"""Writing the PNGs cellzoo draws: one place that saves and closes a matplotlib figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` (its folder made), cropped to what is drawn (a legend or
    label outside the axes included), and close it, so that many plots in one process do not
    accumulate open figures."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
