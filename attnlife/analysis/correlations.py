"""Spearman rank correlations with exact or permutation p-values, and Benjamini-Hochberg (pure).

Each row of the `correlations` table is one Spearman rank correlation between series x and y over
n paired finite values (rho = Pearson correlation of the midranks), tested two-sided by
permutation of y's ranks against x's:

- n <= EXACT_MAX_N (9): every one of the n! arrangements (exact);
  p = #{perm: |rho_perm| >= |rho|} / n! (the observed arrangement counts, so p >= 1/n!);
- larger n: RESAMPLES (9999) seeded random permutations; p = (1 + #{|rho_perm| >= |rho|}) / (1 + 9999).

p is never 0. `p_min` is the smallest p this n (and these ties) can give: exact, the share of
arrangements reaching the largest |rho| (2 / n! without ties: rho = +1 and -1; 2/9! = 5.5e-6 at
n = 9, 1/12 at n = 4); by permutation, 1 / 10000. `method` says which.

Kinds (pairs with n < MIN_N are skipped, as are constant series):
- `steps_raw`: across the steps both were measured at: two training trends, *not a finding*
  (kept for reference; the summary never reports it);
- `steps_diff`: the same on first differences (x_{k+1} - x_k). Reference only: on log-spaced
  checkpoints the intervals grow, so the differences of two falling trends share the trend's
  shape (large early, small late) and correlate without any shared deviation (tested);
- `steps_resid`: on residuals after a cubic least-squares fit of each series on u = log(1 + step)
  (u standardised; n >= RESID_MIN_N = 8 so at least 4 residual degrees of freedom): do the
  deviations from each series' own smooth trend co-move. The association of changes;
- `runs`: across run directories (one final value per run);
- `head_weights`: per head, an attention metric vs that head's W_QK statistic over common steps
  (two trends, reference only); `head_weights_resid`: the same on smooth-trend residuals.
CHANGE_KINDS (`steps_resid`, `head_weights_resid`, `runs`) are the only kinds a headline may
report. The residual test permutes residuals as if exchangeable, which a fit makes only
approximately true (they sum to zero and are slightly correlated): read their p as approximate.
p_bh: Benjamini-Hochberg adjusted p within each `kind` (scipy.stats.false_discovery_control):
p_bh_(i) = min_{j >= i} (m / j) p_(j) for sorted p, capped at 1.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, rankdata

MIN_N = 4
RESID_MIN_N = 8
EXACT_MAX_N = 9
RESAMPLES = 9999
SEED = 0
COLUMNS = ["x", "x_layer", "x_head", "y", "kind", "rho", "p", "p_bh", "n", "p_min", "method"]
CHANGE_KINDS = ("steps_resid", "head_weights_resid", "runs")
_TIE_TOL = 1e-12


@dataclass(frozen=True)
class RankTest:
    """rho, two-sided p, n, the smallest attainable p and the method ('exact' or 'permutation')."""

    rho: float
    p: float
    n: int
    p_min: float
    method: str


@lru_cache(maxsize=16)
def _arrangements(n: int) -> np.ndarray:
    """Index arrays [N, n]: all n! permutations for n <= EXACT_MAX_N, else RESAMPLES seeded ones."""
    if n <= EXACT_MAX_N:
        return np.array(list(itertools.permutations(range(n))), dtype=np.int16)
    rng = np.random.default_rng(SEED)
    return rng.permuted(np.tile(np.arange(n, dtype=np.int16), (RESAMPLES, 1)), axis=1)


@lru_cache(maxsize=16)
def _untied_null(n: int) -> np.ndarray:
    """Centred ranks 1..n under every arrangement [N, n] float64 (the same for every untied y)."""
    ranks = np.arange(1, n + 1, dtype=np.float64) - (n + 1) / 2.0
    return ranks[_arrangements(n)]


def rank_test(x: np.ndarray, y: np.ndarray) -> RankTest:
    """Spearman rho of the finite pairs of x, y with its exact / permutation p (module docstring);
    NaNs when n < MIN_N or a side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < MIN_N or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return RankTest(math.nan, math.nan, n, math.nan, "")
    rx, ry = rankdata(x[ok]), rankdata(y[ok])
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    rho = float(rx @ ry) / denom
    tied = len(np.unique(ry)) < n
    null_y = ry[_arrangements(n)] if tied else _untied_null(n)             # [N, n]
    null = np.abs(null_y @ rx) / denom                                     # [N]
    hits = int((null >= abs(rho) - _TIE_TOL).sum())
    if n <= EXACT_MAX_N:
        total = len(null)
        return RankTest(rho, hits / total, n, int((null >= null.max() - _TIE_TOL).sum()) / total, "exact")
    return RankTest(rho, (1 + hits) / (1 + RESAMPLES), n, 1 / (1 + RESAMPLES), "permutation")


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """(rho, two-sided p, n) of `rank_test`."""
    t = rank_test(x, y)
    return t.rho, t.p, t.n


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of `p` [m] (NaN stays NaN, excluded from m)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def smooth_residuals(steps: np.ndarray, values: np.ndarray, degree: int = 3) -> np.ndarray:
    """values minus their least-squares polynomial of `degree` in standardised u = log(1 + step)."""
    u = np.log1p(np.asarray(steps, dtype=np.float64))
    u = (u - u.mean()) / (u.std() or 1.0)
    v = np.asarray(values, dtype=np.float64)
    coef = np.polynomial.polynomial.polyfit(u, v, degree)
    return v - np.polynomial.polynomial.polyval(u, coef)


def row(names: tuple[str, int, int, str], kind: str, test: RankTest) -> dict:
    """One table row (without p_bh) from a test and (x, x_layer, x_head, y)."""
    xname, layer, head, yname = names
    return {"x": xname, "x_layer": layer, "x_head": head, "y": yname, "kind": kind, "rho": test.rho,
            "p": test.p, "n": test.n, "p_min": test.p_min, "method": test.method}


def paired_rows(x: pd.Series, y: pd.Series, names: tuple[str, int, int, str],
                kinds: tuple[str | None, str | None, str | None] = ("steps_raw", "steps_diff", "steps_resid")) -> list[dict]:
    """Raw, first-difference and smooth-residual rows for two step-indexed series (joined on common
    steps); `kinds` names them (a kind given as None is skipped; residuals also below RESID_MIN_N
    points)."""
    joined = pd.concat([x.rename("x"), y.rename("y")], axis=1, join="inner").dropna().sort_index()
    frames = [(kinds[0], joined)] + ([(kinds[1], joined.diff().dropna())] if kinds[1] else [])
    if kinds[2] and len(joined) >= RESID_MIN_N:
        steps = joined.index.to_numpy(dtype=np.float64)
        frames.append((kinds[2], pd.DataFrame({"x": smooth_residuals(steps, joined.x.to_numpy()),
                                               "y": smooth_residuals(steps, joined.y.to_numpy())})))
    rows = []
    for kind, frame in frames:
        test = rank_test(frame.x.to_numpy(), frame.y.to_numpy())
        if np.isfinite(test.rho):
            rows.append(row(names, kind, test))
    return rows


def finish(rows: list[dict]) -> pd.DataFrame:
    """The correlations table with p_bh filled per kind, sorted by |rho| descending."""
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_bh"])
    frame["p_bh"] = np.nan
    for kind, idx in frame.groupby("kind").groups.items():
        frame.loc[idx, "p_bh"] = bh_adjust(frame.loc[idx, "p"].to_numpy())
    order = frame.rho.abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order, COLUMNS].reset_index(drop=True)


def findings(table: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Rows a headline may report: associations of changes (CHANGE_KINDS) with p_bh < alpha,
    strongest |rho| first; raw co-trends never qualify."""
    if table.empty:
        return table
    keep = table[table.kind.isin(CHANGE_KINDS) & (table.p_bh < alpha)]
    return keep.reindex(keep.rho.abs().sort_values(ascending=False, kind="stable").index)
