"""Panels shared by the weight-dynamics figures: all heads of a layer, all-head heatmaps, insets.

Cubes are [S, L, H] (steps x layers x heads). Heatmap rows are heads in layer-major order
(row = layer * H + head), columns are checkpoints; white lines separate layers.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import MaxNLocator

from attnlife.report.style import ACCENT, change_share, color, index_step_ticks, no_offset, step_axis

MAX_LAYER_ROWS = 6


def shown_layers(n_layer: int, most: int = MAX_LAYER_ROWS) -> list[int]:
    """Every layer, or `most` evenly spaced ones (first and last included) for deep models."""
    if n_layer <= most:
        return list(range(n_layer))
    return sorted({int(round(x)) for x in np.linspace(0, n_layer - 1, most)})


def layer_lines(ax: plt.Axes, steps: np.ndarray, values: np.ndarray, layer: int, ylabel: str,
                log_y: bool = False, scale_values: np.ndarray | None = None) -> None:
    """Every head of `layer` (values [S, L, H]) as a thin line, the layer mean red (vermillion) dashed;
    the step axis is chosen from `scale_values` (default: this layer's heads)."""
    n_head = values.shape[2]
    for h in range(n_head):
        ax.plot(steps, values[:, layer, h], color=color(h if h < 5 else h + 1), lw=0.9, alpha=0.8,
                label=f"head {h}" if n_head <= 8 else None)
    ax.plot(steps, np.nanmean(values[:, layer], axis=1), color=ACCENT, ls="--", lw=2.0, label="layer mean")
    if log_y:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    step_axis(ax, steps, values=values[:, layer] if scale_values is None else scale_values)
    no_offset(ax)


def layer_grid(steps_a: np.ndarray, a: np.ndarray, label_a: str, steps_b: np.ndarray, b: np.ndarray,
               label_b: str, log_a: bool = False) -> tuple[plt.Figure, np.ndarray]:
    """Rows = shown layers, columns = statistic a, statistic b (each [S, L, H])."""
    layers = shown_layers(a.shape[1])
    fig, axes = plt.subplots(len(layers), 2, figsize=(9, 2.3 * len(layers) + 0.6), squeeze=False,
                             sharex=True)
    same = len(steps_a) == len(steps_b) and np.array_equal(steps_a, steps_b)
    scale = np.concatenate([a.reshape(len(steps_a), -1), b.reshape(len(steps_b), -1)], axis=1) if same \
        else a.reshape(len(steps_a), -1)
    for row, layer in enumerate(layers):
        layer_lines(axes[row][0], steps_a, a, layer, label_a, log_y=log_a, scale_values=scale)
        layer_lines(axes[row][1], steps_b, b, layer, label_b, scale_values=scale if same else None)
        axes[row][0].set_title(f"layer {layer}", loc="left", fontsize=9)
        if row < len(layers) - 1:
            axes[row][0].set_xlabel("")
            axes[row][1].set_xlabel("")
    axes[0][1].legend(ncol=2, fontsize=6.5)
    return fig, axes


def head_heatmap(fig: plt.Figure, ax: plt.Axes, steps: np.ndarray, values: np.ndarray, label: str,
                 log_colour: bool = False) -> None:
    """All heads (rows, layer-major) x checkpoints (columns); white lines at layer boundaries."""
    n_step, n_layer, n_head = values.shape
    grid = values.reshape(n_step, n_layer * n_head).T  # [L*H, S]
    finite = grid[np.isfinite(grid)]
    if log_colour:
        positive = finite[finite > 0]
        norm = LogNorm(vmin=positive.min(), vmax=positive.max())
    else:
        norm = Normalize(vmin=finite.min(), vmax=finite.max())
    mesh = ax.pcolormesh(np.arange(n_step + 1) - 0.5, np.arange(n_layer * n_head + 1) - 0.5, grid,
                         norm=norm, shading="flat", rasterized=True)
    for layer in range(1, n_layer):
        ax.axhline(layer * n_head - 0.5, color="white", lw=1.2)
    centres = np.arange(n_layer) * n_head + (n_head - 1) / 2
    step_every = max(1, n_layer // 12)
    ax.set_yticks(centres[::step_every], [f"L{layer}" for layer in range(0, n_layer, step_every)])
    ax.set_ylim(n_layer * n_head - 0.5, -0.5)
    ax.set_ylabel(f"head (layer-major, {n_head} per layer)")
    index_step_ticks(ax, steps)
    ax.set_xlabel("checkpoint (training step)")
    ax.grid(False)
    fig.colorbar(mesh, ax=ax, label=label, pad=0.02)


def heatmap_pair(first: tuple, second: tuple, log_first: bool = False) -> plt.Figure:
    """Two all-head heatmaps side by side; each argument is (steps [S], cube [S, L, H], colour label, title)."""
    n_rows = first[1].shape[1] * first[1].shape[2]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.12 * n_rows + 3.2))
    for ax, (steps, values, label, title), log in zip(axes, (first, second), (log_first, False)):
        head_heatmap(fig, ax, steps, values, label + (", log colour" if log else ""), log_colour=log)
        ax.set_title(title)
        no_offset(ax)
    return fig


def slice_indices(n_steps: int, n: int = 5, values: np.ndarray | None = None) -> list[int]:
    """`n` checkpoint indices: the first, the last, and those whose cumulative change of `values`
    ([S, ...] series, `style.change_share`) is closest to 1/(n-1), 2/(n-1), ... of the total
    (each index taken once), so slices fall where the distribution moves; without values,
    evenly spread over the series."""
    if values is None or n_steps <= n:
        return sorted({int(round(x)) for x in np.linspace(0, n_steps - 1, min(n, n_steps))})
    share = change_share(np.arange(n_steps), np.asarray(values, dtype=float).reshape(n_steps, -1))
    chosen = {0, n_steps - 1}
    for q in np.linspace(0, 1, n)[1:-1]:
        free = [i for i in range(n_steps) if i not in chosen]
        chosen.add(min(free, key=lambda i: (abs(share[i] - q), i)))
    return sorted(chosen)


def inset_series(ax: plt.Axes, bounds: tuple[float, float, float, float], steps: np.ndarray,
                 values: np.ndarray, marks: list[int], title: str, log_y: bool = False) -> plt.Axes:
    """A small inset of one head's series over steps with the slice checkpoints `marks` as coloured dots.

    Keep `bounds` (axes fraction x, y, width, height) so that y + height <= 0.8 and y >= 0.12:
    the inset's title then stays inside the panel and its tick labels above the panel's axis."""
    ins = ax.inset_axes(bounds)
    ins.plot(steps, values, color="0.3", lw=0.9)
    for j, i in enumerate(marks):
        ins.plot(steps[i], values[i], "o", color=color(j), ms=3.5)
    if log_y:
        ins.set_yscale("log")
    step_axis(ins, steps, label="", values=values, max_ticks=4)
    ins.set_xlabel("")
    ins.set_title(title, fontsize=6.5, pad=2)
    ins.tick_params(labelsize=5.5)
    ins.yaxis.set_major_locator(MaxNLocator(3))
    no_offset(ins)
    return ins
