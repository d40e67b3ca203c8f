"""The cost forecast of a ladder search: its trainings per rung at the end (ASHA's count, or
the search's own promotion pace where higher), and the hours to go from each rung's
measured cost, extrapolated by eta to rungs not reached yet."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from cellzoo.evolve.forecast import hours_left, ladder_forecast
from cellzoo.evolve.progress import own_seconds, progress_frame


def frame(seconds_per_rung: dict[int, list[float]]) -> pd.DataFrame:
    """Rows as `progress_frame` gives them: one per training, with its rung and seconds."""
    return pd.DataFrame([{"rung": rung, "seconds": s, "status": "ok"}
                         for rung, seconds in seconds_per_rung.items() for s in seconds])


def test_measured_rungs_cost_their_mean_and_higher_ones_eta_times_the_rung_below():
    runs = frame({0: [360.0] * 30, 1: [1800.0, 1800.0, 3600.0], 2: [7200.0]})
    forecast = ladder_forecast(runs, evaluations=90, eta=3, rungs=5)
    assert forecast["trained"].tolist() == [30, 3, 1, 0, 0]
    assert forecast["expected"].tolist() == [90, 30, 10, 3, 1]  # 90 // 3**k
    assert forecast["hours"].tolist() == pytest.approx([3.0, 2.0, 2.0, 0.0, 0.0])
    assert forecast["hours_each"].tolist() == pytest.approx([0.1, 2 / 3, 2.0, 6.0, 18.0])
    assert forecast["hours_left"].tolist() == pytest.approx([6.0, 18.0, 18.0, 18.0, 18.0])
    assert hours_left(forecast) == pytest.approx(78.0)


def test_no_forecast_above_rung0_before_the_first_promotion():
    forecast = ladder_forecast(frame({0: [60.0] * 4}), evaluations=9, eta=3, rungs=3)
    assert forecast["hours_left"].iloc[0] == pytest.approx(5 / 60)
    assert forecast["hours_left"].iloc[1:].isna().all()
    assert math.isnan(hours_left(forecast))


def test_a_rung_done_or_past_its_expected_count_has_nothing_to_go():
    """ASHA can promote more than n // eta (an early promotion among fewer results), and a
    rung no cell will reach costs nothing, known or not."""
    runs = frame({0: [60.0] * 4, 1: [600.0, 600.0, 600.0]})
    forecast = ladder_forecast(runs, evaluations=4, eta=2, rungs=4)
    assert forecast["expected"].tolist() == [4, 3, 1, 0]  # rung 1: 3 > 4 // 2
    assert forecast["hours_left"].tolist() == pytest.approx([0.0, 0.0, 1 / 3, 0.0])
    assert hours_left(forecast) == pytest.approx(1 / 3)


def test_a_failed_training_is_still_to_go_and_costs_nothing_in_the_mean():
    runs = frame({0: [60.0] * 9, 1: [600.0, 1200.0], 2: [0.0]})
    runs.loc[runs.index[-1], "status"] = "failed"  # the top rung's one promotion failed
    forecast = ladder_forecast(runs, evaluations=9, eta=3, rungs=3)
    assert forecast["trained"].tolist() == [9, 2, 1]
    assert forecast["hours_each"].tolist() == pytest.approx([1 / 60, 0.25, 0.75])
    assert forecast["hours_left"].tolist() == pytest.approx([0.0, 0.25, 0.75])


def test_a_search_that_promotes_faster_than_asha_s_count_is_expected_to_go_on_so():
    """A search whose good cells keep coming is promoted past ``n // eta**k``: at 20 of 60
    cells it has 8 rung-1 and 4 rung-2 trainings, so about 24 and 12 by its end, not
    60 // 3 and 60 // 9."""
    runs = frame({0: [60.0] * 20, 1: [600.0] * 8, 2: [1800.0] * 4})
    forecast = ladder_forecast(runs, evaluations=60, eta=3, rungs=3)
    assert forecast["expected"].tolist() == [60, 24, 12]
    assert forecast["hours_left"].tolist() == pytest.approx([40 / 60, 16 / 6, 8 / 2])


def test_the_pace_is_the_device_s_that_trains_the_search_now():
    """A search moved to a GPU machine and back: its costs come from the trainings on the
    device of its latest one; rows that do not name their device are one group."""
    runs = frame({0: [360.0] * 9, 1: [1800.0] * 3})
    runs["device"] = None
    gpu = frame({0: [36.0] * 3, 1: [180.0]}).assign(device="cuda")
    moved = pd.concat([runs, gpu], ignore_index=True)
    on_gpu = ladder_forecast(moved, evaluations=18, eta=3, rungs=3)
    assert on_gpu["trained"].tolist() == [12, 4, 0]  # every device's trainings count
    assert on_gpu["hours_each"].tolist() == pytest.approx([0.01, 0.05, 0.15])
    back = pd.concat([moved, runs.iloc[:1]], ignore_index=True)  # a row from before the field
    on_cpu = ladder_forecast(back, evaluations=18, eta=3, rungs=3)
    assert on_cpu["hours_each"].tolist() == pytest.approx([0.1, 0.5, 1.5])


def test_a_rung_the_latest_device_has_not_trained_is_costed_from_the_others():
    """A log whose older rows do not name their device (written before the field) and whose
    newer ones do: the newest device has trained rungs 0 and 2 only. Rung 1 costs its older
    trainings' mean, not nothing, rung 2 its own and rung 3 three times rung 2."""
    older = frame({0: [360.0] * 9, 1: [1800.0] * 3, 2: [3600.0]}).assign(device=None)
    newer = frame({0: [720.0], 2: [7200.0]}).assign(device="cpu")
    forecast = ladder_forecast(pd.concat([older, newer], ignore_index=True),
                               evaluations=27, eta=3, rungs=4)
    assert forecast["hours_each"].tolist() == pytest.approx([0.2, 0.5, 2.0, 6.0])
    assert math.isfinite(hours_left(forecast))



def test_a_promotion_costs_its_own_seconds_estimated_in_rows_from_before_the_field(tmp_path):
    """A promotion's run continues the rung below's branch and its seconds count that
    run's too. Rows that log ``branch_seconds`` hold their own seconds already; in older
    rows the branch's share is the rung below's seconds, at rung 1 (whose rung below logs
    the whole probe) its tokens' share, so no hour is counted twice."""
    older = [{"hash": "a", "rung": 0, "seconds": 90.0, "rung_tokens": 100},
             {"hash": "a", "rung": 1, "seconds": 60.0, "rung_tokens": 300},
             {"hash": "a", "rung": 2, "seconds": 150.0},
             {"hash": "b", "rung": 0, "seconds": 90.0},
             {"hash": "b", "rung": 1, "seconds": 30.0},  # no tokens: 1/eta at the default
             {"hash": "d", "rung": 1, "seconds": 30.0}]  # nothing below it: taken whole
    newer = [{"hash": "c", "rung": 0, "seconds": 90.0, "branch_seconds": 0.0},
             {"hash": "c", "rung": 1, "seconds": 40.0, "branch_seconds": 20.0}]
    rows = [{**row, "status": "ok", "val_ppl": 100.0} for row in older + newer]
    assert own_seconds(rows) == pytest.approx([90.0, 40.0, 90.0, 90.0, 20.0, 30.0, 90.0, 40.0])
    log = tmp_path / "ladder-evaluations.jsonl"
    log.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert progress_frame([log])["seconds"].sum() == pytest.approx(490.0)
