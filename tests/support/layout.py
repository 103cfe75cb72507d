"""Layout checks of a drawn matplotlib figure: text inside the figure, nothing overlapping.

`layout_problems(fig)` draws the figure once (Agg) and returns one line per problem:
- a title, suptitle, axis label, tick label, annotation, colour-bar label, legend, table or inset
  whose window extent leaves the figure (more than TOLERANCE_PX beyond an edge);
- an inset (frame, ticks and title) that leaves the axes it sits in;
- two of them whose extents overlap by more than TOLERANCE_PX in both directions, except
  (a) tick labels of one axis that are rotated (their axis-aligned boxes touch by construction),
  (b) an inset's frame and its own texts, and (c) two point labels (`gid="point-label"`: names
  written next to scatter points, which overlap where the points do).
A legend counts as one box (its frame), so its entries never count against each other.
"""
from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

TOLERANCE_PX = 1.0


def _all_axes(fig: Figure) -> list[Axes]:
    out, todo = [], list(fig.axes)
    while todo:
        ax = todo.pop(0)
        if ax in out:
            continue
        out.append(ax)
        todo += list(getattr(ax, "child_axes", []))
    return [ax for ax in out if ax.get_visible()]


def _shown(t: Text) -> bool:
    return bool(t.get_visible() and t.get_text().strip())


def _describe(t: Text, where: str) -> str:
    return f"{where} {t.get_text().strip()[:40]!r}"


def collect_boxes(fig: Figure, renderer) -> list[dict]:  # noqa: ANN001 - RendererAgg
    """Every box the checks look at: {box [x0, y0, x1, y1] px, name, owner, group, kind}."""
    boxes = []

    def add(artist, name: str, owner: int, group: str, kind: str) -> None:  # noqa: ANN001
        bb = artist.get_window_extent(renderer)
        if bb.width > 0 and bb.height > 0:
            boxes.append({"box": np.array([bb.x0, bb.y0, bb.x1, bb.y1]), "name": name, "owner": owner,
                          "group": group, "kind": kind})

    for t in fig.texts:
        if _shown(t):
            add(t, _describe(t, "figure text"), -1, "figure", "text")
    for legend in fig.legends:
        add(legend, "figure legend", -1, "figure", "legend")
    for i, ax in enumerate(_all_axes(fig)):
        is_inset = any(ax in getattr(other, "child_axes", []) for other in fig.axes)
        where = f"axes {i}" + (" (inset)" if is_inset else "")
        for title in (ax.title, ax._left_title, ax._right_title):
            if _shown(title):
                add(title, _describe(title, f"{where} title"), i, "title", "text")
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if not (ax.axison and axis.get_visible()):
                continue
            if _shown(axis.label):
                add(axis.label, _describe(axis.label, f"{where} {letter}label"), i, "label", "text")
            for tick in axis._update_ticks():
                for lab in (tick.label1, tick.label2):
                    if _shown(lab):
                        rotated = abs(lab.get_rotation() % 180) > 1e-6
                        add(lab, _describe(lab, f"{where} {letter}tick"), i,
                            f"ticks{i}{letter}" if rotated else "tick", "text")
            if _shown(axis.offsetText):
                add(axis.offsetText, _describe(axis.offsetText, f"{where} {letter}offset"), i, "offset", "text")
        for t in ax.texts:
            if _shown(t):
                add(t, _describe(t, f"{where} text"), i, "point-label" if t.get_gid() == "point-label" else "text",
                    "text")
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            add(legend, f"{where} legend", i, "legend", "legend")
        for table in ax.tables:
            add(table, f"{where} table", i, "table", "table")
        if is_inset:
            add(ax, f"{where} frame", i, "inset", "inset")
    return boxes


def layout_problems(fig: Figure) -> list[str]:
    """One line per text leaving the figure or overlapping another (see module docstring)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = collect_boxes(fig, renderer)
    w, h = fig.bbox.width, fig.bbox.height
    problems = []
    for ax in _all_axes(fig):
        for ins in getattr(ax, "child_axes", []):
            if not ins.get_visible():
                continue
            inner, outer = ins.get_tightbbox(renderer), ax.bbox
            if (inner.x0 < outer.x0 - TOLERANCE_PX or inner.y0 < outer.y0 - TOLERANCE_PX
                    or inner.x1 > outer.x1 + TOLERANCE_PX or inner.y1 > outer.y1 + TOLERANCE_PX):
                problems.append(f"inset {ins.get_title()!r} leaves its axes: [{inner.x0:.0f}, {inner.y0:.0f}, "
                                f"{inner.x1:.0f}, {inner.y1:.0f}] not in [{outer.x0:.0f}, {outer.y0:.0f}, "
                                f"{outer.x1:.0f}, {outer.y1:.0f}]")
    for b in boxes:
        x0, y0, x1, y1 = b["box"]
        if x0 < -TOLERANCE_PX or y0 < -TOLERANCE_PX or x1 > w + TOLERANCE_PX or y1 > h + TOLERANCE_PX:
            problems.append(f"outside the figure ({w:.0f} x {h:.0f} px): {b['name']} at "
                            f"[{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}]")
    if len(boxes) < 2:
        return problems
    arr = np.stack([b["box"] for b in boxes])
    dx = np.minimum(arr[:, None, 2], arr[None, :, 2]) - np.maximum(arr[:, None, 0], arr[None, :, 0])
    dy = np.minimum(arr[:, None, 3], arr[None, :, 3]) - np.maximum(arr[:, None, 1], arr[None, :, 1])
    hit = (dx > TOLERANCE_PX) & (dy > TOLERANCE_PX)
    for i, j in zip(*np.nonzero(np.triu(hit, 1))):
        a, b = boxes[i], boxes[j]
        same_group = a["group"] == b["group"]
        if same_group and (a["group"].startswith("ticks") or a["group"] == "point-label"):
            continue
        if {a["kind"], b["kind"]} == {"inset", "text"} and a["owner"] == b["owner"]:
            continue
        problems.append(f"overlap: {a['name']} and {b['name']} ({dx[i, j]:.0f} x {dy[i, j]:.0f} px)")
    return problems
