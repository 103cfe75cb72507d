"""House style of every static figure: palette, fonts, step axes, saving.

- Palette: Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies;
  `ACCENT` (vermillion) marks layer means, `BOUNDARY` phase boundaries.
- Fonts sized so a figure 7 in wide stays readable when shrunk to one column (~3.5 in).
- `axes.formatter.useoffset` is off: a change of 4e-4 bits shows as 2.9996 -> 3.0000, never as
  an offset that makes it look large.
- Step axes are symmetric-log (linear below 1, log above, so step 0 stays on the axis) when the
  steps are log-spaced (`log_spaced`), linear otherwise.
- Layout is matplotlib's constrained layout (labels, colour bars and titles fit without cropping).
- `save_figure` writes PNG at 200 dpi (and pdf/svg on request) through a temp file + rename.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

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


def step_axis(ax: plt.Axes, steps: Iterable[float], label: str = "training step (optimizer updates)",
              axis: str = "x", log: bool | None = None) -> None:
    """Label a step axis and make it symmetric-log (linthresh 1) when `steps` are log-spaced
    (or when `log` says so)."""
    steps = np.asarray(list(steps), dtype=float)
    logs = log_spaced(steps) if log is None else log
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if logs:
        setter("symlog", linthresh=1.0, linscale=0.4)
        (ax.xaxis if axis == "x" else ax.yaxis).set_minor_locator(NullLocator())  # thousands of ticks otherwise
        (ax.set_xlim if axis == "x" else ax.set_ylim)(-0.3 if steps.min() <= 0 else steps.min() * 0.8,
                                                       steps.max() * 1.15)
        label = f"{label}, log scale" if label else label
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)


def index_step_ticks(ax: plt.Axes, steps: Sequence[int], axis: str = "x", max_ticks: int = 8) -> None:
    """Tick an image axis whose cells are checkpoints (index 0..n-1) with the step numbers."""
    n = len(steps)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_ticks)).round().astype(int))
    labels = [f"{int(steps[i]):,}" for i in idx]
    if axis == "x":
        ax.set_xticks(idx, labels, rotation=45, ha="right")
    else:
        ax.set_yticks(idx, labels)


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
