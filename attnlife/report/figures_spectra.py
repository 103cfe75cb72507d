"""Weight-dynamics figures 9-12: the spectrum lambda_k = sigma_k(W_QK)^2 of each head over training.

lambda_k from the spectra arrays (`qk.lambda` [S, L, H, K], descending, weight units squared);
lambda_1..4, stable rank ||W||_F^2 / ||W||_2^2 (dimensionless, 1..K) and spectral entropy
(bits of p_k = lambda_k / sum lambda) from the spectra table; eigenvalue near-meetings labelled
crossing / repulsion by the sweep's trajectory pass.

Events before separation are not drawn. At initialisation the leading eigenvalues of a random
W_QK are a degenerate bulk: they sit close together and their near-meetings are sampling noise.
A head's spectrum has separated at the first checkpoint where r(t) = ln(lambda_1 / lambda_4)
(scale-free: growing every weight alike leaves it unchanged) reaches SEPARATION_FACTOR = 2 times
its value at the first checkpoint; near-meetings at earlier steps are counted as suppressed, and
a head that never separates has all of its events suppressed (`separation_steps`).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from attnlife.report.data import MissingData, ReportRun
from attnlife.report.exemplars import choose_exemplars
from attnlife.report.panels import heatmap_pair, inset_series, layer_grid, slice_indices
from attnlife.report.registry import figure
from attnlife.report.style import color, fit_suptitle, index_step_ticks, step_axis

LAMBDA_LABEL = "eigenvalue lambda_k of W_QK (weight units^2)"
RANK_LABEL = "stable rank (dimensionless)"
ENTROPY_LABEL = "spectral entropy (bits)"
SEPARATION_FACTOR = 2.0


def separation_steps(steps: np.ndarray, lam1: np.ndarray, lam4: np.ndarray) -> np.ndarray:
    """Per head ([S, ...] series of lambda_1 and lambda_4 on `steps`): the first step where
    ln(lambda_1 / lambda_4) >= SEPARATION_FACTOR x its first value; +inf when it never does."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.asarray(lam1, float) / np.asarray(lam4, float))
    reached = ratio >= SEPARATION_FACTOR * ratio[:1]
    reached &= np.isfinite(ratio)
    first = np.argmax(reached, axis=0)
    return np.where(reached.any(axis=0), np.asarray(steps, float)[first], np.inf)


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
    verb = "grows" if min(top) > 1 else "shrinks" if max(top) < 1 else "changes"
    fit_suptitle(fig, f"W_QK spectra of exemplar heads: lambda_1 {verb} x{min(top):.3g}-x{max(top):.3g} "
                      f"from step {int(steps[0])} to {int(steps[-1]):,}")
    return fig


@figure("weights_spectrum_slices", "weights")
def spectrum_slices(run: ReportRun) -> plt.Figure:
    """Fig. 10: lambda_k against k at five checkpoints, stable-rank and spectral-entropy insets."""
    steps, lam = run.array_series("qk.lambda")
    (r_steps, rank), (e_steps, ent) = rank_and_entropy(run)
    heads = choose_exemplars(run)
    same = len(r_steps) == len(e_steps) == len(steps)
    marks = slice_indices(len(steps), values=np.concatenate([rank.reshape(len(r_steps), -1),
                                                             ent.reshape(len(e_steps), -1)], axis=1) if same else None)
    fig, axes = _exemplar_axes(len(heads), 7.4)
    k = np.arange(1, lam.shape[-1] + 1)
    for ax, ex in zip(axes.flat, heads):
        for j, i in reversed(list(enumerate(marks))):  # earliest drawn last: on top
            ax.plot(k, lam[i, ex.layer, ex.head], color=color(j), marker=".", ms=3, lw=1.6 if j == 0 else 1.1,
                    ls=(0, (4, 2)) if j == 0 else "-", label=f"step {int(steps[i]):,}")
        ax.set_yscale("log")
        ax.set_xlabel("index k (1 = largest)")
        ax.set_ylabel(LAMBDA_LABEL, fontsize=8)
        ax.set_title(f"{ex.label} ({ex.reason})", fontsize=9)
        idx_r = [int(np.searchsorted(r_steps, steps[i])) for i in marks]
        idx_e = [int(np.searchsorted(e_steps, steps[i])) for i in marks]
        inset_series(ax, (0.42, 0.50, 0.24, 0.26), r_steps, rank[:, ex.layer, ex.head], idx_r, "stable rank")
        inset_series(ax, (0.74, 0.50, 0.24, 0.26), e_steps, ent[:, ex.layer, ex.head], idx_e, "spectral entropy, bits")
    handles, labels = axes[0][0].get_legend_handles_labels()  # drawn latest first
    axes[0][0].legend(handles[::-1], labels[::-1], loc="lower left", fontsize=6.5)
    drops = [rank[0, e.layer, e.head] - np.nanmin(rank[:, e.layer, e.head]) for e in heads]
    fit_suptitle(fig, f"W_QK spectra at {len(marks)} checkpoints chosen where they change: stable rank of the "
                      f"exemplar heads drops by {min(drops):.1f}-{max(drops):.1f} at its lowest")
    return fig


@figure("weights_eigen_trajectories", "weights")
def eigen_trajectories(run: ReportRun) -> plt.Figure:
    """Fig. 11: lambda_1..lambda_4 per exemplar head, near-meetings marked (x crossing, o repulsion)."""
    heads = choose_exemplars(run)
    meetings = run.meetings()
    fig, axes = _exemplar_axes(len(heads), 6.8)
    counts = {"crossing": 0, "repulsion": 0, "suppressed": 0}
    separated = {}
    try:
        (s1, lam1), (s4, lam4) = run.weight_cube("lambda_1"), run.weight_cube("lambda_4")
        separated = {(e.layer, e.head): float(separation_steps(s1, lam1[:, e.layer, e.head],
                                                                 lam4[:, e.layer, e.head])) for e in heads} \
            if np.array_equal(s1, s4) else {}
    except MissingData:  # fewer than 4 tracked eigenvalues: nothing to separate from
        pass
    shared = []  # (axes, steps, log lambda): one step scale for every panel
    for ax, ex in zip(axes.flat, heads):
        cubes = {}
        for i in range(1, 5):
            try:
                steps, cube = run.weight_cube(f"lambda_{i}")
            except MissingData:  # fewer than 4 tracked eigenvalues (--top-k)
                break
            cubes[i] = (steps, cube[:, ex.layer, ex.head])
            ax.plot(steps, cubes[i][1], color=color(i - 1), lw=1.2, label=f"lambda_{i}")
        sep = separated.get((ex.layer, ex.head), -np.inf)
        mine = meetings[(meetings.matrix == "qk") & (meetings.layer == ex.layer) & (meetings.head_index == ex.head)]
        mine = mine[mine["rank"].isin(list(cubes))]
        counts["suppressed"] += int((mine.step < sep).sum())
        mine = mine[mine.step >= sep]
        for label, marker in (("crossing", "X"), ("repulsion", "o")):
            hit = mine[mine.label == label]
            counts[label] += len(hit)
            ys = [float(np.interp(s, *cubes[int(r)])) for s, r in zip(hit.step, hit["rank"])]
            ax.scatter(hit.step, ys, marker=marker, s=34, facecolors="none" if marker == "o" else "black",
                       edgecolors="black", zorder=5, label=f"{label} (sweep)")
        if np.isfinite(sep) and sep > steps[0]:
            ax.axvspan(steps[0], sep, color="0.92", zorder=0, lw=0, label="before separation (events hidden)")
        ax.set_yscale("log")
        shared.append((ax, steps, np.log(np.stack([c[1] for c in cubes.values()], axis=1))))
        ax.set_ylabel(LAMBDA_LABEL, fontsize=8)
        never = " (never separates)" if np.isinf(sep) and sep > 0 else ""
        ax.set_title(f"{ex.label} ({ex.reason}){never}", fontsize=9)
    values = np.concatenate([v for _, _, v in shared], axis=1)
    for ax, steps, _ in shared:
        step_axis(ax, steps, values=values)
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, fontsize=7)
    hidden = f", {counts['suppressed']} before separation not drawn" if counts["suppressed"] else ""
    fit_suptitle(fig, f"Top-4 eigenvalue trajectories of exemplar heads: {counts['crossing']} crossings, "
                      f"{counts['repulsion']} repulsions after the spectrum separates{hidden}")
    return fig


@figure("weights_rank_layers", "weights")
def rank_layers(run: ReportRun) -> plt.Figure:
    """Fig. 12a: stable rank and spectral entropy of every head per layer, layer mean red dashed."""
    (r_steps, rank), (e_steps, ent) = rank_and_entropy(run)
    fig, _ = layer_grid(r_steps, rank, RANK_LABEL, e_steps, ent, ENTROPY_LABEL)
    mean = np.nanmean(rank, axis=(1, 2))
    low = int(np.nanargmin(mean))
    fit_suptitle(fig, f"W_QK stable rank per head: model mean {mean[0]:.1f} at step {int(r_steps[0])}, lowest "
                      f"{mean[low]:.1f} at step {int(r_steps[low]):,}, {mean[-1]:.1f} at step {int(r_steps[-1]):,}")
    return fig


@figure("weights_rank_heatmap", "weights")
def rank_heatmap(run: ReportRun) -> plt.Figure:
    """Fig. 12b: stable rank and spectral entropy over all heads x checkpoints."""
    (r_steps, rank), (e_steps, ent) = rank_and_entropy(run)
    fig = heatmap_pair((r_steps, rank, RANK_LABEL, "stable rank"), (e_steps, ent, ENTROPY_LABEL, "spectral entropy"))
    fit_suptitle(fig, f"All heads over training: stable rank {np.nanmin(rank[-1]):.1f}-{np.nanmax(rank[-1]):.1f} "
                      f"at the last checkpoint (step {int(r_steps[-1]):,})")
    return fig
