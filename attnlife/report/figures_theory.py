"""Figures of the theory experiments, registered like every other figure (family "theory").

They read the store only: the metric table and the analysis tables `attnlife analyze` wrote.
- `scan_snap` (kind theory-scan-snap): attention mass on distinct vs common tokens, distinct-token
  entropy (bits) and logits z against step (log axis; log-time growth is a straight line there).
  Titles are measured: whether the entropy is still falling over the last decade of steps.
- `sweep_entropy` (theory-scan-snap-sweep): final distinct-token entropy vs eta_Y/eta_Z, mean +-
  standard error over seeds (analysis table `sweep_final`), one line per M/K, one panel per eta_Z.
- `markov_focus` (theory-markov): focus signal with the focus-dilution cycles of analysis table
  `cycles` (signal attn_focus_excess): a closed cycle's dilution (peak to trough) shaded, an open
  one (no recovery before the run ends) only marked, and the largest excess on any one token;
  stable ranks with the dated stages of analysis table `focus_stages`, attention-parameter norms,
  entropy and loss, on a log step axis without offsets.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attnlife.report.data import MissingData, ReportRun
from attnlife.report.registry import figure
from attnlife.report.style import ACCENT, no_offset, step_axis

STEP_LABEL = "SGD step"


def _series(run: ReportRun, metric: str, split: str = "train") -> pd.DataFrame:
    m = run.metrics
    rows = m[(m.metric == metric) & (m.split == split)].sort_values("step")
    if rows.empty:
        raise MissingData(f"no {metric!r} rows; run the matching `attnlife theory` experiment")
    return rows


def still_falling(steps: np.ndarray, values: np.ndarray, tolerance: float = 0.05) -> tuple[bool, float]:
    """(falling, drop over the last decade of steps): the drop from step max/10 to max exceeds
    `tolerance` of the whole fall max - last."""
    hi = float(steps.max())
    before = float(np.interp(hi / 10, steps, values))
    drop = before - float(values[-1])
    total = float(np.max(values) - values[-1])
    return bool(total > 0 and drop > tolerance * total), drop


@figure("scan_snap", "theory", kinds=("theory-scan-snap",))
def scan_snap(run: ReportRun) -> plt.Figure:
    """Three panels of one scan-and-snap run."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for metric, label in (("attn_distinct", "own distinct tokens"), ("attn_common", "common tokens")):
        s = _series(run, metric)
        axes[0].plot(s.step + 1, s.value, label=label)
    common = _series(run, "attn_common").value.to_numpy()
    axes[0].set(xscale="log", ylabel="attention mass (fraction)",
                title=f"Attention on common tokens: {common[0]:.2f} -> {common[-1]:.2f}")
    s = _series(run, "entropy_distinct_bits")
    axes[1].plot(s.step + 1, s.value, color="C2")
    snap = run.analysis.get("snap")
    if snap is not None and len(snap) and snap.status.iloc[0] == "snapped":
        row = snap.iloc[0]
        axes[1].axvline(row.snap_step + 1, color="C1", ls="--", lw=1,
                        label=f"snap: < {row.tolerance:g} bits per decade after")
        axes[1].legend(fontsize=8)
        state = f"snaps at step {row.snap_step:.0f} (last decade {row.last_decade_change:+.4f} bits)"
    else:
        falling, drop = still_falling(s.step.to_numpy(float) + 1, s.value.to_numpy())
        state = (f"still moving at step {int(s.step.max()):,} ({-drop:+.3f} bits over the last decade)"
                 if falling or snap is not None else f"flat over the last decade ({-drop:+.4f} bits)")
    axes[1].set(xscale="log", ylabel="entropy on distinct tokens (bits)",
                title=f"Entropy {s.value.iloc[0]:.2f} -> {s.value.iloc[-1]:.2f} bits, {state}")
    for metric, label in (("z_distinct_max", "max z, distinct"), ("z_distinct_mean", "mean z, distinct"),
                          ("z_common_mean", "mean z, common")):
        s = _series(run, metric)
        axes[2].plot(s.step + 1, s.value, label=label)
    z = _series(run, "z_distinct_max")
    axes[2].set(xscale="log", ylabel="attention logit z (nats)",
                title=f"Largest distinct-token logit grows to {z.value.iloc[-1]:.2f}")
    for ax in axes:
        ax.set_xlabel(f"{STEP_LABEL} + 1 (log scale)")
        ax.title.set_fontsize(9)
        no_offset(ax)
    for ax in (axes[0], axes[2]):
        ax.legend()
    cfg = run.run.config
    fig.suptitle(f"scan and snap, M/K={cfg.get('n_last')}/{cfg.get('n_next')}, T={cfg.get('seq_len')}, "
                 f"eta_Y={cfg.get('eta_y')}, eta_Z={cfg.get('eta_z')}, momentum={cfg.get('momentum', 0)}, "
                 f"batch {cfg.get('batch_size')}, param={cfg.get('param')}")
    return fig


@figure("sweep_entropy", "theory", kinds=("theory-scan-snap-sweep",))
def sweep_entropy(run: ReportRun) -> plt.Figure:
    """Final entropy vs eta_Y/eta_Z with standard-error bars: one panel per M/K, one line per eta_Z
    (the layout of Tian et al. 2023, Fig. 6)."""
    table = run.analysis_table("sweep_final", " (no sweep rows; run `attnlife theory scan-snap --sweep`)")
    groups = list(table.groupby(["m", "k"]))
    cols = min(len(groups), 2)
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.2 * rows), squeeze=False, sharey=True)
    for ax, ((m, k), part) in zip(axes.flat, groups):
        for eta_z, g in part.groupby("eta_z"):
            g = g.sort_values("ratio")
            ax.errorbar(g.ratio, g["mean"], yerr=g["se"], marker="o", capsize=3, label=f"eta_Z = {eta_z:g}")
        ax.set(xscale="log", xlabel="eta_Y / eta_Z (ratio of learning rates, log scale)",
               ylabel="final entropy on distinct tokens (bits)", title=f"M/K = {m}/{k}")
        ax.legend(fontsize=8)
        no_offset(ax)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    cfg = run.run.config
    sparser = sum(bool(g.sort_values("eta_z")["mean"].is_monotonic_decreasing)
                  for _, g in table.groupby(["m", "k", "ratio"]) if g.eta_z.nunique() > 1)
    cells = sum(1 for _, g in table.groupby(["m", "k", "ratio"]) if g.eta_z.nunique() > 1)
    rises = sum(bool(g.sort_values("ratio")["mean"].is_monotonic_increasing)
                for _, g in table.groupby(["m", "k", "eta_z"]) if g.ratio.nunique() > 1)
    curves = sum(1 for _, g in table.groupby(["m", "k", "eta_z"]) if g.ratio.nunique() > 1)
    fig.suptitle(f"Final distinct-token entropy: larger eta_Z sparser in {sparser} of {cells} (M/K, ratio) groups; "
                 f"rises monotonically with eta_Y/eta_Z in {rises} of {curves} curves\n"
                 f"(mean +- s.e., {cfg.get('n_seeds')} seeds, {cfg.get('steps')} steps, momentum "
                 f"{cfg.get('momentum', 0)}, batch {cfg.get('batch_size')})")
    return fig


def focus_cycles(run: ReportRun) -> pd.DataFrame:
    """Rows of analysis table `cycles` on the two focus signals (attn_focus_excess: the top
    tokens; attn_token_excess_max: any one token), peak = start_step."""
    if "cycles" not in run.analysis:  # an empty table is an answer: no cycle was found
        raise MissingData(f"no analysis table 'cycles'; run `attnlife analyze {run.root}`")
    table = run.analysis["cycles"]
    return table[table.signal.isin(FOCUS_SIGNALS)]


FOCUS_SIGNALS = ("attn_focus_excess", "attn_token_excess_max")


def cycle_count_text(cycles: pd.DataFrame) -> str:
    """'N closed (peak P, period T [the 2 largest], K more), M open' for the rows of one signal."""
    closed = cycles[cycles.status == "closed"]
    text = f"{len(closed)} closed"
    if len(closed):
        shown = closed.nlargest(2, "prominence").sort_values("start_step")
        text += " (" + ", ".join(f"peak {c.start_step:.0f}, period {c.period_steps:.0f}" for c in shown.itertuples())
        text += (f", {len(closed) - len(shown)} more" if len(closed) > len(shown) else "") + ")"
    return text + f", {int((cycles.status == 'open').sum())} open"


def _mark_cycles(ax: plt.Axes, cycles: pd.DataFrame, color: str, name: str) -> None:
    first_open = first_closed = True
    for c in cycles.itertuples():
        if c.status == "open":
            ax.axvline(c.start_step, color=color, ls=":", lw=1.2,
                       label=f"{name}: open cycle peak (no recovery)" if first_open else None)
            first_open = False
            continue
        ax.axvspan(c.start_step, c.trough_step, color=color, alpha=0.15,
                   label=f"{name}: closed cycle, dilution" if first_closed else None)
        ax.axvline(c.end_step, color=color, ls="--", lw=1, label=f"{name}: refocus" if first_closed else None)
        first_closed = False


def _focus_panel(ax: plt.Axes, run: ReportRun, cycles: pd.DataFrame) -> None:
    s = _series(run, "attn_focus_excess")
    top = len(run.run.record.get("top_token_ids", [])) or "top"
    ax.plot(s.step, s.value, color=ACCENT, label=f"top-{top} excess: mass on the {top} most frequent tokens - uniform")
    anyone = _series(run, "attn_token_excess_max")
    if len(anyone):
        ax.plot(anyone.step, anyone.value, color="0.45", ls="--", lw=1, label="largest excess on any one token")
    _mark_cycles(ax, cycles[cycles.signal == "attn_focus_excess"], "C1", f"top-{top}")
    _mark_cycles(ax, cycles[cycles.signal == "attn_token_excess_max"], "0.3", "any token")
    ax.axhline(0, color="k", lw=0.6)
    title = f"top-{top} tokens: {cycle_count_text(cycles[cycles.signal == 'attn_focus_excess'])}"
    if len(anyone):
        title += f"\nany one token: {cycle_count_text(cycles[cycles.signal == 'attn_token_excess_max'])}"
    ax.set(ylabel="attention mass excess (fraction)", title=title)
    ax.legend(fontsize=7)


def markov_headline(cycles: pd.DataFrame) -> str:
    """The figure's headline: how many focus-dilution cycles closed, on which signal."""
    closed = cycles[cycles.status == "closed"]
    if closed.empty:
        return f"no focus-dilution cycle closed ({len(cycles)} open, not counted)"
    best = closed.loc[closed.prominence.idxmax()]
    which = "any one token" if best.signal == "attn_token_excess_max" else "top tokens"
    return (f"{len(closed)} closed focus-dilution cycle(s): focus {best.start_step:.0f} -> dilution "
            f"{best.trough_step:.0f} -> refocus {best.end_step:.0f} ({which}, amplitude {best.prominence:.3f})")


def _stage_lines(ax: plt.Axes, run: ReportRun) -> str:
    """Mark the dated stages (analysis table focus_stages) on `ax`; returns their order as text."""
    stages = run.analysis.get("focus_stages")
    if stages is None or stages.empty:
        return ""
    stages = stages.sort_values("step")
    for i, r in enumerate(stages.itertuples()):
        ax.axvline(r.step, color=f"C{i + 3}", ls=":", lw=1.2, label=f"{r.stage} (step {r.step:.0f})")
    return " -> ".join(stages.stage)


def _markov_figure(run: ReportRun, cycles: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    _focus_panel(axes[0][0], run, cycles)
    ax = axes[0][1]
    ranks = {}
    for metric, label in (("stable_rank_embedding", "embedding E"), ("stable_rank_out_proj", "output proj W_O")):
        s = _series(run, metric)
        ax.plot(s.step, s.value, label=label)
        ranks[label] = (s.value.iloc[0], s.value.min())
    e0, e1 = ranks["embedding E"]
    order = _stage_lines(ax, run)
    ax.set(ylabel="stable rank ||W||_F^2 / ||W||_2^2", title=f"Embedding stable rank {e0:.1f} -> {e1:.2f} at its lowest"
           + (f"\nstages: {order}" if order else ""))
    ax.legend(fontsize=7)
    ax = axes[1][0]
    for metric, label in (("attn_param_norm", "|W_Q,W_K,W_V|_F (weight units)"),
                          ("attn_param_rel_change", "rel. change from init (ratio)"),
                          ("attn_qk_rel_change", "rel. change of W_Q, W_K (ratio)")):
        s = _series(run, metric)
        ax.plot(s.step, s.value, label=label)
    ax.set(ylabel="norm (weight units) / ratio", title="Attention parameters move away from init")
    ax.legend()
    ax = axes[1][1]
    val = _series(run, "loss", "val")
    ax.plot(val.step, val.value, color="C0", label="val loss (nats)")
    twin = ax.twinx()
    ent = _series(run, "attn_entropy_bits")
    twin.plot(ent.step, ent.value, color="C2", label="attention entropy (bits)")
    twin.set_ylabel("attention entropy (bits)")
    twin.grid(False)
    ax.set(ylabel="loss (nats / token)", title=f"Loss {val.value.iloc[0]:.2f} -> {val.value.iloc[-1]:.2f} nats; "
           f"attention entropy {ent.value.iloc[0]:.3f} -> {ent.value.iloc[-1]:.3f} bits")
    ax.legend(loc="upper right")
    twin.legend(loc="center right")
    for a in list(axes.flat) + [twin]:
        step_axis(a, val.step, label=STEP_LABEL, log=True)
        no_offset(a)
        a.title.set_fontsize(9.5)
    cfg = run.run.config
    data = run.run.record.get("dataset", {}).get("source", "?")
    if "/" in data:   # a --text path: its last two parts
        data = "/".join(data.split("/")[-2:])
    if data == "markov":
        data = f"a Markov chain (V={cfg.get('vocab_size')}, Zipf {cfg.get('zipf_exponent')})"
    fig.suptitle(f"one-layer transformer on {data}\n{markov_headline(cycles)}")
    return fig


@figure("markov_focus", "theory", kinds=("theory-markov",))
def markov_focus(run: ReportRun) -> plt.Figure:
    """Focus-dilution experiment: four panels (see module docstring)."""
    return _markov_figure(run, focus_cycles(run))
