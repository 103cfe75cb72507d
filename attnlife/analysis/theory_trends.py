"""Analysis tables of the theory runs (pure): log-decade slopes, the sweep's final table and trends.

- `scan_snap_tables`: start/end of the scan-and-snap signatures (table `scan_snap`) and the growth
  of max z per decade of steps (table `z_growth`), slope_per_ln_step = (z(t2) - z(t1)) /
  (ln t2 - ln t1) for decades [t1, t2] (constant under log-time growth, shrinking once the logits
  grow like log log t: the snap).
- `snap_row` (table `snap`): the step from which the distinct-token entropy changes by less than
  `tolerance` bits per decade of steps, |H(10 t) - H(t)| < tolerance for every logged t from there
  on with 10 t inside the run (H linearly interpolated between logged steps): the snap.
- `sweep_final_table` / `sweep_trend`: final entropy mean and standard error over seeds per grid
  point, and its Spearman correlation with eta_Y/eta_Z per (M, K, eta_Z); `sweep_eta_z_trend`:
  its Spearman correlation with eta_Z per (M, K, eta_Y/eta_Z) (larger rates, sparser attention).
The Markov runs' focus-dilution cycles are rows of the ordinary `cycles` table (analysis.builders);
`focus_stages` (table `focus_stages`) dates the stages of the first cycle against the paper's order:
- condensation: first step at which the embedding stable rank has made 90 % of its fall to its
  minimum (value: the stable rank; `attn_qk_rel_change` there says whether attention was frozen);
- focus: the peak of `attn_focus_excess` (smoothed over `window` log points) after condensation;
- dilution: the first step after the focus peak at which it has made half its fall to its lowest
  point after the peak (the dilution is progressive; its bottom is a long flat tail);
- new_direction: first step after condensation at which the embedding stable rank is one above its
  minimum (one more direction opened).
The paper's order is condensation < focus < dilution < new_direction, with attention frozen
(`attn_qk_rel_change` < FROZEN_QK) at condensation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from attnlife.analysis.cycles import smooth

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


SNAP_TOLERANCE = 0.01   # bits of distinct-token entropy per decade of steps


def snap_row(steps: np.ndarray, values: np.ndarray, tolerance: float = SNAP_TOLERANCE,
             signal: str = "entropy_distinct_bits") -> dict:
    """The snap of `values` [N] logged at `steps` [N] (ascending, from 0): see the module docstring.

    Returns signal, tolerance (per decade), snap_step (NaN when it never snaps within the run:
    a window [t, 10 t] at or after every candidate still moves by >= tolerance, or the run is
    shorter than one decade from step 1), last_decade_change H(T) - H(T / 10), total_change
    H(T) - H(0), and status: `snapped`, `not snapped`, or `no scan` (it never moved by 10 x
    tolerance before freezing).
    """
    x = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    top = float(x.max())
    cands = [float(t) for t in x if t >= 1 and 10 * t <= top]
    moves = [abs(float(np.interp(10 * t, x, v) - np.interp(t, x, v))) for t in cands]
    snap = float("nan")
    for i, t in enumerate(cands):
        if max(moves[i:]) < tolerance:
            snap = t
            break
    moved = float(np.max(np.abs(v[x <= (snap if np.isfinite(snap) else top)] - v[0])))
    status = "not snapped" if not np.isfinite(snap) else ("snapped" if moved >= 10 * tolerance else "no scan")
    return {"signal": signal, "tolerance": tolerance, "snap_step": snap,
            "last_decade_change": float(v[-1] - np.interp(top / 10, x, v)),
            "total_change": float(v[-1] - v[0]), "status": status}


def scan_snap_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables `scan_snap` (signal, start, end of each scan-and-snap signature) and `z_growth`
    (log-decade slopes of `z_distinct_max`) from a scan-and-snap run's metric table."""
    rows = []
    for name in SCAN_SNAP_SIGNALS:
        s = frame[frame.metric == name].sort_values("step")
        rows.append({"signal": name, "start": float(s.value.iloc[0]), "end": float(s.value.iloc[-1])})
    z = frame[frame.metric == "z_distinct_max"].sort_values("step")
    growth = log_decade_slopes(z.step.to_numpy(), z.value.to_numpy())
    h = frame[frame.metric == "entropy_distinct_bits"].sort_values("step")
    return {"scan_snap": pd.DataFrame(rows, columns=["signal", "start", "end"]),
            "z_growth": pd.DataFrame(growth, columns=["from_step", "to_step", "slope_per_ln_step"]),
            "snap": pd.DataFrame([snap_row(h.step.to_numpy(), h.value.to_numpy())])}


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


def sweep_eta_z_trend(table: pd.DataFrame) -> list[dict]:
    """Per (m, k, ratio) group of a sweep table: Spearman rho of final entropy vs eta_Z (NaN with
    < 3 values of eta_Z) and whether it falls monotonically (larger rates, sparser attention)."""
    out = []
    for (m, k, ratio), g in table.groupby(["m", "k", "ratio"]):
        rho = float(spearmanr(g.eta_z, g["mean"]).statistic) if len(g) > 2 else float("nan")
        out.append({"m": int(m), "k": int(k), "ratio": float(ratio), "spearman_entropy_vs_eta_z": rho,
                    "falls": bool(g.sort_values("eta_z")["mean"].is_monotonic_decreasing)})
    return out


def sweep_tables(grid: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables `sweep_final`, `sweep_trend` and `sweep_eta_z_trend` of a scan-and-snap sweep table
    (`Run.sweep()`)."""
    final = sweep_final_table(grid)
    trend = pd.DataFrame(sweep_trend(final) if len(final) else [],
                         columns=["m", "k", "eta_z", "spearman_entropy_vs_ratio", "rises"])
    eta_z = pd.DataFrame(sweep_eta_z_trend(final) if len(final) else [],
                         columns=["m", "k", "ratio", "spearman_entropy_vs_eta_z", "falls"])
    return {"sweep_final": final, "sweep_trend": trend, "sweep_eta_z_trend": eta_z}


FROZEN_QK = 0.05          # W_Q, W_K moved by < 5 % of their initial norm: attention effectively frozen
STAGE_COLUMNS = ["stage", "step", "signal", "value", "attn_qk_rel_change"]


def _model_series(frame: pd.DataFrame, name: str) -> pd.Series:
    s = frame[frame.metric == name]
    if "split" in s:
        s = s[s.split == "train"]
    return s.groupby("step").value.mean().sort_index()


def focus_stages(frame: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """Table `focus_stages` of a focus-dilution (Markov) run's metric table: one row per stage
    (see the module docstring) with the step, the signal and its value there, and the relative
    change of W_Q, W_K from init at that step. Stages that cannot be dated are left out."""
    rank = _model_series(frame, "stable_rank_embedding")
    focus = _model_series(frame, "attn_focus_excess")
    qk = _model_series(frame, "attn_qk_rel_change")
    if rank.empty or focus.empty:
        return pd.DataFrame(columns=STAGE_COLUMNS)

    def row(stage: str, step: float, signal: str, series: pd.Series) -> dict:
        at = float(np.interp(step, qk.index, qk.to_numpy())) if len(qk) else float("nan")
        return {"stage": stage, "step": float(step), "signal": signal, "value": float(series.loc[step]),
                "attn_qk_rel_change": at}

    low = float(rank.min())
    cond = float(rank.index[(rank <= low + 0.1 * (rank.iloc[0] - low)).to_numpy()][0])
    rows = [row("condensation", cond, "stable_rank_embedding", rank)]
    later = focus[focus.index >= cond]
    if len(later) > 2:
        smoothed = pd.Series(smooth(later.to_numpy(), window), index=later.index)
        peak = float(smoothed.idxmax())
        rows.append(row("focus", peak, "attn_focus_excess", smoothed))
        after = smoothed[smoothed.index > peak]
        if len(after):   # half-way down: a progressive fall with a long flat tail has no sharp bottom
            half = after <= (smoothed.loc[peak] + after.min()) / 2
            rows.append(row("dilution", float(after.index[half.to_numpy()][0]), "attn_focus_excess", smoothed))
    grown = rank[(rank.index > cond) & (rank >= low + 1.0)]
    if len(grown):
        rows.append(row("new_direction", float(grown.index[0]), "stable_rank_embedding", rank))
    return pd.DataFrame(rows, columns=STAGE_COLUMNS)


def stages_in_paper_order(stages: pd.DataFrame) -> bool:
    """condensation < focus < dilution < new_direction, all four dated, attention frozen at
    condensation (attn_qk_rel_change < FROZEN_QK)."""
    steps = dict(zip(stages.stage, stages.step))
    order = ["condensation", "focus", "dilution", "new_direction"]
    if any(k not in steps for k in order):
        return False
    frozen = float(stages.set_index("stage").attn_qk_rel_change["condensation"]) < FROZEN_QK
    return frozen and all(steps[a] < steps[b] for a, b in zip(order, order[1:]))


def theory_tables(kind: str, frame: pd.DataFrame, grid: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The extra analysis tables of a theory run of run.json `kind` ({} for other runs)."""
    if kind == "theory-scan-snap" and len(frame):
        return scan_snap_tables(frame)
    if kind == "theory-scan-snap-sweep":
        return sweep_tables(grid)
    if kind == "theory-markov" and len(frame):
        return {"focus_stages": focus_stages(frame)}
    return {}
