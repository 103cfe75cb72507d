"""Analysis of the theory runs (moved out of the CLI): log-decade slopes, Spearman trends, cycles.

- `scan_snap_summary`: start/end of the scan-and-snap signatures and the growth of max z per
  decade of steps, slope_per_ln_step = (z(t2) - z(t1)) / (ln t2 - ln t1) for decades [t1, t2]
  (constant under log-time growth, shrinking once the logits grow like log log t: the snap).
- `sweep_trend`: Spearman correlation of final entropy with eta_Y/eta_Z per (M, K, eta_Z).
- `markov_cycles`: focus-dilution cycles of `attn_focus_excess` (analysis.cycles).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from attnlife.analysis.cycles import Cycle, detect_cycles, smooth, summarize_cycles

SCAN_SNAP_SIGNALS = ("entropy_distinct_bits", "attn_common", "attn_distinct", "z_distinct_max", "z_common_mean")


def log_decade_slopes(steps: np.ndarray, values: np.ndarray, first: float = 10.0) -> list[dict]:
    """Per decade [t1, t2] = [first 10^k, first 10^(k+1)] (the last clipped at max step):
    {from_step, to_step, slope_per_ln_step = (v(t2) - v(t1)) / ln(t2 / t1)}, v linearly interpolated."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    out, lo = [], first
    while lo < steps.max():
        hi = min(lo * 10, steps.max())
        v_lo, v_hi = np.interp([lo, hi], steps, values)
        out.append({"from_step": lo, "to_step": hi, "slope_per_ln_step": float((v_hi - v_lo) / np.log(hi / lo))})
        lo *= 10
    return out


def scan_snap_summary(frame: pd.DataFrame) -> dict:
    """Start/end of each scan-and-snap signature and `z_distinct_max_growth` (log-decade slopes)."""
    out: dict = {}
    for name in SCAN_SNAP_SIGNALS:
        s = frame[frame.metric == name].sort_values("step")
        out[name] = {"start": float(s.value.iloc[0]), "end": float(s.value.iloc[-1])}
    z = frame[frame.metric == "z_distinct_max"].sort_values("step")
    out["z_distinct_max_growth"] = log_decade_slopes(z.step.to_numpy(), z.value.to_numpy())
    return out


def sweep_trend(table: pd.DataFrame) -> list[dict]:
    """Per (m, k, eta_z) group of a sweep table (columns m, k, eta_z, ratio, mean): Spearman rho of
    final entropy vs ratio (NaN with < 3 ratios) and whether it rises monotonically."""
    out = []
    for (m, k, ez), g in table.groupby(["m", "k", "eta_z"]):
        rho = float(spearmanr(g.ratio, g["mean"]).statistic) if len(g) > 2 else float("nan")
        out.append({"m": int(m), "k": int(k), "eta_z": float(ez), "spearman_entropy_vs_ratio": rho,
                    "rises": bool(g.sort_values("ratio")["mean"].is_monotonic_increasing)})
    return out


def markov_cycles(frame: pd.DataFrame, rel_prominence: float = 0.2,
                  smooth_window: int = 5) -> tuple[dict, list[Cycle]]:
    """(JSON summary, cycles) of the focus signal `attn_focus_excess` (split train) of a Markov run."""
    focus = frame[(frame.metric == "attn_focus_excess") & (frame.split == "train")].sort_values("step")
    smoothed = smooth(focus.value.to_numpy(), smooth_window)
    span = float(smoothed.max() - smoothed.min()) if len(focus) else 0.0
    cycles = detect_cycles(focus.step.to_numpy(), focus.value.to_numpy(), rel_prominence=rel_prominence,
                           smooth_window=smooth_window)
    summary = summarize_cycles(cycles, rel_prominence * span)
    summary.update(signal="attn_focus_excess", smooth_window=smooth_window, rel_prominence=rel_prominence)
    return summary, cycles


def sweep_final_table(grid: pd.DataFrame, name: str = "entropy_distinct_bits") -> pd.DataFrame:
    """Final-step mean and standard error over seeds (std ddof 1 / sqrt(S)) per (m, k, eta_z, ratio)
    of a scan-and-snap sweep table (`Run.sweep()`: parameters as columns): columns m, k, eta_z,
    ratio, mean, se (empty when the table is)."""
    cols = ["m", "k", "eta_z", "ratio", "mean", "se"]
    if grid.empty:
        return pd.DataFrame(columns=cols)
    last = grid[(grid.name == name) & (grid.step == grid.step.max())]
    out = last.groupby(["m", "k", "eta_z", "ratio"]).value.agg(
        mean="mean", se=lambda v: v.std(ddof=1) / np.sqrt(len(v))).reset_index()
    return out[cols].sort_values(["eta_z", "m", "ratio"]).reset_index(drop=True)
