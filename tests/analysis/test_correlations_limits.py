"""Correlations at their limits: the headline filter at alpha and its order, the empty answer of a
test it cannot run, the permutation path's n, the residual kind at RESID_MIN_N points, a kind
given as None, and the smooth trend's degree."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis import correlations as C


def _table(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"x": f"x{i}", "kind": kind, "rho": rho, "p_bh": p} for i, (kind, rho, p) in enumerate(rows)])


def test_findings_keep_change_kinds_strictly_below_alpha_strongest_first_ties_in_order() -> None:
    table = _table([("steps_resid", 0.5, 0.01), ("steps_raw", 0.99, 0.0001),      # a co-trend: never
                    ("steps_resid", -0.7, 0.02), ("runs", 0.9, 0.05),              # at alpha: not below it
                    ("head_weights_resid", 0.7, 0.049999), ("runs", -0.95, 0.001)])
    got = C.findings(table, alpha=0.05)
    assert got.x.tolist() == ["x5", "x2", "x4", "x0"]                     # |rho| 0.95, 0.7, 0.7 (input order), 0.5
    assert C.findings(table, alpha=0.0500001).x.tolist() == ["x5", "x3", "x2", "x4", "x0"]
    assert C.findings(table.iloc[:0]).empty


def test_a_test_that_cannot_run_says_so_with_nans_and_no_method() -> None:
    t = C.rank_test([1.0, 2.0, 3.0], [3.0, 1.0, 2.0])                    # n = 3 < MIN_N
    assert t.n == 3 and t.method == "" and all(math.isnan(v) for v in (t.rho, t.p, t.p_min))
    flat = C.rank_test([1.0, 2.0, 3.0, 4.0], [5.0] * 4)                   # a constant side
    assert flat.n == 4 and flat.method == "" and math.isnan(flat.p_min)


def test_permutation_path_reports_its_n() -> None:
    x = np.arange(12, dtype=float)
    y = x + np.array([0.3, -0.2, 0.1, 0.4, -0.5, 0.2, -0.1, 0.6, -0.3, 0.2, 0.1, -0.4]) * 3
    t = C.rank_test(x, y)
    assert (t.n, t.method) == (12, "permutation") and t.p_min == 1 / (1 + C.RESAMPLES)
    assert C.rank_test(x[:9], y[:9]).method == "exact"                   # EXACT_MAX_N = 9: still exact


def _series(n: int, seed: int) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    steps = 2 ** np.arange(n)
    return pd.Series(rng.normal(size=n), index=steps), pd.Series(rng.normal(size=n), index=steps)


def test_residual_rows_start_at_resid_min_n_points_and_none_kinds_are_skipped() -> None:
    names = ("entropy_bits", 0, -1, "val_loss")
    x, y = _series(C.RESID_MIN_N, 1)
    assert [r["kind"] for r in C.paired_rows(x, y, names)] == ["steps_raw", "steps_diff", "steps_resid"]
    short = [r["kind"] for r in C.paired_rows(x.iloc[1:], y.iloc[1:], names)]
    assert short == ["steps_raw", "steps_diff"]                           # 7 points: no residual row
    only = C.paired_rows(x, y, names, kinds=("a", None, "c"))
    assert [r["kind"] for r in only] == ["a", "c"]
    resid = only[1]
    want = C.rank_test(C.smooth_residuals(x.index.to_numpy(), x.to_numpy()),
                       C.smooth_residuals(x.index.to_numpy(), y.to_numpy()))
    assert (resid["rho"], resid["p"], resid["n"]) == (want.rho, want.p, want.n)


def test_smooth_trend_is_a_cubic_in_log_steps() -> None:
    steps = np.array([0, 1, 3, 7, 15, 40, 100, 300, 1000, 3000], dtype=float)
    u = np.log1p(steps)
    cubic = 2.0 - u + 0.5 * u**2 - 0.1 * u**3
    assert np.abs(C.smooth_residuals(steps, cubic)).max() < 1e-9          # a cubic trend leaves nothing
    quartic = cubic + 0.05 * u**4
    ref = quartic - np.polyval(np.polyfit(u, quartic, 3), u)              # float64 least squares, degree 3
    got = C.smooth_residuals(steps, quartic)
    assert np.abs(got).max() > 1e-3 and got == pytest.approx(ref, abs=1e-9)


def test_untied_permutation_p_depends_on_rho_only() -> None:
    """Above EXACT_MAX_N the null of untied data is one seeded table of rank arrangements (the same
    for every untied y), so two untied y with the same rho against x get the same p; y2, the
    reversed complement of y1, has the same rank sum of products as y1 but another arrangement."""
    x = np.arange(12, dtype=float)
    y1 = np.array([9, 11, 10, 4, 0, 7, 3, 5, 8, 2, 6, 1], dtype=float)
    y2 = 11 - y1[::-1]
    t1, t2 = C.rank_test(x, y1), C.rank_test(x, y2)
    assert t1.method == "permutation" and not np.array_equal(y1, y2)
    assert t1.rho == pytest.approx(t2.rho, abs=1e-15) and t1.p == t2.p


def test_findings_keep_the_input_order_of_many_ties() -> None:
    """80 findings with three |rho| values: strongest first, ties in input order (a quicksort, which
    numpy uses for sort_values by default, reorders ties above 16 elements)."""
    rho = np.tile([0.5, -0.5, 0.7, 0.5], 20)
    table = pd.DataFrame({"x": [f"x{i}" for i in range(80)], "kind": "steps_resid", "rho": rho, "p_bh": 0.01})
    want = sorted(range(80), key=lambda i: (-abs(rho[i]), i))
    assert C.findings(table).x.tolist() == [f"x{i}" for i in want]
