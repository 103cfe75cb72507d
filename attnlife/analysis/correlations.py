"""Spearman correlations with p-values, n and Benjamini-Hochberg adjusted p-values (pure).

Each row of the `correlations` table is one Spearman rank correlation (scipy.stats.spearmanr,
two-sided p) between series x and y over n paired finite values:
- `steps_raw`: across the steps both were measured at (attention metric vs val loss or a sample
  metric); `steps_diff`: the same on first differences (x_{k+1} - x_k), because both trend with
  training and raw correlations over a trend are nearly always large;
- `runs`: across run directories (one final value per run);
- `head_weights`: per head, an attention metric vs that head's W_QK statistic over common steps.
Pairs with n < `MIN_N` are skipped, as are constant series (rho undefined).
p_bh: Benjamini-Hochberg adjusted p within each `kind` (scipy.stats.false_discovery_control):
p_bh_(i) = min_{j >= i} (m / j) p_(j) for sorted p, capped at 1.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, spearmanr

MIN_N = 4
COLUMNS = ["x", "x_layer", "x_head", "y", "kind", "rho", "p", "p_bh", "n"]


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """(rho, two-sided p, n) over the finite pairs; (nan, nan, n) if n < MIN_N or a side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < MIN_N or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), float("nan"), n
    res = spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), n


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of `p` [m] (NaN stays NaN, excluded from m)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def paired_rows(x: pd.Series, y: pd.Series, names: tuple[str, int, int, str]) -> list[dict]:
    """`steps_raw` and `steps_diff` rows for two step-indexed series (joined on common steps)."""
    joined = pd.concat([x.rename("x"), y.rename("y")], axis=1, join="inner").dropna().sort_index()
    xname, layer, head, yname = names
    rows = []
    for kind, frame in (("steps_raw", joined), ("steps_diff", joined.diff().dropna())):
        rho, p, n = spearman(frame.x.to_numpy(), frame.y.to_numpy())
        if np.isfinite(rho):
            rows.append({"x": xname, "x_layer": layer, "x_head": head, "y": yname, "kind": kind,
                         "rho": rho, "p": p, "n": n})
    return rows


def finish(rows: list[dict]) -> pd.DataFrame:
    """The correlations table with p_bh filled per kind, sorted by |rho| descending."""
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_bh"])
    frame["p_bh"] = np.nan
    for kind, idx in frame.groupby("kind").groups.items():
        frame.loc[idx, "p_bh"] = bh_adjust(frame.loc[idx, "p"].to_numpy())
    order = frame.rho.abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order, COLUMNS].reset_index(drop=True)
