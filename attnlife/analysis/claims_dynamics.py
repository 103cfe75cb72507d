"""Claims of the weight-dynamics study (W_QK spectra) and of the two theory papers.

Weight claims read the run's spectra table (matrix `qk`, heads only, mean over heads per step).
"Early" is the first quarter of the analysed step range, "late" its last half.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext, result
from attnlife.analysis.theory_trends import focus_stages, snap_row, stages_in_paper_order

WEIGHTS = "weight-dynamics study"
SCAN_SNAP = "scan-and-snap"
FOCUS_DILUTION = "focus-dilution"


def _head_mean(ctx: ClaimContext, stat: str) -> pd.Series:
    s = ctx.spectra
    rows = s[(s.stat == stat) & (s.matrix == "qk") & (s.head_index >= 0)]
    return rows.groupby("step").value.mean().sort_index()


def _rate(series: pd.Series, lo: float, hi: float) -> float:
    """Mean |change| per step of `series` between steps lo and hi."""
    part = series[(series.index >= lo) & (series.index <= hi)]
    if len(part) < 2:
        return float("nan")
    return float(np.abs(np.diff(part.to_numpy())).sum() / max(part.index[-1] - part.index[0], 1))


def sigma_kl_early(ctx: ClaimContext) -> dict:
    """Element std (`elem_std`) and KL to a Gaussian (`elem_kl_gauss_nats`) of W_QK change fastest
    early then stabilise: the mean |change| per step in the first quarter of the steps is >= 3x
    that of the last half, for both."""
    out = []
    for stat in ("elem_std", "elem_kl_gauss_nats"):
        s = _head_mean(ctx, stat)
        if len(s) < 4:
            return result("", NA, f"spectra table has no {stat} series (run `attnlife spectra` first)")
        end = float(s.index[-1])
        out.append((stat, _rate(s, 0, end / 4), _rate(s, end / 2, end)))
    ok = all(np.isfinite(e) and np.isfinite(late) and e >= 3 * late for _, e, late in out)
    text = "; ".join(f"{n}: early/late rate {e / late if late > 0 else float('inf'):.1f}x" for n, e, late in out)
    return result(text, HOLDS if ok else FAILS, "both >= 3x" if ok else "not both >= 3x")


def stable_rank_dip(ctx: ClaimContext) -> dict:
    """Head-mean W_QK stable rank drops sharply early and partially recovers: its minimum lies in
    the first half of the steps, is >= 20 % below the start, and the final value regains >= 10 % of
    the drop while staying below the start."""
    s = _head_mean(ctx, "stable_rank")
    if len(s) < 3:
        return result("", NA, "spectra table has no stable_rank series (run `attnlife spectra` first)")
    start, low, final = float(s.iloc[0]), float(s.min()), float(s.iloc[-1])
    at = int(s.idxmin())
    drop_ok = low <= 0.8 * start and at <= s.index[-1] / 2
    rec_ok = final >= low + 0.1 * (start - low) and final < start
    msg = f"{start:.2f} -> min {low:.2f} at step {at} -> {final:.2f}"
    why = ("sharp early drop and partial recovery" if drop_ok and rec_ok else
           "no sharp early drop" if not drop_ok else "no partial recovery")
    return result(msg, HOLDS if drop_ok and rec_ok else FAILS, why)


def heads_diversify(ctx: ClaimContext) -> dict:
    """Heads within a layer diversify: the std across a layer's heads of W_QK stable rank, averaged
    over layers, ends >= 1.2x its start and ends >= 0.5x its maximum (the spread does not vanish)."""
    s = ctx.spectra
    rows = s[(s.stat == "stable_rank") & (s.matrix == "qk") & (s.head_index >= 0)]
    if rows.empty:
        return result("", NA, "spectra table has no stable_rank (run `attnlife spectra` first)")
    spread = rows.groupby(["step", "layer"]).value.std(ddof=0).groupby("step").mean().sort_index()
    a, b, top = float(spread.iloc[0]), float(spread.iloc[-1]), float(spread.max())
    ok = b >= 1.2 * a and b >= 0.5 * top
    return result(f"within-layer std of stable rank {a:.3f} -> {b:.3f} (max {top:.3f})", HOLDS if ok else FAILS,
                  "grows and persists" if ok else ("does not grow" if b < 1.2 * a else "collapses from its maximum"))


def _theory(ctx: ClaimContext, kind: str, label: str) -> dict | None:
    if ctx.kind != kind:
        return result("", NA, f"claim is about a {label} theory run; this run is `{ctx.kind}`")
    return None


def _metric(ctx: ClaimContext, name: str) -> pd.Series:
    m = ctx.metrics
    return m[(m.metric == name) & (m.split == "train")].groupby("step").value.mean().sort_index()


def common_attention_shrinks(ctx: ClaimContext) -> dict:
    """Scan-and-snap: attention mass on common tokens (`attn_common`) ends at least 0.1 (ten points
    of attention mass) below its start (the paper says only that it shrinks; 0.1 is our bar)."""
    na = _theory(ctx, "theory-scan-snap", "scan-and-snap")
    if na:
        return na
    s = _metric(ctx, "attn_common")
    ok = s.iloc[-1] <= s.iloc[0] - 0.1
    return result(f"{s.iloc[0]:.3f} -> {s.iloc[-1]:.3f}", HOLDS if ok else FAILS,
                  "shrinks by >= 0.1" if ok else "shrinks by < 0.1")


def distinct_entropy_freezes(ctx: ClaimContext) -> dict:
    """Scan-and-snap: the distinct-token entropy falls (scan) and then snaps: from some step on it
    changes by less than SNAP_TOLERANCE (0.01) bits per decade of steps for the rest of the run,
    after moving by at least ten times that (status `snapped` of analysis.theory_trends.snap_row)."""
    na = _theory(ctx, "theory-scan-snap", "scan-and-snap")
    if na:
        return na
    s = _metric(ctx, "entropy_distinct_bits")
    snap = snap_row(s.index.to_numpy(), s.to_numpy())
    fall = float(s.iloc[0] - s.min())
    ok = snap["status"] == "snapped"
    at = f"snaps at step {snap['snap_step']:.0f}" if np.isfinite(snap["snap_step"]) else "never snaps"
    return result(f"falls {fall:.3f} bits; {at} (< {snap['tolerance']:g} bits per decade after); "
                  f"last decade {snap['last_decade_change']:+.4f} bits", HOLDS if ok else FAILS,
                  "falls then freezes" if ok else "does not both fall and freeze")


def entropy_rises_with_ratio(ctx: ClaimContext) -> dict:
    """Scan-and-snap sweep: final distinct-token entropy rises with eta_Y/eta_Z: Spearman rho > 0 in
    every (M, K, eta_Z) group of the sweep."""
    na = _theory(ctx, "theory-scan-snap-sweep", "scan-and-snap sweep")
    if na:
        return na
    rhos = [t["spearman_entropy_vs_ratio"] for t in ctx.sweep_trend if np.isfinite(t["spearman_entropy_vs_ratio"])]
    if not rhos:
        return result("", NA, "sweep has fewer than 3 ratios per group")
    ok = all(r > 0 for r in rhos)
    return result(f"rho per group {', '.join(f'{r:.2f}' for r in rhos)}", HOLDS if ok else FAILS,
                  "positive in every group" if ok else "not positive in every group")


def entropy_falls_with_eta_z(ctx: ClaimContext) -> dict:
    """Scan-and-snap sweep: at a fixed eta_Y/eta_Z, larger rates give sparser attention: final
    distinct-token entropy falls with eta_Z (Spearman rho < 0) in every (M, K, ratio) group."""
    na = _theory(ctx, "theory-scan-snap-sweep", "scan-and-snap sweep")
    if na:
        return na
    rhos = [t["spearman_entropy_vs_eta_z"] for t in ctx.sweep_eta_z_trend
            if np.isfinite(t["spearman_entropy_vs_eta_z"])]
    if not rhos:
        return result("", NA, "sweep has fewer than 3 values of eta_Z per group")
    ok = all(r < 0 for r in rhos)
    return result(f"rho per group {', '.join(f'{r:.2f}' for r in rhos)}", HOLDS if ok else FAILS,
                  "negative in every group" if ok else "not negative in every group")


def _top_token_cycles(ctx: ClaimContext) -> int:
    """Closed cycles of the any-token signal whose focus and refocus are both on one of the run's
    top (most frequent) tokens: attn_token_excess_argmax at start_step and end_step is a top id."""
    cycles = ctx.cycles
    if not len(cycles) or "start_step" not in cycles:
        return 0
    rows = cycles[(cycles.signal == "attn_token_excess_max") & (cycles.status == "closed")]
    argmax = _metric(ctx, "attn_token_excess_argmax")
    top = set(ctx.record.get("top_token_ids", []))
    return sum(argmax.get(r.start_step) in top and argmax.get(r.end_step) in top for r in rows.itertuples())


def condensation_then_cycles(ctx: ClaimContext) -> dict:
    """Focus-dilution: the embedding stable rank condenses (its minimum is below 2, i.e. near rank
    one; it may re-grow afterwards as new directions open) and attention on high-frequency tokens
    has at least one closed cycle (focus, dilution, and a refocus: the next cycle): a closed cycle
    of attn_focus_excess (the top tokens' mass), or of attn_token_excess_max whose focus and
    refocus are both on a top token."""
    na = _theory(ctx, "theory-markov", "focus-dilution (Markov)")
    if na:
        return na
    sr = _metric(ctx, "stable_rank_embedding")
    focus = ctx.cycles[ctx.cycles.signal == "attn_focus_excess"] if len(ctx.cycles) else ctx.cycles
    closed = int((focus.status == "closed").sum()) if len(focus) else 0
    open_ = len(focus) - closed
    on_token = _top_token_cycles(ctx)
    if sr.empty:
        return result("", NA, "run has no stable_rank_embedding")
    ok = sr.min() < 2.0 and closed + on_token >= 1
    return result(f"embedding stable rank {sr.iloc[0]:.2f} -> {sr.min():.2f} (step {sr.idxmin():.0f}); "
                  f"{closed} closed, {open_} open focus cycle(s)"
                  + (f"; {on_token} closed on one top token" if on_token else ""),
                  HOLDS if ok else FAILS, "condenses and cycles" if ok else "no condensation or no closed cycle")


def stages_in_order(ctx: ClaimContext) -> dict:
    """Focus-dilution: the stages come in the paper's order, condensation (attention frozen:
    W_Q, W_K moved < 5 % of their initial norm) < focus peak < dilution < a new embedding
    direction (analysis.theory_trends.focus_stages)."""
    na = _theory(ctx, "theory-markov", "focus-dilution (Markov)")
    if na:
        return na
    stages = focus_stages(ctx.metrics)
    if stages.empty:
        return result("", NA, "run has no stable_rank_embedding or attn_focus_excess")
    measured = "; ".join(f"{r.stage} {r.step:.0f}" for r in stages.sort_values("step").itertuples())
    cond = stages[stages.stage == "condensation"].iloc[0]
    measured += f" (W_QK change at condensation {cond.attn_qk_rel_change:.3f})"
    ok = stages_in_paper_order(stages)
    return result(measured, HOLDS if ok else FAILS, "in the paper's order" if ok else
                  "not in the paper's order (or a stage missing, or attention not frozen)")


CLAIMS = [("wd_sigma_kl_early", WEIGHTS, "sigma and KL of W_QK elements change most early, then stabilise", sigma_kl_early),
          ("wd_stable_rank_dip", WEIGHTS, "stable rank drops sharply early and partially recovers", stable_rank_dip),
          ("wd_heads_diversify", WEIGHTS, "heads within a layer diversify (spread grows, does not vanish)", heads_diversify),
          ("ss_common_shrinks", SCAN_SNAP, "common-token attention shrinks", common_attention_shrinks),
          ("ss_entropy_freezes", SCAN_SNAP, "distinct-token entropy falls then freezes", distinct_entropy_freezes),
          ("ss_entropy_vs_ratio", SCAN_SNAP, "final entropy rises with eta_Y/eta_Z", entropy_rises_with_ratio),
          ("ss_entropy_vs_eta_z", SCAN_SNAP, "larger eta_Z (same eta_Y/eta_Z): sparser attention", entropy_falls_with_eta_z),
          ("fd_condense_cycles", FOCUS_DILUTION, "condensation to rank one, then cycles", condensation_then_cycles),
          ("fd_stage_order", FOCUS_DILUTION, "condensation (attention frozen), focus, dilution, new embedding direction",
           stages_in_order)]
