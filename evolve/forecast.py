"""What a ladder search will still cost: its trainings per rung once it has its rung-0
cells, and the training hours still to come at the pace it has kept so far.

ASHA promotes the best ``1/eta`` of the results at each rung, so a search of ``n`` rung-0
cells ends with about ``n // eta**k`` trainings at rung ``k`` (fewer where fewer cells run
ok). Asynchronous ASHA promotes more: a cell goes on as soon as it is among the best
``1/eta`` of the results so far, at first among few, and a search that keeps finding better
cells keeps promoting them. So the expected count is the larger of ``n // eta**k`` and the
search's own trainings at rung ``k`` so far per rung-0 cell, times ``n`` (a rung past its
count has nothing to go). A rung's cost per training is the mean of its logged trainings that
did not fail (a failed training, an error outside the cell, is retried on resume). A rung
with none yet costs the rung below's cost times ``eta``: a promotion continues the rung
below's branch checkpoint and trains the tokens in between, which grow by ``eta`` from
rung to rung. Rung 1 is never extrapolated from rung 0, whose trainings include the probe's rates:
before the first promotion there is no forecast above rung 0.

The pace is the device's that trains the search now: the costs per training come from the
trainings on the device of its latest one (``device`` in the log; rows that do not say are
one group of their own), so a search moved to a GPU machine and back is forecast at the
pace of the machine it is on, not at a mean over both. A rung that device has not trained
yet is extrapolated from the rung below as above where that rung's cost is known, and costs
the mean of its trainings on the other devices where it is not (a log whose older rows do
not name their device, say), rather than going without a forecast.
"""

from __future__ import annotations

import math

import pandas as pd

COLUMNS = ["rung", "trained", "expected", "hours", "hours_each", "hours_left"]


def ladder_forecast(frame: pd.DataFrame, evaluations: int, eta: int,
                    rungs: int) -> pd.DataFrame:
    """Per rung of one ladder search (rows of `progress_frame` for one run): trainings so
    far, trainings expected at ``evaluations`` rung-0 cells, training hours so far, per
    training (measured, or extrapolated) and still to come (nan where the cost per training
    is unknown); the module doc says how each is reckoned."""
    rows, each = [], math.nan
    cells = int((frame["rung"] == 0).sum())
    pace = on_latest_device(frame)
    for rung in range(rungs):
        done = frame[frame["rung"] == rung]
        hours = float(done["seconds"].sum()) / 3600
        counted = done[done["status"] != "failed"]  # a failure is retried, its cost says nothing
        timed = pace[(pace["rung"] == rung) & (pace["status"] != "failed")]
        if len(timed):
            each = _mean_hours(timed)
        elif rung > 1 and math.isfinite(each):
            each *= eta
        else:  # elsewhere, or before the first promotion nowhere
            each = _mean_hours(counted) if len(counted) else math.nan
        expected = evaluations // eta ** rung
        if cells:  # the search's promotions so far, at its pace per rung-0 cell
            expected = max(expected, math.ceil(len(done) * evaluations / cells))
        left = max(expected - len(counted), 0)
        rows.append([rung, len(done), expected, hours, each, left * each if left else 0.0])
    return pd.DataFrame(rows, columns=COLUMNS)


def _mean_hours(trainings: pd.DataFrame) -> float:
    """The mean training hours of rows of `progress_frame`."""
    return float(trainings["seconds"].mean()) / 3600


def on_latest_device(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows trained on the device of the latest row (all rows of a frame without a
    ``device`` column; rows that do not name theirs count as one device)."""
    if "device" not in frame or frame.empty:
        return frame
    device = frame["device"]
    latest = device.iloc[-1]
    return frame[device.isna() if pd.isna(latest) else device == latest]


def hours_left(forecast: pd.DataFrame) -> float:
    """The training hours still to come over all rungs (nan when a rung's cost is unknown)."""
    return float(forecast["hours_left"].sum(skipna=False))
