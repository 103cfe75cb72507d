"""cycle_rows: closed focus-dilution-recovery cycles are counted, open ones reported but not counted."""
from __future__ import annotations

import numpy as np
import pytest

from attnlife.analysis.cycles import cycle_rows


def test_two_closed_cycles_and_an_open_one() -> None:
    steps = np.arange(0, 400, 1.0)
    signal = np.cos(2 * np.pi * steps / 100)      # peaks at 100, 200, 300; ends diluted at 350+
    signal = signal[:360]
    rows = cycle_rows(steps[:360], signal, rel_prominence=0.5)
    closed = [r for r in rows if r["status"] == "closed"]
    opened = [r for r in rows if r["status"] == "open"]
    assert [r["start_step"] for r in closed] == [100.0, 200.0]
    assert [r["trough_step"] for r in closed] == [150.0, 250.0]
    assert [r["period_steps"] for r in closed] == [100.0, 100.0]
    assert closed[0]["prominence"] == pytest.approx(2.0)
    assert len(opened) == 1 and opened[0]["start_step"] == 300.0 and opened[0]["end_step"] == 359.0
    assert np.isnan(opened[0]["period_steps"])


def test_run_ending_at_the_trough_is_open_not_counted() -> None:
    steps = np.arange(50.0)
    signal = np.r_[np.linspace(0, 1, 25), np.linspace(1, 0, 25)]  # one focus, dilution to the end
    rows = cycle_rows(steps, signal)
    assert [r["status"] for r in rows] == ["open"]


def test_monotone_signal_has_no_cycle() -> None:
    assert cycle_rows(np.arange(20.0), np.linspace(5, 1, 20)) == []


def test_rows_follow_the_threshold_and_refuse_bad_signals() -> None:
    steps = np.arange(9.0)
    signal = np.array([0, 10, 5, 0, 4, -1, 5, 10, 0.0])
    rows = cycle_rows(steps, signal, prominence=6)
    assert [(r["start_step"], r["trough_step"], r["end_step"], r["status"]) for r in rows] == \
        [(1.0, 5.0, 7.0, "closed"), (7.0, 8.0, 8.0, "open")]
    assert rows[0]["period_steps"] == 6.0 and rows[0]["prominence"] == 11.0
    assert cycle_rows(steps, signal, prominence=0.0) == []
    assert cycle_rows(steps, signal, rel_prominence=0.0) == []
    assert len(cycle_rows(steps, signal, rel_prominence=0.5)) == 2          # 0.5 * 11 = 5.5: same extrema
    assert cycle_rows(steps, np.where(steps == 4, np.nan, signal)) == []   # non-finite: no rows
    assert cycle_rows(steps, np.where(steps == 4, np.nan, signal), prominence=6) == []   # nor with a given one
    assert cycle_rows(steps[:2], signal[:2]) == []
    t = np.arange(0, 260, 1.0)
    (closed, *_) = cycle_rows(t, np.cos(2 * np.pi * t / 100), rel_prominence=0.5, smooth_window=3)
    peak = (1 + 2 * np.cos(2 * np.pi / 100)) / 3                            # the 3-sample mean at a peak
    assert closed["prominence"] == pytest.approx(2 * peak, rel=1e-12) and closed["start_step"] == 100.0


def test_three_samples_suffice_for_a_row() -> None:
    assert cycle_rows(np.arange(3.0), np.array([0.0, 1.0, 0.0])) == [
        {"start_step": 1.0, "trough_step": 2.0, "end_step": 2.0, "period_steps": pytest.approx(float("nan"), nan_ok=True),
         "prominence": 1.0, "status": "open"}]


def test_a_non_finite_sample_anywhere_gives_no_rows() -> None:
    """Three samples or more with one NaN or infinity (here the last, where the peaks before it would
    still be found) give no rows, with a given prominence as with the relative one."""
    steps = np.arange(7) * 10.0
    for last in (np.nan, np.inf, -np.inf):
        signal = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, last])
        assert cycle_rows(steps, signal, prominence=0.5) == [], last
        assert cycle_rows(steps, signal) == [], last
    assert cycle_rows(steps, np.array([0.0, 1.0, 0.0, 1.0, 0.0, np.inf, 0.0])) == []
    assert len(cycle_rows(steps, np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]), prominence=0.5)) == 3
