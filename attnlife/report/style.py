"""House style of every static figure: palette, fonts, step axes, saving.

- Palette: Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies;
  `ACCENT` (vermillion) marks layer means, `BOUNDARY` phase boundaries.
- Fonts sized so a figure 7 in wide stays readable when shrunk to one column (~3.5 in).
- `axes.formatter.useoffset` is off: a change of 4e-4 bits shows as 2.9996 -> 3.0000, never as
  an offset that makes it look large.
- Step axes spend their width where the run changes (`choose_step_scale`): linear, or
  symmetric-log (linear from 0 to a threshold t, logarithmic above, so step 0 stays on the axis)
  with t a power of two, whichever puts the share of axis width left of each plotted step closest
  to the share of the plotted series' total change that happened before it (the largest gap, a
  Kolmogorov-Smirnov distance, is minimised; ties go to linear). Ticks are plain step numbers.
- Layout is matplotlib's constrained layout (labels, colour bars and titles fit without cropping).
- `save_figure` writes PNG at 200 dpi (and pdf/svg on request) through a temp file + rename.
"""
from __future__ import annotations

import contextlib
import os
import textwrap
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.scale import SymmetricalLogTransform  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402

from attnlife.store.atomic import atomic_path  # noqa: E402

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
ACCENT = "#D55E00"
BOUNDARY = "#555555"
DPI = 200
FORMATS = ("png", "pdf", "svg")
SEQUENTIAL = "viridis"

RC = {
    "axes.prop_cycle": matplotlib.cycler(color=list(OKABE_ITO)),
    "axes.formatter.useoffset": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "figure.titlesize": 11,
    "font.size": 9,
    "savefig.dpi": DPI,
    "image.cmap": SEQUENTIAL,
    "figure.constrained_layout.use": True,
}


@contextlib.contextmanager
def house_style() -> Iterator[None]:
    """Context in which figures get the house rcParams."""
    with plt.rc_context(RC):
        yield


def color(i: int) -> str:
    """The i-th palette colour (cycling)."""
    return OKABE_ITO[i % len(OKABE_ITO)]


def head_label(layer: int, head: int) -> str:
    """`L{layer}H{head}`, the name a head carries on every panel."""
    return f"L{int(layer)}H{int(head)}"


def log_spaced(steps: Iterable[float]) -> bool:
    """True when steps crowd the start: >= 3 distinct positive steps below 5% of the largest.

    Log-spaced checkpoint series (0, 1, 2, 4, ..., 512, then every N) pass; a metric logged every
    N steps does not.
    """
    s = np.unique(np.asarray(list(steps), dtype=float))
    s = s[s > 0]
    return len(s) >= 4 and int(np.sum(s < 0.05 * s.max())) >= 3


TIE = 0.02
GRID = 200
MAX_EMPTY_SHARE = 0.25
LINSCALE = 0.5  # width of the linear part [0, t] of a symmetric-log step axis, in decades (x 1 / 0.9)


def axis_position(steps: np.ndarray, linthresh: float | None) -> np.ndarray:
    """Position of `steps` on a linear (`linthresh` None) or symmetric-log step axis (arbitrary units)."""
    steps = np.asarray(steps, dtype=float)
    if linthresh is None:
        return steps
    return SymmetricalLogTransform(10, linthresh, LINSCALE).transform(steps)


def change_share(steps: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """Share of the total change of `values` ([S] or [S, n] series on sorted `steps`) before each step.

    Change = |difference between consecutive steps|, summed over series after each series is
    normalised to total change 1 (so every series counts the same whatever its unit); NaN
    differences count 0. Without values (or when nothing changes) change is spread evenly over
    the intervals between steps, i.e. the steps' own spacing decides.
    """
    n = len(steps)
    if n < 2:
        return np.zeros(n)
    per_interval = np.zeros(n - 1)
    if values is not None:
        v = np.asarray(values, dtype=float).reshape(n, -1)
        diff = np.nan_to_num(np.abs(np.diff(v, axis=0)), nan=0.0)
        total = diff.sum(axis=0)
        ok = total > 0
        if ok.any():
            per_interval = (diff[:, ok] / total[ok]).sum(axis=1)
    if per_interval.sum() <= 0:
        per_interval = np.ones(n - 1)
    return np.r_[0.0, np.cumsum(per_interval) / per_interval.sum()]


def choose_step_scale(steps: Iterable[float], values: np.ndarray | None = None) -> float | None:
    """The step axis that spends its width where the run changes: None (linear) or the threshold t
    of a symmetric-log axis (linear on [0, t], log above), t in 1, 2, 4, ... < max step / 8.

    For each candidate, width(s) = share of the axis between the first plotted step and s;
    change(s) = `change_share` of the plotted series, growing linearly in steps between two
    plotted steps (where inside an interval the change happened is unknown). Both are compared on
    the plotted steps and a dense grid between them (GRID linear and GRID log-spaced steps), so a
    sparse series (evals every 250 steps) is not stretched between two points. A candidate that
    gives one interval between neighbouring plotted steps more than MAX_EMPTY_SHARE = 1/4 of the
    axis is dropped (unless all do). The candidate with the smallest max_s |width(s) - change(s)|
    wins (candidates within TIE = 0.02 of the best: linear if among them, else the largest t).
    """
    order = np.argsort(np.asarray(list(steps), dtype=float), kind="stable")
    s = np.asarray(list(steps), dtype=float)[order]
    if len(s) < 3 or s.max() <= 0 or s.min() < 0:
        return None
    vals = None if values is None else np.asarray(values, dtype=float).reshape(len(s), -1)[order]
    change = change_share(s, vals)
    candidates: list[float | None] = [None]
    t = 1.0
    while t < s.max() / 8:
        candidates.append(t)
        t *= 2
    grid = np.unique(np.r_[s, np.linspace(s[0], s[-1], GRID), np.geomspace(max(s[0], 1.0), s[-1], GRID)])
    change = np.interp(grid, s, change)
    gaps, stretched = [], []
    for cand in candidates:
        pos = axis_position(grid, cand)
        width = (pos - pos[0]) / (pos[-1] - pos[0])
        gaps.append(float(np.max(np.abs(width - change))))
        at = axis_position(s, cand)
        stretched.append(float(np.max(np.diff(at)) / (at[-1] - at[0])) > MAX_EMPTY_SHARE)
    if not all(stretched):  # never stretch one unmeasured interval over much of the axis
        gaps = [np.inf if bad else g for g, bad in zip(gaps, stretched)]
    near = [c for c, g in zip(candidates, gaps) if g <= min(gaps) + TIE]
    best = None if None in near else max(near)
    return best


def _step_ticks(lo: float, hi: float, linthresh: float, most: int = 8) -> list[float]:
    """0, the threshold, and 1-2-5 x 10^k steps above it; thinned to powers of ten, then to every
    other one, until at most `most` remain."""
    ticks = [0.0] if lo <= 0 else []
    if 1 <= linthresh <= hi:
        ticks.append(float(linthresh))
    decades = [m * 10.0 ** k for k in range(0, 12) for m in (1, 2, 5)]
    above = [d for d in decades if linthresh * 1.4 < d <= hi]
    if len(ticks) + len(above) > most:
        above = [d for d in above if str(int(d))[0] == "1"] or above
    while len(ticks) + len(above) > most and len(above) > 1:
        above = above[::-2][::-1]  # every other one, keeping the largest
    return sorted(set(ticks + above))


def step_axis(ax: plt.Axes, steps: Iterable[float], label: str = "training step (optimizer updates)",
              axis: str = "x", log: bool | None = None, values: np.ndarray | None = None,
              max_ticks: int = 8) -> float | None:
    """Label a step axis and scale it by `choose_step_scale(steps, values)` (`values`: the plotted
    series on `steps`, [S] or [S, n]); `log=True` forces symmetric-log with t = 1, `log=False`
    linear; at most `max_ticks` ticks. Returns the threshold used (None = linear)."""
    steps = np.asarray(list(steps), dtype=float)
    if log is None:
        linthresh = choose_step_scale(steps, values)
    else:
        linthresh = 1.0 if log else None
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    which = ax.xaxis if axis == "x" else ax.yaxis
    if linthresh is not None and len(steps):
        setter("symlog", linthresh=linthresh, linscale=LINSCALE)
        lo, hi = float(steps.min()), float(steps.max())
        which.set_major_locator(FixedLocator(_step_ticks(lo, hi * 1.15, linthresh, max_ticks)))
        which.set_minor_locator(NullLocator())  # thousands of ticks otherwise
        which.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
        span = axis_position(np.array([lo, hi]), linthresh)
        pad = 0.02 * (span[1] - span[0])
        inverse = SymmetricalLogTransform(10, linthresh, LINSCALE).inverted()
        (ax.set_xlim if axis == "x" else ax.set_ylim)(float(inverse.transform(np.array([span[0] - pad]))[0]),
                                                       float(inverse.transform(np.array([span[1] + pad]))[0]))
        if label:
            label = f"{label}, log above {linthresh:,.0f}" if linthresh > 1 else f"{label}, log scale"
    elif len(steps):
        which.set_major_locator(MaxNLocator(max_ticks, steps=[1, 2, 2.5, 5, 10], integer=True, min_n_ticks=2))
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    return linthresh


def index_step_ticks(ax: plt.Axes, steps: Sequence[int], axis: str = "x", max_ticks: int = 8) -> None:
    """Tick an image axis whose cells are checkpoints (index 0..n-1) with the step numbers."""
    n = len(steps)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_ticks)).round().astype(int))
    labels = [f"{int(steps[i]):,}" for i in idx]
    if axis == "x":
        ax.set_xticks(idx, labels, rotation=45, ha="right")
    else:
        ax.set_yticks(idx, labels)


CHAR_WIDTH_EM = 0.6  # mean advance of a DejaVu Sans character, in ems (slightly generous)


def wrap_to(text: str, width_in: float, fontsize: float) -> str:
    """`text` broken at spaces into lines that fit `width_in` inches at `fontsize` points."""
    per_line = max(16, int(width_in * 72 / (CHAR_WIDTH_EM * fontsize)))
    return "\n".join(textwrap.fill(part, per_line) for part in text.split("\n"))


def fit_suptitle(fig: plt.Figure, text: str, fontsize: float = 11) -> None:
    """A figure title wrapped to 95% of the figure width (never clipped at the sides)."""
    fig.suptitle(wrap_to(text, 0.95 * fig.get_figwidth(), fontsize), fontsize=fontsize)


def fit_title(ax: plt.Axes, text: str, fontsize: float = 10, **kwargs) -> None:  # noqa: ANN003
    """An axes title wrapped to the axes' width (as laid out on its subplot grid)."""
    width = ax.get_position().width * ax.figure.get_figwidth()
    ax.set_title(wrap_to(text, width, fontsize), fontsize=fontsize, **kwargs)


def no_offset(*axes: plt.Axes) -> None:
    """Turn off scalar-formatter offsets explicitly (log axes have none)."""
    for ax in axes:
        for which in ("x", "y"):
            with contextlib.suppress(AttributeError, TypeError):
                ax.ticklabel_format(axis=which, useOffset=False)


def save_figure(fig: plt.Figure, out_dir: str | os.PathLike, name: str,
                formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write `fig` as OUT/name.<fmt> for each format (png at 200 dpi), atomically; close it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)  # constrained layout already fits every label
        paths.append(path)
    plt.close(fig)
    return paths
