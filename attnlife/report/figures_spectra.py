"""Weight-dynamics figures 9-12: the spectrum lambda_k = sigma_k(W_QK)^2 of each head over training.

lambda_k from the spectra arrays (`qk.lambda` [S, L, H, K], descending, weight units squared);
lambda_1..4, stable rank ||W||_F^2 / ||W||_2^2 (dimensionless, 1..K) and spectral entropy
(bits of p_k = lambda_k / sum lambda) from the spectra table; eigenvalue near-meetings labelled
crossing / repulsion by the sweep's trajectory pass.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from attnlife.report.data import MissingData, ReportRun
from attnlife.report.exemplars import choose_exemplars
from attnlife.report.panels import heatmap_pair, inset_series, layer_grid, slice_indices
from attnlife.report.registry import figure
from attnlife.report.style import color, index_step_ticks, step_axis

LAMBDA_LABEL = "eigenvalue lambda_k of W_QK (weight units^2)"
RANK_LABEL = "stable rank (dimensionless)"
ENTROPY_LABEL = "spectral entropy (bits)"


def _exemplar_axes(n: int, height: float) -> tuple[plt.Figure, np.ndarray]:
    fig, axes = plt.subplots(2, 2, figsize=(10, height), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def rank_and_entropy(run: ReportRun) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((steps, stable rank [S, L, H]), (steps, spectral entropy [S, L, H] bits)) of W_QK."""
    return run.weight_cube("stable_rank"), run.weight_cube("spectral_entropy_bits")


@figure("weights_spectrum_image", "weights")
def spectrum_image(run: ReportRun) -> plt.Figure:
    """Fig. 9: lambda_k (log colour, one scale for all panels) against k and checkpoint."""
    steps, lam = run.array_series("qk.lambda")  # [S, L, H, K]
    heads = choose_exemplars(run)
    sel = np.stack([lam[:, e.layer, e.head] for e in heads])  # [E, S, K]
    positive = sel[sel > 0]
    lognorm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-8), vmax=positive.max())
    fig, axes = _exemplar_axes(len(heads), 6.6)
    n_k = lam.shape[-1]
    for ax, ex, grid in zip(axes.flat, heads, sel):
        mesh = ax.pcolormesh(np.arange(len(steps) + 1) - 0.5, np.arange(n_k + 1) + 0.5,
                             np.where(grid > 0, grid, np.nan).T, norm=lognorm, shading="flat", rasterized=True)
        ax.set_title(f"{ex.label} ({ex.reason})", fontsize=9)
        index_step_ticks(ax, steps)
        ax.set_xlabel("checkpoint (training step)")
        ax.set_ylabel("index k (1 = largest)")
        ax.set_ylim(n_k + 0.5, 0.5)
        ax.grid(False)
    fig.colorbar(mesh, ax=axes, label=LAMBDA_LABEL + ", log colour", shrink=0.8)
    top = [grid[-1, 0] / grid[0, 0] for grid in sel]
    fig.suptitle(f"W_QK spectra of exemplar heads: lambda_1 grows x{min(top):.0f}-x{max(top):.0f} "
                 f"from step {int(steps[0])} to {int(steps[-1]):,}")
    return fig


@figure("weights_spectrum_slices", "weights")
def spectrum_slices(run: ReportRun) -> plt.Figure:
    """Fig. 10: lambda_k against k at five checkpoints, stable-rank and spectral-entropy insets."""
    steps, lam = run.array_series("qk.lambda")
    (r_steps, rank), (e_steps, ent) = rank_and_entropy(run)
    heads = choose_exemplars(run)
    marks = slice_indices(len(steps))
    fig, axes = _exemplar_axes(len(heads), 7.4)
    k = np.arange(1, lam.shape[-1] + 1)
    for ax, ex in zip(axes.flat, heads):
        for j, i in enumerate(marks):
            ax.plot(k, lam[i, ex.layer, ex.head], color=color(j), marker=".", ms=3, lw=1.1,
                    label=f"step {int(steps[i]):,}")
        ax.set_yscale("log")
        ax.set_xlabel("index k (1 = largest)")
        ax.set_ylabel(LAMBDA_LABEL, fontsize=8)
        ax.set_title(f"{ex.label} ({ex.reason})", fontsize=9)
        idx_r = [int(np.searchsorted(r_steps, steps[i])) for i in marks]
        idx_e = [int(np.searchsorted(e_steps, steps[i])) for i in marks]
        inset_series(ax, (0.42, 0.66, 0.25, 0.24), r_steps, rank[:, ex.layer, ex.head], idx_r, "stable rank")
        inset_series(ax, (0.73, 0.66, 0.25, 0.24), e_steps, ent[:, ex.layer, ex.head], idx_e, "spectral entropy (bits)")
    axes[0][0].legend(loc="lower left", fontsize=6.5)
    drops = [rank[0, e.layer, e.head] - np.nanmin(rank[:, e.layer, e.head]) for e in heads]
    fig.suptitle(f"W_QK spectra at five checkpoints: stable rank of the exemplar heads drops by "
                 f"{min(drops):.1f}-{max(drops):.1f} at its lowest")
    return fig


@figure("weights_eigen_trajectories", "weights")
def eigen_trajectories(run: ReportRun) -> plt.Figure:
    """Fig. 11: lambda_1..lambda_4 per exemplar head, near-meetings marked (x crossing, o repulsion)."""
    heads = choose_exemplars(run)
    meetings = run.meetings()
    fig, axes = _exemplar_axes(len(heads), 6.8)
    counts = {"crossing": 0, "repulsion": 0}
    for ax, ex in zip(axes.flat, heads):
        cubes = {}
        for i in range(1, 5):
            try:
                steps, cube = run.weight_cube(f"lambda_{i}")
            except MissingData:  # fewer than 4 tracked eigenvalues (--top-k)
                break
            cubes[i] = (steps, cube[:, ex.layer, ex.head])
            ax.plot(steps, cubes[i][1], color=color(i - 1), lw=1.2, label=f"lambda_{i}")
        mine = meetings[(meetings.matrix == "qk") & (meetings.layer == ex.layer) & (meetings.head_index == ex.head)]
        for label, marker in (("crossing", "X"), ("repulsion", "o")):
            hit = mine[(mine.label == label) & mine["rank"].isin(list(cubes))]
            counts[label] += len(hit)
            ys = [float(np.interp(s, *cubes[int(r)])) for s, r in zip(hit.step, hit["rank"])]
            ax.scatter(hit.step, ys, marker=marker, s=34, facecolors="none" if marker == "o" else "black",
                       edgecolors="black", zorder=5, label=f"{label} (sweep)")
        ax.set_yscale("log")
        step_axis(ax, steps)
        ax.set_ylabel(LAMBDA_LABEL, fontsize=8)
        ax.set_title(f"{ex.label} ({ex.reason})", fontsize=9)
    axes[0][0].legend(fontsize=6.5, ncol=2)
    fig.suptitle(f"Top-4 eigenvalue trajectories of exemplar heads: {counts['crossing']} crossings, "
                 f"{counts['repulsion']} repulsions detected")
    return fig


@figure("weights_rank_layers", "weights")
def rank_layers(run: ReportRun) -> plt.Figure:
    """Fig. 12a: stable rank and spectral entropy of every head per layer, layer mean red dashed."""
    (r_steps, rank), (e_steps, ent) = rank_and_entropy(run)
    fig, _ = layer_grid(r_steps, rank, RANK_LABEL, e_steps, ent, ENTROPY_LABEL)
    mean = np.nanmean(rank, axis=(1, 2))
    low = int(np.nanargmin(mean))
    fig.suptitle(f"W_QK stable rank per head: model mean {mean[0]:.1f} at step {int(r_steps[0])}, lowest "
                 f"{mean[low]:.1f} at step {int(r_steps[low]):,}, {mean[-1]:.1f} at the end")
    return fig


@figure("weights_rank_heatmap", "weights")
def rank_heatmap(run: ReportRun) -> plt.Figure:
    """Fig. 12b: stable rank and spectral entropy over all heads x checkpoints."""
    (r_steps, rank), (e_steps, ent) = rank_and_entropy(run)
    fig = heatmap_pair((r_steps, rank, RANK_LABEL, "stable rank"), (e_steps, ent, ENTROPY_LABEL, "spectral entropy"))
    fig.suptitle(f"All heads over training: stable rank {np.nanmin(rank[-1]):.1f}-{np.nanmax(rank[-1]):.1f} "
                 f"at the last checkpoint (step {int(r_steps[-1]):,})")
    return fig
