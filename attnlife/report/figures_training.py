"""Training-run study figures 1-4: train loss, val loss, attention metrics, layer similarity.

Each takes a list of runs. Runs sharing a configuration apart from the seed (`config_key`) are
drawn as their mean with a standard-error band, se = std(ddof=1) / sqrt(n) over the runs at the
steps they all logged; any other run is one line. Phase boundaries (analysis table `phases`,
start steps of segments after the first) are dashed grey lines when present.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attnlife.report.data import ATTENTION_SPLITS, MissingData, ReportRun
from attnlife.report.registry import figure
from attnlife.report.style import BOUNDARY, color, no_offset, step_axis

SMOOTH_STEPS = 50


def groups(runs: list[ReportRun]) -> list[tuple[str, list[ReportRun]]]:
    """Runs grouped by their caller-given `group` label, else by configuration (seed ignored).

    Groups are labelled by that label; else one group by its dataset, several by their first
    run's name, or by the parent folder and name where names repeat (seed folders of different
    studies); groups of more than one run add "(mean +- se, N seeds)".
    """
    by_key: dict[str, list[ReportRun]] = {}
    for r in runs:
        by_key.setdefault(f"group:{r.group}" if r.group else r.config_key(), []).append(r)
    members_list = list(by_key.values())
    names = [m[0].name for m in members_list]
    out = []
    for members in members_list:
        first = members[0]
        if first.group:
            base = first.group
        elif len(members_list) == 1:
            base = first.dataset
        elif names.count(first.name) > 1:
            base = f"{first.root.resolve().parent.name}/{first.name}"
        else:
            base = first.name
        label = base if len(members) == 1 else f"{base} (mean +- se, {len(members)} seeds)"
        out.append((label, members))
    return out


def band(ax: plt.Axes, series: list[pd.DataFrame], label: str, c: str, ls: str = "-",
         lw: float = 1.4) -> pd.Series:
    """Plot one series (step, value) or the mean +- se of several; returns the plotted mean."""
    if len(series) == 1:
        s = series[0].set_index("step")["value"]
        ax.plot(s.index, s.values, color=c, ls=ls, lw=lw, label=label)
        return s
    table = pd.concat([s.set_index("step")["value"] for s in series], axis=1, join="inner")
    mean = table.mean(axis=1)
    se = table.std(axis=1, ddof=1) / np.sqrt(table.shape[1])
    ax.plot(mean.index, mean.values, color=c, ls=ls, lw=lw, label=label)
    ax.fill_between(mean.index, mean - se, mean + se, color=c, alpha=0.25, lw=0)
    return mean


def phase_lines(ax: plt.Axes, run: ReportRun, scope: str = "model") -> None:
    """Dashed lines at the starts of the analysis phases of `scope` (skipped without analysis)."""
    table = run.analysis.get("phases")
    if table is None or table.empty:
        return
    part = table[table["scope"] == scope].sort_values("start_step")
    for i, step in enumerate(part["start_step"].iloc[1:]):
        ax.axvline(step, color=BOUNDARY, ls="--", lw=0.9, label="phase boundary (analysis)" if i == 0 else None)
    for start, label in zip(part["start_step"], part["label"]):
        ax.annotate(str(label), (max(float(start), 0.0), 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                    textcoords="offset points", fontsize=6.5, color=BOUNDARY)


def _smooth(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["value"] = frame["value"].rolling(SMOOTH_STEPS, center=True, min_periods=1).mean()
    return out


@figure("train_loss", "training", "train_loss_{dataset}", multi_run=True)
def train_loss(runs: list[ReportRun]) -> plt.Figure:
    """Training loss (nats/token), raw faint and smoothed over SMOOTH_STEPS steps, per run/config."""
    if not any(len(r.model_series("loss", "train")) for r in runs):
        raise MissingData("no training loss rows; run `attnlife train`")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    first = last = None
    for i, (label, members) in enumerate(groups(runs)):
        series = [r.model_series("loss", "train") for r in members]
        if len(series) == 1:
            ax.plot(series[0].step, series[0].value, color=color(i), alpha=0.25, lw=0.6)
        mean = band(ax, [_smooth(s) for s in series], f"{label} (smoothed, {SMOOTH_STEPS} steps)", color(i))
        first, last = (mean.iloc[0], mean.iloc[-1]) if first is None else (first, last)
    steps = runs[0].model_series("loss", "train").step
    step_axis(ax, steps)
    ax.set_ylabel("training loss (nats / token)")
    ax.set_title(f"Training loss falls from {first:.2f} to {last:.2f} nats/token "
                 f"over {int(steps.max()):,} steps")
    ax.legend()
    no_offset(ax)
    return fig


@figure("val_loss", "training", "val_loss_{dataset}", multi_run=True)
def val_loss(runs: list[ReportRun]) -> plt.Figure:
    """Validation loss (eval_loss, split val; nats/token) per run/config, best value marked."""
    if not any(len(r.model_series("eval_loss", "val")) for r in runs):
        raise MissingData("no validation loss rows (eval_loss, split val); run `attnlife train`")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    best = (np.inf, 0)
    for i, (label, members) in enumerate(groups(runs)):
        mean = band(ax, [r.model_series("eval_loss", "val") for r in members], label, color(i))
        ax.plot(mean.index, mean.values, "o", color=color(i), ms=3)
        if mean.min() < best[0]:
            best = (float(mean.min()), int(mean.idxmin()))
    ax.plot([best[1]], [best[0]], marker="*", ms=11, color="black", ls="none", label="best")
    step_axis(ax, runs[0].model_series("eval_loss", "val").step)
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title(f"Validation loss reaches {best[0]:.3f} nats/token at step {best[1]:,}")
    ax.legend()
    no_offset(ax)
    return fig


def _layer_means(run: ReportRun, metric: str) -> dict[int, pd.DataFrame]:
    rows = run.head_rows(metric)
    means = rows.groupby(["layer", "step"])["value"].mean().reset_index()
    return {int(layer): g[["step", "value"]] for layer, g in means.groupby("layer")}


@figure("attention_metrics", "training", "attention_metrics_{dataset}", multi_run=True)
def attention_metrics(runs: list[ReportRun]) -> plt.Figure:
    """Top: head-mean entropy (bits) per layer; bottom: head-mean effective span (tokens).

    Runs without attention rows (a protocol's untracked baseline) are left out; the figure is
    skipped when no run has them.
    """
    runs = [r for r in runs if _has_rows(r, ("entropy_bits", "span_tokens"))] or runs[:1]
    fig, axes = plt.subplots(2, 1, figsize=(6.5, 6.2), sharex=True)
    ends = {}
    styles = ("-", "--", ":", "-.")
    for ax, metric, unit in ((axes[0], "entropy_bits", "attention entropy (bits)"),
                             (axes[1], "span_tokens", "effective span (tokens, a > 0.01)")):
        for g, (label, members) in enumerate(groups(runs)):
            per_run = [_layer_means(r, metric) for r in members]
            for layer in sorted(per_run[0]):
                mean = band(ax, [p[layer] for p in per_run if layer in p],
                            f"L{layer}" + (f" {label}" if len(runs) > 1 else ""), color(layer), styles[g % 4])
                ends.setdefault(metric, []).append((mean.iloc[0], mean.iloc[-1]))
        phase_lines(ax, runs[0])
        ax.set_ylabel(unit)
        no_offset(ax)
    axes[0].legend(ncol=2)
    steps = runs[0].head_rows("entropy_bits").step
    step_axis(axes[1], steps)
    e0, e1 = np.mean([e[0] for e in ends["entropy_bits"]]), np.mean([e[1] for e in ends["entropy_bits"]])
    s0, s1 = np.mean([e[0] for e in ends["span_tokens"]]), np.mean([e[1] for e in ends["span_tokens"]])
    axes[0].set_title(f"Layer-mean attention entropy goes {e0:.2f} -> {e1:.2f} bits, "
                      f"span {s0:.1f} -> {s1:.1f} tokens", fontsize=9.5)
    return fig


def _has_rows(run: ReportRun, metrics: tuple[str, ...]) -> bool:
    """Whether `run` has per-head rows of every metric in `metrics`."""
    try:
        return all(len(run.head_rows(m)) > 0 for m in metrics)
    except MissingData:
        return False


def _cross_layer(run: ReportRun) -> pd.DataFrame:
    """Cross-layer rows of the first split that has them (probe pass, then tracker)."""
    rows = run.run.cross_layer()
    for split in ATTENTION_SPLITS:
        if (rows.split == split).any():
            return rows[rows.split == split]
    return rows


@figure("layer_similarity", "training", "layer_similarity_{dataset}", multi_run=True)
def layer_similarity(runs: list[ReportRun]) -> plt.Figure:
    """Cross-layer JSD (bits, 0-1) and cosine similarity of head-averaged patterns per layer pair."""
    frames = [_cross_layer(r) for r in runs]
    if all(f[f.metric == "xlayer_jsd"].empty for f in frames):
        raise MissingData(f"no cross-layer rows (xlayer_jsd); run `attnlife train` with tracking on "
                          f"or `attnlife track {runs[0].root}`")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    last = {}
    for ax, metric, unit in ((axes[0], "xlayer_jsd", "Jensen-Shannon divergence (bits, 0-1)"),
                             (axes[1], "xlayer_cos", "cosine similarity of patterns (1 = same)")):
        for g, (label, members) in enumerate(groups(runs)):
            sub = [f[f.metric == metric] for f, r in zip(frames, runs) if r in members]
            pairs = sorted({(int(a), int(b)) for f in sub for a, b in zip(f.layer, f.layer_b)})
            for i, (a, b) in enumerate(pairs):
                series = [f[(f.layer == a) & (f.layer_b == b)][["step", "value"]].sort_values("step") for f in sub]
                mean = band(ax, [s for s in series if len(s)], f"L{a}-L{b}", color(i), ("-", "--", ":")[g % 3])
                last[(metric, a, b)] = mean.iloc[-1]
        phase_lines(ax, runs[0])
        ax.set_ylabel(unit)
        step_axis(ax, frames[0].step)
        no_offset(ax)
    axes[0].legend(ncol=2)
    jsd = {k[1:]: v for k, v in last.items() if k[0] == "xlayer_jsd"}
    far = max(jsd, key=jsd.get)
    near = min(jsd, key=jsd.get)
    fig.suptitle(f"Cross-layer divergence at the last step: L{far[0]}-L{far[1]} most different "
                 f"(JSD {jsd[far]:.3f} bits), L{near[0]}-L{near[1]} most alike ({jsd[near]:.3f})")
    return fig
