"""The figures' stated rules on planted inputs: trailing smoothing, the step-axis choice, change-based
slices, spectrum separation, title wrapping (docs/report.md, "Rules every figure follows")."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.report.figures_spectra import separation_steps
from attnlife.report.figures_training import smoothing_window, trailing_mean
from attnlife.report.panels import slice_indices
from attnlife.report.style import axis_position, change_share, choose_step_scale, wrap_to


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=60, unique=True),
       st.integers(0, 2**31 - 1))
def test_trailing_mean_equals_a_loop_and_keeps_step_zero_raw(steps, seed):
    steps = np.sort(np.asarray(steps, dtype=float))
    values = np.random.default_rng(seed).normal(size=len(steps))
    got = trailing_mean(steps, values)
    for i, s in enumerate(steps):
        w = min(50, max(1, int(np.ceil(0.1 * (s + 1)))))
        window = values[(steps > s - w) & (steps <= s)]
        assert got[i] == pytest.approx(window.mean(), abs=1e-12)
    assert got[0] == pytest.approx(values[0])          # nothing later leaks into the first point
    assert smoothing_window(np.array([0, 9, 10, 499, 10_000])).tolist() == [1, 1, 2, 50, 50]


def test_change_share_normalises_each_series_and_falls_back_to_spacing():
    steps = np.array([0, 1, 2, 3])
    a = np.array([0.0, 3.0, 3.0, 3.0])            # all of its change in the first interval
    b = np.array([0.0, 0.0, 0.0, 100.0])          # all in the last, in other units
    assert change_share(steps, np.stack([a, b], 1)).tolist() == pytest.approx([0, 0.5, 0.5, 1.0])
    assert change_share(steps, np.zeros(4)).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_step_scale_follows_where_the_run_changes():
    s = np.arange(0, 2001, 10, dtype=float)
    assert choose_step_scale(s, s * 0.01) is None                         # steady change: linear
    assert choose_step_scale(s, 1.5 + 2.7 * np.exp(-s / 150)) is not None  # early change: symmetric log
    t = choose_step_scale(s, 1.5 + 2.7 * np.exp(-s / 150))
    # the chosen axis is the candidate with the smallest largest gap (within the 0.02 tie rule)
    change = change_share(s, 1.5 + 2.7 * np.exp(-s / 150))

    def gap(cand):  # noqa: ANN001, ANN202
        pos = axis_position(s, cand)
        return np.max(np.abs((pos - pos[0]) / (pos[-1] - pos[0]) - change))

    candidates = [None] + [2.0 ** k for k in range(12) if 2.0 ** k < 2000 / 8]
    assert gap(t) <= min(gap(c) for c in candidates) + 0.02
    assert gap(t) < gap(None) - 0.2                                      # far better than linear
    checkpoints = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 750, 1000, 1250, 1500, 1750, 2000.0])
    assert choose_step_scale(checkpoints, np.minimum(checkpoints, 8)) == 1.0  # all change in 0..8
    # evals every 250 steps: most change lies between 0 and 250, but no log axis may stretch that
    # unmeasured interval over more than a quarter of the width
    evals = np.arange(0, 2001, 250, dtype=float)
    assert choose_step_scale(evals, 1.5 + 2.7 * np.exp(-evals / 150)) is None


def test_slices_fall_where_the_values_change():
    values = np.r_[np.zeros(10), np.linspace(0, 1, 11)[1:], np.ones(10)]  # change only at 10..19
    idx = slice_indices(len(values), 5, values)
    assert idx[0] == 0 and idx[-1] == len(values) - 1
    assert all(9 <= i <= 20 for i in idx[1:-1]) and len(idx) == 5
    assert slice_indices(11, 5) == [0, 2, 5, 8, 10]                      # without values: even spread


def test_separation_step_is_where_the_top_ratio_doubles():
    steps = np.array([0, 1, 2, 4, 8, 16])
    lam4 = np.ones((6, 2))
    lam1 = np.stack([np.exp([0.2, 0.25, 0.3, 0.35, 0.8, 1.0]),          # ln ratio 0.2 -> 0.4 reached at 8
                     np.exp([0.5, 0.5, 0.6, 0.7, 0.8, 0.9])], axis=1)   # never doubles
    sep = separation_steps(steps, lam1, lam4)
    assert sep[0] == 8 and np.isinf(sep[1])
    assert separation_steps(steps, lam1 * 7.0, lam4 * 7.0).tolist() == sep.tolist()  # scale-free


def test_wrapped_titles_fit_their_width():
    text = "Cross-layer divergence at step 2,000: L0-L3 most different (JSD 0.350 bits), L0-L1 most alike"
    lines = wrap_to(text, 3.0, 10).split("\n")
    assert len(lines) > 1 and all(len(line) <= 3.0 * 72 / (0.6 * 10) for line in lines)
    assert " ".join(lines) == text
