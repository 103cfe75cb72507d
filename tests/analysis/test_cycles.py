"""Cycle detection: planted peaks and troughs are found, noise below the threshold is not."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.analysis.cycles import detect_cycles, smooth, summarize_cycles


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
