"""Spearman rows and Benjamini-Hochberg adjustment against a hand computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.correlations import MIN_N, bh_adjust, finish, paired_rows, spearman


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
    # one row per kind: BH of a single p is p itself
    assert table.p_bh.tolist() == pytest.approx(table.p.tolist())


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
    assert empty.empty and list(empty.columns) == ["x", "x_layer", "x_head", "y", "kind", "rho", "p", "p_bh", "n"]
    rows = [{"x": f"m{i}", "x_layer": -1, "x_head": -1, "y": "v", "kind": "steps_diff", "rho": (-1) ** i * (i % 3) / 4,
             "p": 0.5, "n": 9} for i in range(40)]
    table = finish(rows)
    want = sorted(range(40), key=lambda i: -abs(rows[i]["rho"]))          # Python's sort is stable
    assert table.x.tolist() == [f"m{i}" for i in want]
    assert bh_adjust(np.array([0.01, 0.2], dtype=np.float16)).dtype == np.float64


def test_paired_rows_carry_the_names() -> None:
    x = pd.Series([5.0, 4.0, 3.5, 3.4, 3.3, 3.25], index=[0, 10, 20, 30, 40, 50])
    y = pd.Series([4.0, 3.0, 2.6, 2.45, 2.40, 2.39], index=[0, 10, 20, 30, 40, 50])
    (raw, diff) = paired_rows(x, y, ("span_tokens", 2, 1, "distinct_2"))
    assert {k: raw[k] for k in ("x", "x_layer", "x_head", "y", "kind", "n")} == {
        "x": "span_tokens", "x_layer": 2, "x_head": 1, "y": "distinct_2", "kind": "steps_raw", "n": 6}
    assert set(raw) == set(diff) == {"x", "x_layer", "x_head", "y", "kind", "rho", "p", "n"}
