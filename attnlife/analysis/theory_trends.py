"""Analysis tables of the theory runs (pure): log-decade slopes, the sweep's final table and trends.

- `scan_snap_tables`: start/end of the scan-and-snap signatures (table `scan_snap`) and the growth
  of max z per decade of steps (table `z_growth`), slope_per_ln_step = (z(t2) - z(t1)) /
  (ln t2 - ln t1) for decades [t1, t2] (constant under log-time growth, shrinking once the logits
  grow like log log t: the snap).
- `sweep_final_table` / `sweep_trend`: final entropy mean and standard error over seeds per grid
  point, and its Spearman correlation with eta_Y/eta_Z per (M, K, eta_Z).
The Markov runs' focus-dilution cycles are rows of the ordinary `cycles` table (analysis.builders).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

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


def scan_snap_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables `scan_snap` (signal, start, end of each scan-and-snap signature) and `z_growth`
    (log-decade slopes of `z_distinct_max`) from a scan-and-snap run's metric table."""
    rows = []
    for name in SCAN_SNAP_SIGNALS:
        s = frame[frame.metric == name].sort_values("step")
        rows.append({"signal": name, "start": float(s.value.iloc[0]), "end": float(s.value.iloc[-1])})
    z = frame[frame.metric == "z_distinct_max"].sort_values("step")
    growth = log_decade_slopes(z.step.to_numpy(), z.value.to_numpy())
    return {"scan_snap": pd.DataFrame(rows, columns=["signal", "start", "end"]),
            "z_growth": pd.DataFrame(growth, columns=["from_step", "to_step", "slope_per_ln_step"])}


def sweep_trend(table: pd.DataFrame) -> list[dict]:
    """Per (m, k, eta_z) group of a sweep table (columns m, k, eta_z, ratio, mean): Spearman rho of
    final entropy vs ratio (NaN with < 3 ratios) and whether it rises monotonically."""
    out = []
    for (m, k, ez), g in table.groupby(["m", "k", "eta_z"]):
        rho = float(spearmanr(g.ratio, g["mean"]).statistic) if len(g) > 2 else float("nan")
        out.append({"m": int(m), "k": int(k), "eta_z": float(ez), "spearman_entropy_vs_ratio": rho,
                    "rises": bool(g.sort_values("ratio")["mean"].is_monotonic_increasing)})
    return out


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


def sweep_tables(grid: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables `sweep_final` and `sweep_trend` of a scan-and-snap sweep table (`Run.sweep()`)."""
    final = sweep_final_table(grid)
    trend = pd.DataFrame(sweep_trend(final) if len(final) else [],
                         columns=["m", "k", "eta_z", "spearman_entropy_vs_ratio", "rises"])
    return {"sweep_final": final, "sweep_trend": trend}


def theory_tables(kind: str, frame: pd.DataFrame, grid: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The extra analysis tables of a theory run of run.json `kind` ({} for other runs)."""
    if kind == "theory-scan-snap" and len(frame):
        return scan_snap_tables(frame)
    if kind == "theory-scan-snap-sweep":
        return sweep_tables(grid)
    return {}
