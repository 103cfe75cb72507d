"""Spearman rows and Benjamini-Hochberg adjustment against a hand computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.correlations import bh_adjust, finish, paired_rows, spearman


def test_bh_matches_hand_computation() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.20])
    # sorted 0.01, 0.03, 0.04, 0.20 -> m/i * p = 0.04, 0.06, 0.05333, 0.20; running min from the top
    expected = np.array([0.04, 0.05333333, 0.05333333, 0.20])
    assert bh_adjust(p) == pytest.approx(expected, rel=1e-6)
    with_nan = bh_adjust(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])


def test_spearman_closed_forms() -> None:
    rho, p, n = spearman(np.arange(6.0), np.arange(6.0) ** 3)
    assert rho == pytest.approx(1.0) and n == 6 and p < 0.01
    rho, _, _ = spearman(np.arange(6.0), -np.exp(np.arange(6.0)))
    assert rho == pytest.approx(-1.0)
    assert np.isnan(spearman(np.arange(3.0), np.arange(3.0))[0])  # n < 4
    assert np.isnan(spearman(np.arange(6.0), np.ones(6))[0])        # constant side


def test_paired_rows_raw_and_diff_on_common_steps() -> None:
    x = pd.Series([5.0, 4.0, 3.5, 3.4, 3.3, 3.25], index=[0, 10, 20, 30, 40, 50])
    y = pd.Series([4.0, 3.0, 2.5, 2.45, 2.40, 2.39, 9.9], index=[0, 10, 20, 30, 40, 50, 60])
    rows = paired_rows(x, y, ("entropy_bits", -1, -1, "val_loss"))
    raw = next(r for r in rows if r["kind"] == "steps_raw")
    diff = next(r for r in rows if r["kind"] == "steps_diff")
    assert raw["n"] == 6 and raw["rho"] == pytest.approx(1.0)
    assert diff["n"] == 5
    table = finish(rows)
    assert list(table.columns) == ["x", "x_layer", "x_head", "y", "kind", "rho", "p", "p_bh", "n"]
    assert (table.p_bh >= table.p).all()
