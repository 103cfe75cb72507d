"""Figures beyond the two studies: attention snapshots, trajectory UMAP (fig. 13), head-type
emergence beside val loss, and the claims table. Analysis results are drawn as stored in
RUN/analysis/ (tables `embedding`, `embedding_edges`, `head_types`, `emergence`,
`induction_phase`, `claims`); nothing is recomputed here.
"""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

from attnlife.report.data import MissingData, ReportRun
from attnlife.report.registry import figure
from attnlife.report.style import OKABE_ITO, color, no_offset, step_axis

VERDICT_COLOURS = {"holds": "#009E73", "does not hold": "#D55E00", "not applicable": "#999999"}
TYPE_ORDER = ("prev_token", "local", "sink", "self", "induction", "mixed")


def snapshot_heads(run: ReportRun, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    """`--heads` when given, else head 0 of up to four layers spread over the depth."""
    if run.heads:
        for layer, head in run.heads:
            if layer >= n_layer or head >= n_head:
                from attnlife.report.exemplars import HeadSpecError

                raise HeadSpecError(f"--heads names L{layer}H{head} but the model has {n_layer} "
                                    f"layers x {n_head} heads; pick layer < {n_layer}, head < {n_head}")
        return list(run.heads)
    layers = sorted({int(round(x)) for x in np.linspace(0, n_layer - 1, min(4, n_layer))})
    return [(layer, 0) for layer in layers]


@figure("attention_snapshots", "analysis")
def attention_snapshots(run: ReportRun) -> plt.Figure:
    """Attention patterns a_ij (query i, key j) of chosen heads at up to six snapshot steps."""
    store = run.snapshot_store()
    names = [n for n in store.names() if n.startswith("layer")]
    if not names:
        raise MissingData(f"no per-layer attention snapshots; run `attnlife track {run.root}`")
    steps = store.steps(names[0])
    shown = [steps[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(steps) - 1, min(6, len(steps)))})]
    shown = [s for s in shown if all(store.read_bits_or_warn(n, s) is not None for n in names)]
    if not shown:  # a step with a damaged snapshot file (warned about) is left out
        raise MissingData(f"the attention snapshots shown are damaged (see the warnings); delete "
                          f"them from {store.root}")
    first = store.read(names[0], shown[0]).float().numpy()
    heads = snapshot_heads(run, len(names), first.shape[0])
    fig, axes = plt.subplots(len(heads), len(shown), figsize=(1.9 * len(shown) + 1.2, 1.9 * len(heads) + 0.8),
                             squeeze=False)
    pnorm = PowerNorm(gamma=0.4, vmin=0, vmax=1)
    for r, (layer, head) in enumerate(heads):
        for c, step in enumerate(shown):
            pattern = store.read(f"layer{layer}", step).float().numpy()[head]
            ax = axes[r][c]
            img = ax.imshow(pattern, cmap="cividis", norm=pnorm, interpolation="nearest")
            ax.grid(False)
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"step {step:,}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"L{layer}H{head}\nquery position", fontsize=7)
            if r == len(heads) - 1:
                ax.set_xlabel("key position (tokens)", fontsize=7)
    fig.colorbar(img, ax=axes, label="attention probability (power colour, gamma 0.4)", shrink=0.8)
    fig.suptitle("Attention patterns of chosen heads over training (one sampled sequence)")
    return fig


@figure("trajectory_umap", "analysis")
def trajectory_umap(run: ReportRun) -> plt.Figure:
    """Fig. 13: UMAP of per-head trajectories from the analysis, coloured by layer, kNN edges grey."""
    emb = run.analysis_table("embedding").reset_index(drop=True)
    edges = run.analysis.get("embedding_edges")
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    if edges is not None and len(edges):
        for s, d in zip(edges["src"].astype(int), edges["dst"].astype(int)):
            ax.plot(emb.x.iloc[[s, d]], emb.y.iloc[[s, d]], color="0.75", lw=0.6, zorder=1)
    n_layer = int(emb.layer.max()) + 1
    cmap = plt.get_cmap("viridis", max(n_layer, 2))
    sc = ax.scatter(emb.x, emb.y, c=emb.layer, cmap=cmap, vmin=-0.5, vmax=n_layer - 0.5, s=38,
                    edgecolors="black", linewidths=0.4, zorder=2)
    if len(emb) <= 48:
        for row in emb.itertuples():
            ax.annotate(f"L{row.layer}H{row.head_index}", (row.x, row.y), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    fig.colorbar(sc, ax=ax, label="layer", ticks=range(n_layer))
    ax.set(xlabel="UMAP 1 (arbitrary units)", ylabel="UMAP 2 (arbitrary units)")
    n_clusters = emb["cluster"].nunique() if "cluster" in emb else 0
    ax.set_title(f"Head trajectories embedded with UMAP: {len(emb)} heads, {n_clusters} clusters")
    return fig


def _type_counts(types) -> tuple[np.ndarray, list[str], np.ndarray]:  # noqa: ANN001 - DataFrame
    table = types.groupby(["step", "type"]).size().unstack(fill_value=0).sort_index()
    order = [t for t in TYPE_ORDER if t in table.columns] + [t for t in table.columns if t not in TYPE_ORDER]
    return table.index.to_numpy(), order, table[order].to_numpy().T


@figure("head_type_emergence", "analysis")
def head_type_emergence(run: ReportRun) -> plt.Figure:
    """Heads per type over steps (stacked) with emergence steps, above the checkpoint loss
    (`probe_loss_nats` with a 2-standard-error band, measured at every checkpoint; val loss only
    when the run has no probe pass), each emergence marked on the loss at its step."""
    types = run.analysis_table("head_types", f" (no head-type scores: run `attnlife track {run.root}`)")
    steps, order, counts = _type_counts(types)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.8, 5.8), sharex=True, height_ratios=(3, 2))
    colours = [OKABE_ITO[i % 8] if t != "mixed" else "#BBBBBB" for i, t in enumerate(order)]
    top.stackplot(steps, counts, labels=order, colors=colours, alpha=0.9)
    top.set_ylabel("heads of each type (count)")
    top.legend(loc="upper left", fontsize=7, ncol=3)
    emergence = run.analysis.get("emergence")
    loss, loss_label = run.model_series("probe_loss_nats", "probe"), "probe loss (every checkpoint)"
    if not len(loss):
        loss, loss_label = run.model_series("eval_loss", "val"), "validation loss"
    bottom.plot(loss.step, loss.value, color=color(0), marker="o", ms=3, label=loss_label)
    if loss.stderr.notna().any():
        bottom.fill_between(loss.step, loss.value - 2 * loss.stderr, loss.value + 2 * loss.stderr,
                            color=color(0), alpha=0.2, lw=0)
    bottom.set_ylabel("loss (nats / token)")
    if emergence is not None and len(emergence):
        at = loss.set_index("step").value
        for i, (t, g) in enumerate(emergence.groupby("type")):
            y = [float(at.get(s, np.nan)) for s in g.emergence_step]
            y = [v if np.isfinite(v) else float(loss.value.max() if len(loss) else 0) for v in y]
            bottom.plot(g.emergence_step, y, "|", ms=14, mew=2,
                        color=colours[order.index(t)] if t in order else color(i), label=f"{t} emerges")
    induction = run.analysis.get("induction_phase")
    if induction is not None and len(induction):
        for ax in (top, bottom):
            ax.axvline(float(induction.step.iloc[0]), color="black", ls="--", lw=1)
    bottom.legend(fontsize=7)
    step_axis(bottom, steps)
    no_offset(top, bottom)
    final = dict(zip(order, counts[:, -1]))
    named = ", ".join(f"{int(n)} {t}" for t, n in final.items() if n) or "no heads"
    top.set_title(f"Head types over training: at step {int(steps[-1]):,}, {named} heads", fontsize=9.5)
    return fig


@figure("claims_table", "analysis")
def claims_table(run: ReportRun) -> plt.Figure:
    """The claims check rendered: claim, measured value and verdict (coloured) per row."""
    claims = run.analysis_table("claims")
    rows = [[textwrap.fill(str(r.source), 14), textwrap.fill(str(r.claim), 46), textwrap.fill(str(r.measured), 30),
             r.verdict] for r in claims.itertuples()]
    height = 0.9 + sum(max(c.count("\n") + 1 for c in row) for row in rows) * 0.2
    fig, ax = plt.subplots(figsize=(10, height))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["source", "claim", "measured on this run", "verdict"],
                     colWidths=[0.13, 0.44, 0.29, 0.14], loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    row_lines = [1] + [max(cell.count("\n") + 1 for cell in row) for row in rows]
    for (r, c), cell in table.get_celld().items():
        cell.set_height(0.2 * row_lines[r] / height)
        cell.PAD = 0.02
        if r > 0 and c == 3:
            cell.set_facecolor(VERDICT_COLOURS.get(rows[r - 1][3], "white"))
            cell.get_text().set_color("white")
        if r == 0:
            cell.set_text_props(weight="bold")
    tally = claims.verdict.value_counts()
    ax.set_title(f"Published claims checked on this run: {tally.get('holds', 0)} hold, "
                 f"{tally.get('does not hold', 0)} do not, {tally.get('not applicable', 0)} not applicable")
    return fig
