"""Cycle detection: planted peaks and troughs are found, noise below the threshold is not."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.analysis.cycles import _alternate, detect_cycles, smooth, summarize_cycles


def _bumps(centres: list[float], n: int = 1200, width: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n, dtype=np.float64)
    return t, sum(np.exp(-((t - c) ** 2) / (2 * width**2)) for c in centres)


def test_three_planted_cycles_yield_three() -> None:
    t, s = _bumps([200, 550, 900])
    s = s + 0.03 * np.random.default_rng(0).standard_normal(t.size)
    cycles = detect_cycles(t, s, rel_prominence=0.3)
    assert len(cycles) == 3
    assert [c.peak_step for c in cycles] == pytest.approx([200, 550, 900], abs=15)
    for c in cycles:
        assert c.start_step < c.peak_step < c.trough_step and c.peak_value > c.trough_value + 0.5
    summary = summarize_cycles(cycles, 0.3)
    assert summary["n_cycles"] == 3 and len(summary["trough_steps"]) == 3


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5), st.integers(0, 10_000))
def test_planted_count_is_recovered(n_cycles: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = [150 + 180 * i for i in range(n_cycles)]
    t, s = _bumps(centres) if n_cycles else (np.arange(1200.0), np.zeros(1200))
    s = s + 0.02 * rng.standard_normal(t.size)
    assert len(detect_cycles(t, s, prominence=0.3)) == n_cycles


def test_edges_and_thresholds() -> None:
    t = np.arange(100.0)
    assert detect_cycles(t, -t) == []            # only falling from the first sample: no rise seen
    assert detect_cycles(t, t) == []             # rising to the end: focus without dilution
    assert detect_cycles(t, np.zeros(100)) == []
    s = np.sin(t / 5.0) * 0.01                   # oscillation below an absolute threshold
    assert detect_cycles(t, s, prominence=0.5) == []
    with pytest.raises(ValueError):
        detect_cycles(t, np.full(100, np.nan))
    with pytest.raises(ValueError):
        detect_cycles(t[:5], t)


def test_smoothing_removes_a_one_sample_blip() -> None:
    t, s = _bumps([600])
    s = s.copy()
    s[200] += 0.6                                  # a single-sample spike in the flat part
    assert len(detect_cycles(t, s, prominence=0.3)) == 2
    assert len(detect_cycles(t, s, prominence=0.3, smooth_window=9)) == 1
    np.testing.assert_allclose(smooth(np.arange(10.0), 3)[1:-1], np.arange(1.0, 9.0))
    np.testing.assert_allclose(smooth(np.ones(7), 4), np.ones(7))


def test_runs_of_one_kind_keep_the_most_extreme_and_the_earlier_on_a_tie() -> None:
    x5 = np.arange(5.0)
    # two peaks with a shallow dip (4 < prominence 6) between: one focus, the higher peak
    (c,) = detect_cycles(x5, np.array([0, 10, 5, 11, 0.0]), prominence=6)
    assert (c.start_step, c.peak_step, c.trough_step, c.peak_value) == (0.0, 3.0, 4.0, 11.0)
    (c,) = detect_cycles(x5, np.array([0, 10, 5, 10, 0.0]), prominence=6)
    assert c.peak_step == 1.0                                   # a tie keeps the first time it is reached
    x9 = np.arange(9.0)
    # two troughs with a shallow bump between: one dilution, the lower trough
    (c,) = detect_cycles(x9, np.array([0, 10, 5, 0, 4, -1, 5, 10, 9.0]), prominence=6)
    assert (c.trough_step, c.trough_value) == (5.0, -1.0)
    (c,) = detect_cycles(x9, np.array([0, 10, 5, -1, 4, -1, 5, 10, 9.0]), prominence=6)
    assert c.trough_step == 3.0


def test_alternate_merges_a_run_of_one_kind_into_its_most_extreme_event() -> None:
    # with one prominence for both kinds find_peaks already alternates them (a run is a tie at most);
    # the merge is the contract for inputs that do not: the higher peak, the lower trough, the first on a tie
    s = np.array([0.0, 7.0, 5.0, 9.0, 1.0, 3.0, 0.5, 4.0, 9.0, 9.0])
    assert _alternate(np.array([1, 3]), np.array([0, 4, 6]), s) == [(0, "trough"), (3, "peak"), (6, "trough")]
    assert _alternate(np.array([3, 1]), np.array([6, 4]), s) == [(3, "peak"), (6, "trough")]   # unsorted input
    assert _alternate(np.array([8, 9]), np.array([]), s) == [(8, "peak")]                       # a tie: the first
    assert _alternate(np.array([3]), np.array([4, 2]), s) == [(2, "trough"), (3, "peak"), (4, "trough")]


def test_cycle_starts_at_the_trough_before_its_peak() -> None:
    t, s = _bumps([200, 550, 900])
    cycles = detect_cycles(t, s, rel_prominence=0.3)
    assert cycles[0].start_step == 0.0                          # no trough before the first peak
    assert [c.start_step for c in cycles[1:]] == [c.trough_step for c in cycles[:-1]]
    assert cycles[-1].trough_step == 1199.0                     # the run ends diluted: the last sample


def test_a_final_fall_between_one_and_two_prominences_is_a_trough() -> None:
    s = np.array([0, 0.5, 1.0, 0.85, 0.7])                      # range 1, prominence 0.2, final fall 0.3
    (c,) = detect_cycles(np.arange(5.0), s)
    assert (c.peak_step, c.trough_step, c.trough_value) == (2.0, 4.0, 0.7)
    assert detect_cycles(np.arange(5.0), np.array([0, 0.5, 1.0, 0.95, 0.9])) == []  # fell 0.1 < 0.2


def test_length_and_threshold_limits() -> None:
    (c,) = detect_cycles(np.arange(3.0), np.array([0, 1, 0.0]))  # three samples suffice
    assert (c.peak_step, c.trough_step) == (1.0, 2.0)
    assert detect_cycles(np.arange(2.0), np.array([0, 1.0])) == []
    t = np.arange(100.0)
    wiggle = np.sin(t / 3.0)
    assert len(detect_cycles(t, wiggle, prominence=1.0)) > 3    # control: the wiggle has cycles
    assert detect_cycles(t, wiggle, prominence=0.0) == []       # a zero threshold counts nothing
    with pytest.raises(ValueError):
        detect_cycles(np.zeros((4, 3)), np.zeros((4, 3)))       # equal shapes but not 1-D
    with pytest.raises(ValueError):
        detect_cycles(t, wiggle, prominence=None, rel_prominence=None)


def test_smooth_edges_reflect_or_repeat_and_short_inputs() -> None:
    assert smooth(np.arange(10.0), 3)[[0, -1]].tolist() == pytest.approx([2 / 3, 9 - 2 / 3])  # [1 0 1], [8 9 8]
    assert smooth(np.array([1.0, 3.0]), 5).tolist() == pytest.approx([9 / 5, 11 / 5])        # too short: edge
    assert smooth(np.array([]), 3).shape == (0,) and smooth(np.array([4.0]), 3).tolist() == [4.0]
    s = np.array([1.0, 2.0, 4.0])
    out = smooth(s, 1)
    assert out.tolist() == s.tolist() and out is not s
    assert smooth([1, 2, 4], 1).dtype == smooth([1, 2, 4], 3).dtype == np.float64   # integers: float64 always


def test_summary_carries_the_steps_and_the_threshold() -> None:
    t, s = _bumps([300, 800])
    cycles = detect_cycles(t, s, prominence=0.3)
    summary = summarize_cycles(cycles, 0.3)
    assert summary["prominence"] == 0.3 and summary["n_cycles"] == 2
    assert summary["peak_steps"] == [c.peak_step for c in cycles] == [300.0, 800.0]
    assert summary["trough_steps"] == [c.trough_step for c in cycles]
    assert summary["cycles"][1] == {"start_step": cycles[1].start_step, "peak_step": 800.0,
                                    "trough_step": cycles[1].trough_step, "peak_value": cycles[1].peak_value,
                                    "trough_value": cycles[1].trough_value}


def test_start_is_the_trough_before_the_first_peak_even_when_it_is_not_sample_zero() -> None:
    cycles = detect_cycles(np.arange(6.0), np.array([3.0, 0.0, 10.0, 0.0, 10.0, 0.0]), prominence=2)
    assert [(c.start_step, c.peak_step, c.trough_step) for c in cycles] == [(1.0, 2.0, 3.0), (3.0, 4.0, 5.0)]


def test_relative_threshold_is_shift_invariant_and_errors_say_what_is_wrong() -> None:
    t = np.arange(1000.0)
    s = np.cos(2 * np.pi * t / 300) + 0.5 * np.cos(2 * np.pi * t / 70)
    base = detect_cycles(t, s, rel_prominence=0.3)
    assert len(base) > 2
    assert detect_cycles(t, s + 100.0, rel_prominence=0.3) == [
        type(c)(c.start_step, c.peak_step, c.trough_step, c.peak_value + 100.0, c.trough_value + 100.0) for c in base]
    with pytest.raises(ValueError, match="^steps and signal must be 1-D of equal length$"):
        detect_cycles(t[:5], s)
    with pytest.raises(ValueError, match="^signal has non-finite values$"):
        detect_cycles(t, np.where(t == 3, np.inf, s))
    with pytest.raises(ValueError, match="^give prominence or rel_prominence$"):
        detect_cycles(t, s, prominence=None, rel_prominence=None)


def test_low_precision_signals_are_computed_in_float64() -> None:
    t, s = _bumps([300, 800])
    s16, t16 = s.astype(np.float16), t.astype(np.float32)
    want = detect_cycles(t16.astype(float), s16.astype(float), rel_prominence=0.3, smooth_window=9)
    assert detect_cycles(t16, s16, rel_prominence=0.3, smooth_window=9) == want and len(want) == 2
    np.testing.assert_array_equal(smooth(s16, 9), smooth(s16.astype(float), 9))
    assert smooth(s16, 9).dtype == np.float64
    from attnlife.analysis.cycles import cycle_rows

    import pandas as pd

    pd.testing.assert_frame_equal(pd.DataFrame(cycle_rows(t16, s16, rel_prominence=0.3, smooth_window=9)),
                                  pd.DataFrame(cycle_rows(t16.astype(float), s16.astype(float), rel_prominence=0.3,
                                                          smooth_window=9)))


def test_smooth_window_two_and_short_signals_padded_by_their_edge() -> None:
    np.testing.assert_allclose(smooth(np.array([0.0, 2.0, 4.0, 8.0]), 2), [1.0, 1.0, 3.0, 6.0])  # pad (1, 0): [2 0 2 4 8]
    np.testing.assert_allclose(smooth(np.array([1.0, 4.0, 10.0]), 7), [4.0, 37 / 7, 46 / 7])  # edge, not reflect
    np.testing.assert_allclose(smooth(np.array([1.0, 4.0]), 4), [7 / 4, 10 / 4])    # len == half: edge
    np.testing.assert_allclose(smooth(np.array([1.0, 4.0, 2.0]), 4), [11 / 4] * 3)  # len > half: reflect [2 4 1 4 2 4]
