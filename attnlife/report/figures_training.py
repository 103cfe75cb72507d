"""Training-run study figures 1-4: train loss, val loss, attention metrics, layer similarity.

Each takes a list of runs. Runs sharing a configuration apart from the seed (`config_key`) are
drawn as their mean with a standard-error band, se = std(ddof=1) / sqrt(n) over the runs at the
steps they all logged; a single run's line gets a +- stderr band wherever the table stores one
(probe-pass metrics, cross-layer pairs). Phase boundaries (analysis table `phases`, start steps of
segments after the first) are dashed grey lines when present.

Smoothing is trailing only (`trailing_mean`: the mean over the last w(s) steps, w(s) =
min(SMOOTH_STEPS, ceil(0.1 * (s + 1)))), so step 0 is the raw step-0 value and no later batch
leaks into an earlier point; titles quote raw endpoints. Step axes follow `style.choose_step_scale`.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attnlife.report.data import ATTENTION_SPLITS, MissingData, ReportRun
from attnlife.report.registry import figure
from attnlife.report.style import BOUNDARY, OKABE_ITO, color, fit_suptitle, no_offset, step_axis

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
    """Plot one series (step, value[, stderr]) or the mean +- se of several; returns the plotted mean.

    One series with finite `stderr` values gets a +- stderr band (label gains "+- s.e.").
    """
    if len(series) == 1:
        frame = series[0].sort_values("step")
        s = frame.set_index("step")["value"]
        se = frame["stderr"].to_numpy(float) if "stderr" in frame else np.full(len(frame), np.nan)
        has_se = bool(np.isfinite(se).any())
        ax.plot(s.index, s.values, color=c, ls=ls, lw=lw, label=f"{label} (+- s.e.)" if has_se and label else label)
        if has_se:
            ax.fill_between(s.index, s.values - se, s.values + se, color=c, alpha=0.22, lw=0)
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


def smoothing_window(steps: np.ndarray) -> np.ndarray:
    """w(s) = min(SMOOTH_STEPS, max(1, ceil(0.1 * (s + 1)))) steps: short early, SMOOTH_STEPS later."""
    return np.minimum(SMOOTH_STEPS, np.maximum(1, np.ceil(0.1 * (np.asarray(steps, float) + 1))))


def trailing_mean(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean of the values logged at steps in (s - w(s), s] for each step s (sorted steps)."""
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    csum = np.r_[0.0, np.cumsum(values)]
    lo = np.searchsorted(steps, steps - smoothing_window(steps), side="right")
    hi = np.arange(1, len(steps) + 1)
    return (csum[hi] - csum[lo]) / (hi - lo)


def _smooth(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.sort_values("step").drop(columns=["stderr"], errors="ignore").copy()
    out["value"] = trailing_mean(out["step"].to_numpy(), out["value"].to_numpy())
    return out


@figure("train_loss", "training", "train_loss_{dataset}", multi_run=True)
def train_loss(runs: list[ReportRun]) -> plt.Figure:
    """Training loss (nats/token), raw faint and trailing-smoothed (`trailing_mean`), per run/config."""
    if not any(len(r.model_series("loss", "train")) for r in runs):
        raise MissingData("no training loss rows: `attnlife train` and the HF / Lightning callbacks log them "
                          "(a `track` / `spectra --hf` or `--nanogpt` directory has none)")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    raw = smoothed = None
    for i, (label, members) in enumerate(groups(runs)):
        series = [r.model_series("loss", "train") for r in members]
        if len(series) == 1:
            ax.plot(series[0].step, series[0].value, color=color(i), alpha=0.25, lw=0.6)
        mean = band(ax, [_smooth(s) for s in series], f"{label} (trailing mean, <= {SMOOTH_STEPS} steps)", color(i))
        if raw is None:
            raw = pd.concat([s.set_index("step")["value"] for s in series], axis=1, join="inner").mean(axis=1)
            smoothed = mean
    step_axis(ax, raw.index, values=smoothed.reindex(raw.index).to_numpy())
    ax.set_ylabel("training loss (nats / token)")
    verb = "falls" if raw.iloc[-1] < raw.iloc[0] else "rises"
    who = "" if len(groups(runs)) == 1 else " (first line)"
    ax.set_title(f"Training loss{who} {verb} from {raw.iloc[0]:.2f} at step {int(raw.index[0]):,} to "
                 f"{raw.iloc[-1]:.2f} nats/token at step {int(raw.index[-1]):,}")
    ax.legend()
    no_offset(ax)
    return fig


@figure("val_loss", "training", "val_loss_{dataset}", multi_run=True)
def val_loss(runs: list[ReportRun]) -> plt.Figure:
    """Validation loss (eval_loss, split val; nats/token) per run/config, best value marked."""
    if not any(len(r.model_series("eval_loss", "val")) for r in runs):
        raise MissingData("no validation loss rows (eval_loss, split val): `attnlife train` and the HF / "
                          "Lightning callbacks log them (a `track` / `spectra --hf` or `--nanogpt` directory has none)")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    best = (np.inf, 0)
    first = None
    for i, (label, members) in enumerate(groups(runs)):
        mean = band(ax, [r.model_series("eval_loss", "val") for r in members], label, color(i))
        ax.plot(mean.index, mean.values, "o", color=color(i), ms=3)
        first = mean if first is None else first
        if mean.min() < best[0]:
            best = (float(mean.min()), int(mean.idxmin()))
    ax.plot([best[1]], [best[0]], marker="*", ms=11, color="black", ls="none", label="best")
    step_axis(ax, first.index, values=first.to_numpy())
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title(f"Validation loss {first.iloc[0]:.2f} at step {int(first.index[0]):,}, lowest "
                 f"{best[0]:.3f} nats/token at step {best[1]:,}")
    ax.legend()
    no_offset(ax)
    return fig


def _layer_means(run: ReportRun, metric: str) -> dict[int, pd.DataFrame]:
    """Per layer: step, value = mean over heads, stderr = mean of the heads' stderr.

    The mean of the heads' standard errors bounds the standard error of their mean from above
    whatever the correlation between heads (Minkowski), so the band is conservative.
    """
    rows = run.head_rows(metric)
    means = rows.groupby(["layer", "step"]).agg(value=("value", "mean"), stderr=("stderr", "mean")).reset_index()
    return {int(layer): g[["step", "value", "stderr"]] for layer, g in means.groupby("layer")}


def layer_colours(n: int) -> tuple[list[str], bool]:
    """Colours for n layers (or layer pairs): the palette up to 8, else viridis (then a colour bar)."""
    if n <= len(OKABE_ITO):
        return [color(i) for i in range(n)], False
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(n - 1, 1)) for i in range(n)], True


def layer_colourbar(fig: plt.Figure, axes, n: int, label: str) -> None:  # noqa: ANN001 - Axes or array
    """A discrete viridis colour bar 0..n-1 for figures with more lines than the palette holds."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(-0.5, n - 0.5), "viridis"), ax=axes, label=label, pad=0.01)
    bar.set_ticks(sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, 7))}))


@figure("attention_metrics", "training", "attention_metrics_{dataset}", multi_run=True)
def attention_metrics(runs: list[ReportRun]) -> plt.Figure:
    """Top: head-mean entropy (bits) per layer; bottom: head-mean effective span (tokens).

    Bands: seeds' standard error for groups of runs, else the mean of the heads' stored standard
    errors (an upper bound on the layer mean's). Runs without attention rows (a protocol's
    untracked baseline) are left out; the figure is skipped when no run has them.
    """
    runs = [r for r in runs if _has_rows(r, ("entropy_bits", "span_tokens"))] or runs[:1]
    fig, axes = plt.subplots(2, 1, figsize=(6.5, 6.2), sharex=True)
    ends = {}
    styles = ("-", "--", ":", "-.")
    n_layer = 1 + max(max(_layer_means(r, "entropy_bits")) for r in runs)
    colours, bar = layer_colours(n_layer)
    plotted = {}
    for ax, metric, unit in ((axes[0], "entropy_bits", "attention entropy (bits)"),
                             (axes[1], "span_tokens", "effective span (tokens, a > 0.01)")):
        for g, (label, members) in enumerate(groups(runs)):
            per_run = [_layer_means(r, metric) for r in members]
            for layer in sorted(per_run[0]):
                name = None if bar else f"L{layer}" + (f" {label}" if len(runs) > 1 else "")
                mean = band(ax, [p[layer] for p in per_run if layer in p], name, colours[layer], styles[g % 4])
                ends.setdefault(metric, []).append((mean.iloc[0], mean.iloc[-1]))
                if g == 0:
                    plotted.setdefault(metric, []).append(mean)
        phase_lines(ax, runs[0])
        ax.set_ylabel(unit)
        no_offset(ax)
    if bar:
        layer_colourbar(fig, axes, n_layer, "layer (head-mean line per layer)")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(ncol=2)
    table = pd.concat([m.rename(i) for i, m in enumerate(plotted["entropy_bits"] + plotted["span_tokens"])],
                      axis=1).sort_index().interpolate(limit_area="inside")
    step_axis(axes[1], table.index, values=table.to_numpy())
    e0, e1 = np.mean([e[0] for e in ends["entropy_bits"]]), np.mean([e[1] for e in ends["entropy_bits"]])
    s0, s1 = np.mean([e[0] for e in ends["span_tokens"]]), np.mean([e[1] for e in ends["span_tokens"]])
    first, last = int(table.index[0]), int(table.index[-1])
    axes[0].set_title(f"From step {first:,} to {last:,}, layer-mean attention entropy goes {e0:.2f} -> {e1:.2f} "
                      f"bits,\nspan {s0:.1f} -> {s1:.1f} tokens (mean over {n_layer} layers)", fontsize=9.5)
    return fig


def _has_rows(run: ReportRun, metrics: tuple[str, ...]) -> bool:
    """Whether `run` has per-head rows of every metric in `metrics`."""
    try:
        return all(len(run.head_rows(m)) > 0 for m in metrics)
    except MissingData:
        return False


def _cross_layer(run: ReportRun) -> pd.DataFrame:
    """Cross-layer rows of the run's primary attention split (probe pass, else tracker)."""
    rows = run.run.cross_layer(split="all")
    for split in ATTENTION_SPLITS:
        if (rows.split == split).any():
            return rows[rows.split == split]
    return rows


def shown_pairs(pairs: list[tuple[int, int]], most: int = 8) -> list[tuple[int, int]]:
    """Every layer pair when there are at most `most`, else the adjacent pairs (l, l + 1)."""
    if len(pairs) <= most:
        return pairs
    return [(a, b) for a, b in pairs if b == a + 1]


@figure("layer_similarity", "training", "layer_similarity_{dataset}", multi_run=True)
def layer_similarity(runs: list[ReportRun]) -> plt.Figure:
    """Cross-layer JSD (bits, 0-1) and cosine similarity of head-averaged patterns per layer pair
    (adjacent pairs only when there are more than 8 pairs; +- stderr bands where stored)."""
    frames = [_cross_layer(r) for r in runs]
    if all(f[f.metric == "xlayer_jsd"].empty for f in frames):
        if _has_rows(runs[0], ("entropy_bits",)) and int(runs[0].head_rows("entropy_bits").layer.max()) == 0:
            raise MissingData("a one-layer model has no layer pairs to compare")
        raise MissingData(f"no cross-layer rows (xlayer_jsd); run `attnlife train` with tracking on "
                          f"or `attnlife track {runs[0].root}`")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    last = {}
    all_pairs = sorted({(int(a), int(b)) for f in frames for a, b in zip(f.layer, f.layer_b)})
    pairs = shown_pairs(all_pairs)
    colours, bar = layer_colours(len(pairs))
    plotted = []
    for ax, metric, unit in ((axes[0], "xlayer_jsd", "Jensen-Shannon divergence (bits, 0-1)"),
                             (axes[1], "xlayer_cos", "cosine similarity of patterns (1 = same)")):
        for g, (label, members) in enumerate(groups(runs)):
            sub = [f[f.metric == metric] for f, r in zip(frames, runs) if r in members]
            for i, (a, b) in enumerate(pairs):
                series = [f[(f.layer == a) & (f.layer_b == b)][["step", "value", "stderr"]].sort_values("step")
                          for f in sub]
                series = [s for s in series if len(s)]
                if not series:
                    continue
                mean = band(ax, series, None if bar else f"L{a}-L{b}", colours[i], ("-", "--", ":")[g % 3])
                last[(metric, a, b)] = mean.iloc[-1]
                plotted.append(mean)
        phase_lines(ax, runs[0])
        ax.set_ylabel(unit)
        no_offset(ax)
    table = pd.concat([m.rename(i) for i, m in enumerate(plotted)], axis=1).sort_index().interpolate(limit_area="inside")
    for ax in axes:
        step_axis(ax, table.index, values=table.to_numpy())
    if bar:
        layer_colourbar(fig, axes, len(pairs), "adjacent pair (first layer)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=7)
    jsd = {k[1:]: v for k, v in last.items() if k[0] == "xlayer_jsd"}
    far = max(jsd, key=jsd.get)
    near = min(jsd, key=jsd.get)
    which = "" if pairs == all_pairs else f" ({len(pairs)} adjacent pairs of {len(all_pairs)})"
    fit_suptitle(fig, f"Cross-layer divergence at step {int(table.index[-1]):,}{which}: L{far[0]}-L{far[1]} most "
                 f"different (JSD {jsd[far]:.3f} bits), L{near[0]}-L{near[1]} most alike ({jsd[near]:.3f})", fontsize=10.5)
    return fig
