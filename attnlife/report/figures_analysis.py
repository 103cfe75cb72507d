"""Figures beyond the two studies: attention snapshots, trajectory UMAP (fig. 13), head-type
emergence beside val loss, and the claims table. Analysis results are drawn as stored in
RUN/analysis/ (tables `embedding`, `embedding_edges`, `head_types`, `emergence`,
`induction_phase`, `claims`); nothing is recomputed here.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import PowerNorm

from attnlife.report.data import MissingData, ReportRun
from attnlife.report.registry import figure
from attnlife.report.style import OKABE_ITO, color, fit_suptitle, fit_title, no_offset, step_axis

VERDICT_COLOURS = {"holds": "#009E73", "does not hold": "#D55E00", "not applicable": "#999999"}


TYPE_COLOURS = {"previous_token": OKABE_ITO[0], "prev_token": OKABE_ITO[0], "local": OKABE_ITO[1],
                "sink": OKABE_ITO[2], "self": OKABE_ITO[3], "induction": OKABE_ITO[5]}
MIXED_COLOUR = "#EEEEEE"
MAX_LANES = 40
ALL_LANES_UP_TO = 24


def type_colour(kind: str) -> str:
    """The colour of a head type on every analysis figure (mixed: near-white)."""
    return MIXED_COLOUR if kind == "mixed" else TYPE_COLOURS.get(kind, OKABE_ITO[4])


def emerged_heads(run: ReportRun) -> list[tuple[int, int, str, int]]:
    """(layer, head, type, emergence step) of every emergence in `analysis/emergence`, earliest first."""
    table = run.analysis.get("emergence")
    if table is None or table.empty:
        return []
    table = table.sort_values(["emergence_step", "layer", "head_index"], kind="stable")
    return [(int(r.layer), int(r.head_index), str(r.type), int(r.emergence_step)) for r in table.itertuples()]


def snapshot_heads(run: ReportRun, n_layer: int, n_head: int, most: int = 4) -> list[tuple[int, int, str]]:
    """(layer, head, row note): `--heads` when given; else the heads that emerged (the earliest
    head of each type first, then further emergences, up to `most`); else head 0 of up to four
    layers spread over the depth."""
    if run.heads:
        for layer, head in run.heads:
            if layer >= n_layer or head >= n_head:
                from attnlife.report.exemplars import HeadSpecError

                raise HeadSpecError(f"--heads names L{layer}H{head} but the model has {n_layer} "
                                    f"layers x {n_head} heads; pick layer < {n_layer}, head < {n_head}")
        return [(layer, h, "chosen") for layer, h in run.heads]
    found = [e for e in emerged_heads(run) if e[0] < n_layer and e[1] < n_head]
    chosen: list[tuple[int, int, str]] = []
    for pass_types in (True, False):
        seen = {note.split(" ")[0] for _, _, note in chosen}
        for layer, head, kind, step in found:
            if len(chosen) >= most or (pass_types and kind in seen):
                continue
            if all((layer, head) != (c[0], c[1]) for c in chosen):
                chosen.append((layer, head, f"{kind} from step {step:,}"))
                seen.add(kind)
    if chosen:
        return chosen
    layers = sorted({int(round(x)) for x in np.linspace(0, n_layer - 1, min(4, n_layer))})
    return [(layer, 0, "no head type emerged") for layer in layers]


@figure("attention_snapshots", "analysis")
def attention_snapshots(run: ReportRun) -> plt.Figure:
    """Attention patterns a_ij (query i, key j) of the heads that emerged (`snapshot_heads`) at up
    to six snapshot steps spread over the run."""
    store = run.snapshot_store()
    names = [n for n in store.names() if n.startswith("layer")]
    if not names:
        raise MissingData("no per-layer attention snapshots: the tracker stores them during `attnlife train`")
    steps = store.steps(names[0])
    shown = [steps[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(steps) - 1, min(6, len(steps)))})]
    shown = [s for s in shown if all(store.read_bits_or_warn(n, s) is not None for n in names)]
    if not shown:  # a step with a damaged snapshot file (warned about) is left out
        raise MissingData(f"the attention snapshots shown are damaged (see the warnings); delete "
                          f"them from {store.root}")
    first = store.read(names[0], shown[0]).float().numpy()
    heads = snapshot_heads(run, len(names), first.shape[0])
    fig, axes = plt.subplots(len(heads), len(shown), figsize=(1.9 * len(shown) + 1.6, 1.9 * len(heads) + 0.9),
                             squeeze=False)
    pnorm = PowerNorm(gamma=0.4, vmin=0, vmax=1)
    for r, (layer, head, note) in enumerate(heads):
        for c, step in enumerate(shown):
            pattern = store.read(f"layer{layer}", step).float().numpy()[head]
            ax = axes[r][c]
            img = ax.imshow(pattern, cmap="cividis", norm=pnorm, interpolation="nearest")
            ax.grid(False)
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"step {step:,}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"L{layer}H{head}\n{note}\nquery position", fontsize=6.5)
            if r == len(heads) - 1:
                ax.set_xlabel("key position", fontsize=7)
    fig.colorbar(img, ax=axes, label="attention probability (power colour, gamma 0.4)", shrink=0.8)
    what = ("chosen heads" if run.heads else "heads that emerged as a type"
            if heads[0][2] != "no head type emerged" else "head 0 of each layer (no head type emerged)")
    fit_suptitle(fig, f"Attention patterns of {len(heads)} {what}, {len(shown)} steps from {shown[0]:,} to "
                      f"{shown[-1]:,} (one stored sequence, {first.shape[-1]} tokens)", fontsize=10)
    return fig


@figure("trajectory_umap", "analysis")
def trajectory_umap(run: ReportRun) -> plt.Figure:
    """Fig. 13: the trajectory embedding from the analysis (UMAP from 64 heads, PCA below),
    coloured by k-means cluster; grey edges join each head to its k nearest heads in the
    standardised trajectory space (the graph UMAP lays out)."""
    emb = run.analysis_table("embedding").reset_index(drop=True)
    edges = run.analysis.get("embedding_edges")
    info = run.summary.get("notes", {}).get("embedding", {}) if isinstance(run.summary, dict) else {}
    method = str(info.get("method", "umap"))
    pca = method.startswith("pca")
    fig, ax = plt.subplots(figsize=(6.6, 5.4))
    if edges is not None and len(edges):
        segs = [[(emb.x.iloc[s], emb.y.iloc[s]), (emb.x.iloc[d], emb.y.iloc[d])]
                for s, d in zip(edges["src"].astype(int), edges["dst"].astype(int))]
        from matplotlib.collections import LineCollection

        k = info.get("n_neighbors")
        ax.add_collection(LineCollection(segs, colors="0.78", linewidths=0.6, zorder=1,
                                         label=f"each head to its {k} nearest heads (trajectory space)"
                                         if k else "nearest-neighbour edges (trajectory space)"))
    clusters = emb["cluster"].astype(int) if "cluster" in emb else np.zeros(len(emb), dtype=int)
    n_clusters = int(clusters.nunique())
    markers = "osD^v<>p"
    for c in sorted(clusters.unique()):
        part = emb[clusters == c]
        ax.scatter(part.x, part.y, color=color(int(c)) if n_clusters > 1 else "0.45", s=40,
                   marker=markers[int(c) % len(markers)], edgecolors="black", linewidths=0.4, zorder=2,
                   label=f"cluster {c} ({len(part)} head{'s' if len(part) != 1 else ''})" if n_clusters > 1 else f"all {len(part)} heads")
    if len(emb) <= 48:
        for row in emb.itertuples():
            ax.annotate(f"L{row.layer}H{row.head_index}", (row.x, row.y), fontsize=6, xytext=(3, 3),
                        textcoords="offset points", gid="point-label")
    explained = info.get("explained") or []
    if pca and len(explained) >= 2:
        ax.set(xlabel=f"principal component 1 ({100 * explained[0]:.0f}% of variance)",
               ylabel=f"principal component 2 ({100 * explained[1]:.0f}% of variance)")
    else:
        ax.set(xlabel="UMAP 1 (arbitrary units)", ylabel="UMAP 2 (arbitrary units)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7)
    ax.margins(0.08)
    sil = info.get("silhouette")
    how = "PCA (too few heads for UMAP)" if pca else "UMAP"
    if n_clusters > 1:
        found = f"{n_clusters} k-means clusters" + (f" (silhouette {sil:.2f})" if isinstance(sil, float) else "")
    else:
        found = "no cluster structure" + (f" (best silhouette {sil:.2f} < 0.25)" if isinstance(sil, float) else "")
    fit_title(ax, f"Head trajectories of {len(emb)} heads by {how}: {found}", fontsize=9.5)
    ax.autoscale_view()
    return fig


def _loss_for_emergence(run: ReportRun) -> tuple[str, "pd.DataFrame"]:
    """(label, step/value/stderr) of the loss measured at the type-scored checkpoints, never
    interpolated: probe loss (split probe, every checkpoint, +- 2 s.e.) when present, else the
    validation loss, else (a run with neither) the trailing-mean training loss."""
    probe = run.model_series("probe_loss_nats", "probe")
    if len(probe):
        return "probe loss (every checkpoint)", probe
    val = run.model_series("eval_loss", "val")
    if len(val):
        return "validation loss", val
    train = run.model_series("loss", "train")
    if len(train):
        from attnlife.report.figures_training import trailing_mean

        train = train.copy()
        train["value"] = trailing_mean(train.step.to_numpy(), train.value.to_numpy())
        train["stderr"] = np.nan
    return "training loss (trailing mean)", train


def lanes_shown(run: ReportRun, types) -> tuple[list[tuple[int, int]], int]:  # noqa: ANN001 - DataFrame
    """Lanes of the emergence figure and the number of heads left out: every head up to
    ALL_LANES_UP_TO heads; beyond, the heads that emerged (earliest first), then heads that ever
    carried a type, at most MAX_LANES."""
    heads = sorted({(int(a), int(b)) for a, b in zip(types.layer, types.head_index)})
    if len(heads) <= ALL_LANES_UP_TO:
        return heads, 0
    order = list(dict.fromkeys((layer, head) for layer, head, _, _ in emerged_heads(run)))
    typed = types[types.type != "mixed"]
    order += [h for h in sorted({(int(a), int(b)) for a, b in zip(typed.layer, typed.head_index)}) if h not in order]
    return order[:MAX_LANES], len(heads) - len(order[:MAX_LANES])


@figure("head_type_emergence", "analysis")
def head_type_emergence(run: ReportRun) -> plt.Figure:
    """One lane per head coloured by its type at each checkpoint (`analysis/head_types`), a black
    tick where a type emerged (`analysis/emergence`), above the densest loss curve (probe loss with
    its standard error when stored, else training loss); the induction phase change dashed."""
    import pandas as pd

    scored = "prev_token_score" in set(run.metrics.metric)
    types = run.analysis_table("head_types", " (the type scores are in the metric table: analyze again)" if scored
                               else f" (no head-type scores: run `attnlife track {run.root}` first)")
    lanes, left_out = lanes_shown(run, types)
    steps = np.sort(types.step.unique())
    label_at = {(int(r.layer), int(r.head_index), int(r.step)): str(r.type) for r in types.itertuples()}
    lane_h = 0.19 if len(lanes) > 16 else 0.26
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.2, 2.6 + lane_h * len(lanes) + 2.2), sharex=True,
                                      height_ratios=(max(2.0, lane_h * len(lanes)), 2.2))
    edges = np.r_[steps, steps[-1] + max(1.0, 0.03 * steps[-1])]
    kinds_seen = sorted(set(types.type), key=lambda t: (t == "mixed", t))
    code = {k: i for i, k in enumerate(kinds_seen)}
    grid = np.array([[code[label_at.get((layer, head, int(st)), "mixed")] for st in steps] for layer, head in lanes])
    from matplotlib.colors import ListedColormap

    top.pcolormesh(edges, np.arange(len(lanes) + 1) - 0.5, grid, cmap=ListedColormap([type_colour(k) for k in kinds_seen]),
                   vmin=-0.5, vmax=len(kinds_seen) - 0.5, shading="flat", rasterized=True)
    for row in range(1, len(lanes)):
        top.axhline(row - 0.5, color="white", lw=0.8)
    seen_types = {k: None for k in kinds_seen if (grid == code[k]).any()}
    emerged = emerged_heads(run)
    for layer, head, kind, step in emerged:
        if (layer, head) in lanes:
            row = lanes.index((layer, head))
            top.plot([step, step], [row - 0.48, row + 0.48], color="black", lw=1.6, zorder=3)
    top.set_yticks(range(len(lanes)), [f"L{a}H{b}" for a, b in lanes], fontsize=6.5 if len(lanes) > 16 else 7.5)
    top.set_ylim(len(lanes) - 0.5, -0.5)
    top.set_ylabel("head")
    top.grid(False)
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D

    order = [t for t in ("previous_token", "prev_token", "local", "sink", "self", "induction") if t in seen_types]
    order += [t for t in seen_types if t not in order and t != "mixed"] + (["mixed"] if "mixed" in seen_types else [])
    handles = [Patch(facecolor=type_colour(t), edgecolor="0.6" if t == "mixed" else "none",
                     label=t.replace("_", " ") + (" (no type)" if t == "mixed" else "")) for t in order]
    if any((a, b) in lanes for a, b, _, _ in emerged_heads(run)):
        handles.append(Line2D([], [], color="black", lw=1.6, label="type emerged"))
    top.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)

    label, loss = _loss_for_emergence(run)
    loss = loss.sort_values("step")
    if len(loss):
        se = loss["stderr"].to_numpy(float)
        bottom.plot(loss.step, loss.value, color=color(0), marker="o" if len(loss) < 200 else None, ms=3, lw=1.3,
                    label=label)
        if np.isfinite(se).any():
            bottom.fill_between(loss.step, loss.value - 2 * se, loss.value + 2 * se, color=color(0), alpha=0.22, lw=0,
                                label="+- 2 s.e.")
        at = loss.set_index("step").value
        for kind in dict.fromkeys(k for _, _, k, _ in emerged):
            when = [st for _, _, k, st in emerged if k == kind]
            y = [float(at.get(st, np.nan)) for st in when]   # the loss at the emergence checkpoint, never interpolated
            y = [v if np.isfinite(v) else float(loss.value.max()) for v in y]
            bottom.plot(when, y, "|", ms=14, mew=2, color=type_colour(kind), label=f"{kind.replace('_', ' ')} emerges")
    bottom.set_ylabel("loss (nats / token)")
    induction = run.analysis.get("induction_phase")
    if induction is not None and len(induction):
        for ax in (top, bottom):
            ax.axvline(float(induction.step.iloc[0]), color="black", ls="--", lw=1,
                       label="induction phase change" if ax is bottom else None)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    # the axis follows both panels: the loss and the number of heads carrying a type
    axis_steps = np.union1d(steps, loss.step.to_numpy()) if len(loss) else steps
    typed = np.interp(axis_steps, steps, (grid != code.get("mixed", -1)).sum(axis=0))
    series = [typed] + ([np.interp(axis_steps, loss.step.to_numpy(), loss.value.to_numpy())] if len(loss) else [])
    step_axis(bottom, axis_steps, values=np.stack(series, axis=1))
    no_offset(bottom)
    kinds = pd.Series([k for _, _, k, _ in emerged]).value_counts() if emerged else pd.Series(dtype=int)
    named = ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in kinds.items())
    if emerged:
        layer, head, kind, step = emerged[0]
        what = (f"{len({(a, b) for a, b, _, _ in emerged})} heads took a type ({named}); first "
                f"L{layer}H{head} ({kind.replace('_', ' ')}) at step {step:,}")
    else:
        what = "no head type emerged"
    more = f"; {left_out} heads without a type not shown" if left_out else ""
    fit_title(top, f"Head types over training: {what}{more}", fontsize=9.5)
    return fig


@figure("claims_table", "analysis")
def claims_table(run: ReportRun) -> plt.Figure:
    """The claims check rendered: claim, measured value, verdict (coloured) and why, per row."""
    claims = run.analysis_table("claims")
    reasons = claims["reason"] if "reason" in claims else pd.Series("", index=claims.index)
    rows = [[textwrap.fill(str(r.source), 14), textwrap.fill(str(r.claim), 40), textwrap.fill(str(r.measured), 28),
             textwrap.fill(str(r.verdict), 10), textwrap.fill("" if pd.isna(why) else str(why), 30)]
            for r, why in zip(claims.itertuples(), reasons)]
    height = 0.9 + sum(max(c.count("\n") + 1 for c in row) for row in rows) * 0.2
    fig, ax = plt.subplots(figsize=(10, height))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["source", "claim", "measured on this run", "verdict", "why"],
                     colWidths=[0.11, 0.33, 0.25, 0.1, 0.27], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    row_lines = [1] + [max(cell.count("\n") + 1 for cell in row) for row in rows]
    for (r, c), cell in table.get_celld().items():
        cell.set_height(0.2 * row_lines[r] / height)
        cell.PAD = 0.02
        if r > 0 and c == 3:
            cell.set_facecolor(VERDICT_COLOURS.get(claims.verdict.iloc[r - 1], "white"))
            cell.get_text().set_color("white")
        if r == 0:
            cell.set_text_props(weight="bold")
    tally = claims.verdict.value_counts()
    ax.set_title(f"Published claims checked on this run: {tally.get('holds', 0)} hold, "
                 f"{tally.get('does not hold', 0)} do not, {tally.get('not applicable', 0)} not applicable")
    return fig
