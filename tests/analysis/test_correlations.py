"""Spearman rows: exact and permutation p-values (never 0) against closed forms and scipy, changes vs
trends, and Benjamini-Hochberg against a hand computation."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from attnlife.analysis.correlations import (COLUMNS, MIN_N, RESAMPLES, bh_adjust, finish, findings, paired_rows,
                                            rank_test, smooth_residuals, spearman)


def bh_reference(p: list[float]) -> list[float]:
    """Benjamini-Hochberg by hand: p_bh_(i) = min_{j >= i} (m / j) p_(j), capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, m / rank * p[i])
        out[i] = running
    return out


def test_bh_matches_hand_computation() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.20])
    # sorted 0.01, 0.03, 0.04, 0.20 -> m/i * p = 0.04, 0.06, 0.05333, 0.20; running min from the top
    expected = np.array([0.04, 0.05333333, 0.05333333, 0.20])
    assert bh_adjust(p) == pytest.approx(expected, rel=1e-6)
    with_nan = bh_adjust(np.array([0.01, np.nan, 0.04]))
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx([0.02, 0.04])


@pytest.mark.parametrize("n", [4, 6, 9])
def test_perfect_rank_agreement_has_the_exact_minimum_p(n: int) -> None:
    t = rank_test(np.arange(n, dtype=float), np.arange(n, dtype=float) ** 3)
    assert t.rho == pytest.approx(1.0) and t.n == n and t.method == "exact"
    assert t.p == pytest.approx(2 / math.factorial(n)) and t.p_min == pytest.approx(2 / math.factorial(n))
    assert spearman(np.arange(n, dtype=float), -np.exp(np.arange(n, dtype=float)))[0] == pytest.approx(-1.0)


def test_degenerate_inputs() -> None:
    assert np.isnan(spearman(np.arange(3.0), np.arange(3.0))[0])  # n < 4
    assert np.isnan(spearman(np.arange(6.0), np.ones(6))[0])        # constant side


@pytest.mark.parametrize("seed", range(4))
def test_exact_p_equals_a_brute_force_enumeration_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=6)
    y = np.round(x + rng.normal(size=6), 0)  # ties in y
    obs = stats.spearmanr(x, y).statistic
    every = [stats.spearmanr(x, y[list(perm)]).statistic for perm in itertools.permutations(range(6))]
    t = rank_test(x, y)
    assert t.method == "exact"
    assert t.rho == pytest.approx(obs, abs=1e-12)
    assert t.p == pytest.approx(np.mean(np.abs(every) >= abs(obs) - 1e-12), abs=1e-12)


def test_permutation_p_for_larger_n_agrees_with_the_t_approximation() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=30)
    y = 0.4 * x + rng.normal(size=30)
    t = rank_test(x, y)
    assert t.method == "permutation" and t.p_min == pytest.approx(1 / (1 + RESAMPLES))
    assert t.p == pytest.approx(stats.spearmanr(x, y).pvalue, abs=3 * math.sqrt(0.05 / RESAMPLES) + 0.005)
    perfect = rank_test(np.arange(30.0), np.arange(30.0))
    assert perfect.p == pytest.approx(1 / (1 + RESAMPLES))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=4, max_size=14))
def test_p_is_never_zero_and_never_below_p_min(pairs: list[tuple[float, float]]) -> None:
    x, y = np.array(pairs).T
    t = rank_test(x, y)
    if np.isfinite(t.rho):
        assert 0 < t.p_min <= t.p <= 1


def test_smooth_residuals_remove_a_log_trend() -> None:
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 250, 500])
    trend = 3 - 0.4 * np.log1p(steps) + 0.01 * np.log1p(steps) ** 2
    assert np.abs(smooth_residuals(steps, trend)).max() < 1e-10


def _series(values: np.ndarray, steps: np.ndarray) -> pd.Series:
    return pd.Series(values, index=steps)


def test_co_trending_series_are_not_a_finding_but_shared_wiggles_are() -> None:
    """Two series that share only a falling trend: raw rho ~ 1, residuals independent, and the
    first differences still correlate (log-spaced intervals). Two that also share their
    deviations: the residual correlation finds it."""
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 768, 1024, 1536, 2048])
    rng = np.random.default_rng(0)
    trend = 4 - 0.3 * np.log1p(steps)
    x = _series(trend + 0.02 * rng.normal(size=16), steps)
    y = _series(2 * trend + 0.04 * rng.normal(size=16), steps)
    rows = paired_rows(x, y, ("entropy_bits", -1, -1, "probe_loss_nats"))
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["steps_raw"]["rho"] > 0.95 and by_kind["steps_raw"]["p"] < 1e-3
    assert by_kind["steps_resid"]["p"] > 0.05
    assert by_kind["steps_diff"]["p"] < 0.05  # differences of log-spaced trends still co-trend
    assert findings(finish(rows)).empty
    wiggle = 0.1 * rng.normal(size=16)
    rows = paired_rows(_series(trend + wiggle, steps), _series(2 * trend + 2 * wiggle + 0.02 * rng.normal(size=16), steps),
                       ("entropy_bits", -1, -1, "probe_loss_nats"))
    found = findings(finish(rows))
    assert set(found.kind) == {"steps_resid"}


def test_paired_rows_raw_and_diff_on_common_steps() -> None:
    x = pd.Series([5.0, 4.0, 3.5, 3.4, 3.3, 3.25], index=[0, 10, 20, 30, 40, 50])
    y = pd.Series([4.0, 3.0, 2.5, 2.45, 2.40, 2.39, 9.9], index=[0, 10, 20, 30, 40, 50, 60])
    rows = paired_rows(x, y, ("entropy_bits", -1, -1, "val_loss"))
    raw = next(r for r in rows if r["kind"] == "steps_raw")
    diff = next(r for r in rows if r["kind"] == "steps_diff")
    assert raw["n"] == 6 and raw["rho"] == pytest.approx(1.0) and raw["p"] == pytest.approx(2 / 720)
    assert diff["n"] == 5
    assert not any(r["kind"] == "steps_resid" for r in rows)  # 6 points < RESID_MIN_N
    table = finish(rows)
    assert list(table.columns) == COLUMNS
    # one row per kind: BH of a single p is that p (the raw row's exact 2 / 720, the diff row's own)
    assert table.set_index("kind").p_bh.to_dict() == pytest.approx({"steps_raw": 2 / 720, "steps_diff": diff["p"]},
                                                                   rel=1e-12)


def test_finish_adjusts_within_each_kind_and_orders_by_abs_rho() -> None:
    def row(kind: str, rho: float, p: float) -> dict:
        return {"x": "entropy_bits", "x_layer": -1, "x_head": -1, "y": "val_loss", "kind": kind,
                "rho": rho, "p": p, "n": 8}

    raw = [row("steps_raw", 0.9, 0.01), row("steps_raw", -0.95, 0.04), row("steps_raw", 0.2, 0.03),
           row("steps_raw", 0.5, 0.20)]
    diff = [row("steps_diff", -0.3, 0.02), row("steps_diff", 0.6, 0.5)]
    table = finish(raw + diff)
    assert table.rho.tolist() == [-0.95, 0.9, 0.6, 0.5, -0.3, 0.2]          # |rho| descending
    got = dict(zip(zip(table.kind, table.p), table.p_bh))
    for group in (raw, diff):                                               # m = rows of that kind
        ps = [r["p"] for r in group]
        for p, want in zip(ps, bh_reference(ps)):
            assert got[(group[0]["kind"], p)] == pytest.approx(want, rel=1e-12)
    assert got[("steps_raw", 0.01)] == pytest.approx(0.04)                  # 4/1 * 0.01, not 6/1 * 0.01
    assert got[("steps_diff", 0.02)] == pytest.approx(0.04)                 # 2/1 * 0.02
    tie = finish([row("steps_raw", 0.5, 0.1), row("steps_raw", -0.5, 0.2)])
    assert tie.p.tolist() == [0.1, 0.2]                                     # equal |rho|: input order kept


def test_spearman_needs_min_n_finite_pairs_exactly() -> None:
    x = np.arange(float(MIN_N))
    rho, p, n = spearman(x, np.r_[0.0, 2.0, 1.0, 3.0])                     # exactly MIN_N pairs: defined
    assert (rho, n) == (pytest.approx(0.8), MIN_N) and 0 < p < 1
    with_gap = np.r_[x, 99.0]
    y = np.r_[x**2, np.nan]                                                 # a NaN on one side drops the pair
    assert spearman(with_gap, y)[2] == MIN_N and spearman(with_gap, y)[0] == pytest.approx(1.0)
    short = spearman(x[:-1], x[:-1])                                        # MIN_N - 1 pairs: undefined
    assert np.isnan(short[0]) and np.isnan(short[1]) and short[2] == MIN_N - 1


def test_constant_series_are_skipped_without_a_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")                                      # scipy warns on constant input
        assert np.isnan(spearman(np.ones(6), np.arange(6.0))[0])
        assert np.isnan(spearman(np.arange(6.0), np.ones(6))[0])


def test_finish_of_nothing_and_stable_order_of_many_ties() -> None:
    empty = finish([])
    assert empty.empty and list(empty.columns) == COLUMNS
    rows = [{"x": f"m{i}", "x_layer": -1, "x_head": -1, "y": "v", "kind": "steps_diff", "rho": (-1) ** i * (i % 3) / 4,
             "p": 0.5, "n": 9} for i in range(40)]
    table = finish(rows)
    want = sorted(range(40), key=lambda i: -abs(rows[i]["rho"]))          # Python's sort is stable
    assert table.x.tolist() == [f"m{i}" for i in want]
    assert table.p_bh.dtype == empty.p_bh.dtype == np.float64 and table.p_bh.tolist() == [0.5] * 40
    assert bh_adjust(np.array([0.01, 0.2], dtype=np.float16)).dtype == np.float64


def test_paired_rows_carry_the_names() -> None:
    x = pd.Series([5.0, 4.0, 3.5, 3.4, 3.3, 3.25], index=[0, 10, 20, 30, 40, 50])
    y = pd.Series([4.0, 3.0, 2.6, 2.45, 2.40, 2.39], index=[0, 10, 20, 30, 40, 50])
    (raw, diff) = paired_rows(x, y, ("span_tokens", 2, 1, "distinct_2"))
    assert {k: raw[k] for k in ("x", "x_layer", "x_head", "y", "kind", "n")} == {
        "x": "span_tokens", "x_layer": 2, "x_head": 1, "y": "distinct_2", "kind": "steps_raw", "n": 6}
    assert set(raw) == set(diff) == {"x", "x_layer", "x_head", "y", "kind", "rho", "p", "n", "p_min", "method"}
