"""Weight-dynamics figures 5-8: the element distribution P(w) of each head's W_QK over training.

Histograms come from the spectra sweep (counts on bins of z = (w - mu) / sigma, sigma units,
overflow bins outermost, dropped here); the density of bin b is P_b = c_b / (N * width_b) per
sigma unit. sigma(t) = elem_std (weight units), KL(t) = elem_kl_gauss_nats (bias-corrected KL of
P(w) to N(mu, sigma), nats).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from scipy.stats import norm

from attnlife.report.data import ReportRun
from attnlife.report.exemplars import choose_exemplars
from attnlife.report.panels import heatmap_pair, inset_series, layer_grid, slice_indices
from attnlife.report.registry import figure
from attnlife.report.style import color, fit_suptitle, index_step_ticks

KL_LABEL = "KL(P(w) || Gaussian) (nats)"
SIGMA_LABEL = "element std sigma (weight units)"


def densities(run: ReportRun, min_bins: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps [S], bin centres z [B'], density [S, L, H, B'] per sigma unit), overflow bins dropped.

    Adjacent inner bins are merged by the largest factor in (5, 4, 2) dividing B that leaves at
    least `min_bins` bins (200 stored bins -> 40 drawn), so sparse tails read as a density.
    """
    steps, edges, counts = run.histograms()
    inner = counts[..., 1:-1].astype(np.float64)
    n_bins = inner.shape[-1]
    factor = next((f for f in (5, 4, 2) if n_bins % f == 0 and n_bins // f >= min_bins), 1)
    inner = inner.reshape(*inner.shape[:-1], n_bins // factor, factor).sum(-1)
    inner_edges = edges[1:-1][::factor]
    total = counts.sum(-1, keepdims=True).astype(np.float64)
    width = np.diff(inner_edges)
    centres = (inner_edges[:-1] + inner_edges[1:]) / 2
    return steps, centres, inner / np.where(total > 0, total, 1) / width


def sigma_and_kl(run: ReportRun) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((steps, sigma [S, L, H]), (steps, KL [S, L, H])) of the W_QK elements."""
    return run.weight_cube("elem_std"), run.weight_cube("elem_kl_gauss_nats")


@figure("weights_elements_image", "weights")
def elements_image(run: ReportRun) -> plt.Figure:
    """Fig. 5: P(w) of four exemplar heads as images, z (sigma units) against checkpoint."""
    steps, z, dens = densities(run)
    heads = choose_exemplars(run)
    positive = dens[dens > 0]
    lognorm = LogNorm(vmin=max(positive.min(), 1e-6), vmax=positive.max())
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.6), squeeze=False)
    for ax, ex in zip(axes.flat, heads):
        img = np.where(dens[:, ex.layer, ex.head] > 0, dens[:, ex.layer, ex.head], np.nan).T  # [B, S]
        mesh = ax.pcolormesh(np.arange(len(steps) + 1) - 0.5, np.r_[z - (z[1] - z[0]) / 2, z[-1] + (z[1] - z[0]) / 2],
                             img, norm=lognorm, shading="flat", rasterized=True)
        ax.set_title(f"{ex.label} ({ex.reason})", fontsize=9)
        index_step_ticks(ax, steps)
        ax.set_xlabel("checkpoint (training step)")
        ax.set_ylabel("z = (w - mu) / sigma (sigma units)")
        ax.set_ylim(-6, 6)
        ax.grid(False)
    for ax in list(axes.flat)[len(heads):]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes, label="density P(z) (per sigma unit, log colour)", shrink=0.8)
    tails = [float(dens[-1, e.layer, e.head][np.abs(z) > 4].sum() * (z[1] - z[0])) for e in heads]
    gauss = float(2 * norm.sf(4))
    verb = "widen in the tails" if max(tails) > gauss else "stay Gaussian in the tails"
    fit_suptitle(fig, f"W_QK element distributions {verb}: up to {max(tails):.1e} of the mass beyond 4 sigma "
                      f"at step {int(steps[-1]):,} (Gaussian: {gauss:.1e})")
    return fig


@figure("weights_elements_slices", "weights")
def elements_slices(run: ReportRun) -> plt.Figure:
    """Fig. 6: P(z) at five checkpoints per exemplar head, sigma(t) and KL(t) insets."""
    steps, z, dens = densities(run)
    (s_steps, sigma), (k_steps, kl) = sigma_and_kl(run)
    heads = choose_exemplars(run)
    marks = slice_indices(len(steps), values=np.concatenate([sigma.reshape(len(s_steps), -1) / np.nanmean(sigma),
                                                             kl.reshape(len(k_steps), -1)], axis=1)
                          if len(s_steps) == len(k_steps) == len(steps) else None)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.4), squeeze=False)
    for ax, ex in zip(axes.flat, heads):
        for j, i in reversed(list(enumerate(marks))):  # earliest drawn last: on top, dashed
            d = dens[i, ex.layer, ex.head]
            ax.plot(z[d > 0], d[d > 0], color=color(j), lw=1.6 if j == 0 else 1.1, ls=(0, (4, 2)) if j == 0 else "-",
                    label=f"step {int(steps[i]):,}")
        ax.plot(z, norm.pdf(z), color="black", ls=":", lw=1.0, label="Gaussian N(0, 1)")
        ax.set_yscale("log")
        ax.set_ylim(1e-6, 3)
        ax.set_xlim(-6, 6)
        ax.set_xlabel("element z = (w - mu) / sigma (sigma units)")
        ax.set_ylabel("density P(z) (per sigma unit)")
        ax.set_title(f"{ex.label} ({ex.reason})", fontsize=9)
        idx_s = [int(np.searchsorted(s_steps, steps[i])) for i in marks]
        idx_k = [int(np.searchsorted(k_steps, steps[i])) for i in marks]
        inset_series(ax, (0.21, 0.14, 0.25, 0.24), s_steps, sigma[:, ex.layer, ex.head], idx_s, "sigma(t)")
        inset_series(ax, (0.58, 0.14, 0.25, 0.24), k_steps, kl[:, ex.layer, ex.head], idx_k, "KL(t) (nats)")
    for ax in list(axes.flat)[len(heads):]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()  # steps were drawn latest first
    n = len(marks)
    axes[0][0].legend(handles[:n][::-1] + handles[n:], labels[:n][::-1] + labels[n:], loc="upper left", fontsize=6.5)
    change = [sigma[-1, e.layer, e.head] / sigma[0, e.layer, e.head] for e in heads]
    verb = "grows" if min(change) > 1 else "shrinks" if max(change) < 1 else "changes"
    fit_suptitle(fig, f"W_QK element distributions at {len(marks)} checkpoints chosen where they change: sigma "
                      f"{verb} x{min(change):.2f}-x{max(change):.2f} in the exemplar heads")
    return fig


@figure("weights_elements_layers", "weights")
def elements_layers(run: ReportRun) -> plt.Figure:
    """Fig. 7: sigma(t) and KL(t) of every head of each layer, layer mean red dashed."""
    (s_steps, sigma), (k_steps, kl) = sigma_and_kl(run)
    fig, _ = layer_grid(s_steps, sigma, "sigma (weight units)", k_steps, kl, "KL to Gaussian (nats)")
    spread = 100 * np.nanstd(sigma[-1], axis=1) / np.nanmean(sigma[-1], axis=1)
    digits = 0 if spread.max() >= 10 else 1
    lo, hi = f"{spread.min():.{digits}f}", f"{spread.max():.{digits}f}"
    fit_suptitle(fig, f"W_QK element sigma and KL per head: at step {int(s_steps[-1]):,}, heads of "
                      + (f"the layer differ in sigma by {hi}%" if len(spread) == 1 else
                         f"every layer differ in sigma by {hi}%" if lo == hi else
                         f"a layer differ in sigma by {lo}-{hi}%") + " (std / mean)")
    return fig


@figure("weights_elements_heatmap", "weights")
def elements_heatmap(run: ReportRun) -> plt.Figure:
    """Fig. 8: sigma (log colour) and KL (linear) over all heads x checkpoints."""
    (s_steps, sigma), (k_steps, kl) = sigma_and_kl(run)
    fig = heatmap_pair((s_steps, sigma, SIGMA_LABEL, "element std sigma"), (k_steps, kl, KL_LABEL, "KL to a Gaussian"),
                       log_first=True)
    peak = np.unravel_index(np.nanargmax(kl), kl.shape)
    fit_suptitle(fig, f"All heads over training: largest KL {kl[peak]:.3f} nats at "
                      f"L{peak[1]}H{peak[2]}, step {int(k_steps[peak[0]]):,}")
    return fig
