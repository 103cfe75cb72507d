"""PNG figures of the theory experiments (matplotlib, Agg backend), drawn from a run's metric table.

- `plot_scan_snap(run_dir)` -> RUN/report/scan_snap.png: attention mass on distinct vs common
  tokens, distinct-token entropy (bits), and logits z vs training step (log axis; log-time growth is a
  straight line there).
- `plot_sweep(run_dir)` -> RUN/report/sweep_entropy.png: final distinct-token entropy vs eta_Y/eta_Z,
  mean +- standard error over seeds, one line per M/K, one panel per eta_Z.
- `plot_markov(run_dir, cycles)` -> RUN/report/markov_focus.png: focus signal with detected cycles
  shaded, stable ranks, attention-parameter norm, entropy and loss.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from attnlife.analysis.cycles import Cycle  # noqa: E402
from attnlife.store.atomic import atomic_path  # noqa: E402
from attnlife.store.run_dir import load_run  # noqa: E402


def _series(frame: pd.DataFrame, metric: str, split: str = "train") -> pd.DataFrame:
    rows = frame[(frame.metric == metric) & (frame.split == split)]
    return rows.sort_values("step")


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_scan_snap(run_dir: str | os.PathLike) -> Path:
    """Three panels of one scan-and-snap run; returns the PNG path."""
    run = load_run(run_dir)
    frame = run.metrics()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for metric, label in (("attn_distinct", "own distinct tokens"), ("attn_common", "common tokens")):
        s = _series(frame, metric)
        axes[0].plot(s.step + 1, s.value, label=label)
    axes[0].set(xscale="log", xlabel="step + 1 (SGD steps, log)", ylabel="attention mass (fraction)",
                title="Scan: common tokens suppressed")
    s = _series(frame, "entropy_distinct_bits")
    axes[1].plot(s.step + 1, s.value, color="C2")
    axes[1].set(xscale="log", xlabel="step + 1 (SGD steps, log)", ylabel="entropy on distinct tokens (bits)",
                title="Snap: entropy falls, then freezes")
    for metric, label in (("z_distinct_max", "max z, distinct"), ("z_distinct_mean", "mean z, distinct"),
                          ("z_common_mean", "mean z, common")):
        s = _series(frame, metric)
        axes[2].plot(s.step + 1, s.value, label=label)
    axes[2].set(xscale="log", xlabel="step + 1 (SGD steps, log)", ylabel="attention logit z (nats)",
                title="Logits: ~log t growth, then slower")
    for ax in (axes[0], axes[2]):
        ax.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    cfg = run.config
    fig.suptitle(f"scan and snap, M/K={cfg.get('n_last')}/{cfg.get('n_next')}, T={cfg.get('seq_len')}, "
                 f"eta_Y={cfg.get('eta_y')}, eta_Z={cfg.get('eta_z')}, param={cfg.get('param')}")
    return _save(fig, run.paths.report / "scan_snap.png")


def sweep_table(run_dir: str | os.PathLike, name: str = "entropy_distinct_bits") -> pd.DataFrame:
    """Final-step mean and se per (M, K, eta_z, ratio) of a sweep run: columns m k eta_z ratio mean se."""
    from attnlife.theory.scan_snap_runs import parse_sweep_metric

    frame = load_run(run_dir).metrics()
    frame = frame[frame.step == frame.step.max()]
    rows: dict[tuple, dict] = {}
    for metric, value in zip(frame.metric, frame.value):
        info = parse_sweep_metric(metric)
        if info is None or info["name"] != name or info["which"] not in ("mean", "se"):
            continue
        key = (info["m"], info["k"], info["eta_z"], info["ratio"])
        rows.setdefault(key, dict(zip(("m", "k", "eta_z", "ratio"), key)))[info["which"]] = value
    return pd.DataFrame(list(rows.values())).sort_values(["eta_z", "m", "ratio"]).reset_index(drop=True)


def plot_sweep(run_dir: str | os.PathLike) -> Path:
    """Entropy-vs-rate-ratio curves with standard-error bars; returns the PNG path."""
    run = load_run(run_dir)
    table = sweep_table(run_dir)
    etas = sorted(table.eta_z.unique())
    fig, axes = plt.subplots(1, len(etas), figsize=(6.5 * len(etas), 4.5), squeeze=False, sharey=True)
    for ax, eta_z in zip(axes[0], etas):
        part = table[table.eta_z == eta_z]
        for (m, k), g in part.groupby(["m", "k"]):
            ax.errorbar(g.ratio, g["mean"], yerr=g["se"], marker="o", capsize=3, label=f"M/K = {m}/{k}")
        ax.set(xscale="log", xlabel="eta_Y / eta_Z (log)", title=f"eta_Z = {eta_z:g}")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("final entropy on distinct tokens (bits)")
    cfg = run.config
    fig.suptitle(f"scan and snap sweep: mean +- s.e. over {cfg.get('n_seeds')} seeds, "
                 f"{cfg.get('steps')} steps, T={cfg.get('seq_len')}")
    return _save(fig, run.paths.report / "sweep_entropy.png")


def plot_markov(run_dir: str | os.PathLike, cycles: list[Cycle]) -> Path:
    """Focus signal with cycles shaded plus stage signatures; returns the PNG path."""
    run = load_run(run_dir)
    frame = run.metrics()
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    ax = axes[0][0]
    s = _series(frame, "attn_focus_excess")
    ax.plot(s.step, s.value, color="C3", label="focus excess (mass on top tokens - uniform)")
    for i, c in enumerate(cycles):
        ax.axvspan(c.start_step, c.trough_step, color="C1", alpha=0.2, label="detected cycle" if i == 0 else None)
        ax.axvline(c.peak_step, color="C1", ls="--", lw=1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set(xlabel="step (SGD steps)", ylabel="attention mass excess (fraction)",
           title=f"focus / dilution: {len(cycles)} cycle(s)")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    for metric, label in (("stable_rank_embedding", "embedding E"), ("stable_rank_out_proj", "output proj W_O")):
        s = _series(frame, metric)
        ax.plot(s.step, s.value, label=label)
    ax.set(xlabel="step (SGD steps)", ylabel="stable rank ||W||_F^2/||W||_2^2", title="condensation")
    ax.legend()
    ax = axes[1][0]
    for metric, label in (("attn_param_norm", "|W_Q,W_K,W_V|_F"), ("attn_param_rel_change", "rel. change from init"),
                          ("attn_qk_rel_change", "rel. change of W_Q, W_K")):
        s = _series(frame, metric)
        ax.plot(s.step, s.value, label=label)
    ax.set(xlabel="step (SGD steps)", ylabel="norm (weight units) / ratio", title="attention parameters")
    ax.legend()
    ax = axes[1][1]
    s = _series(frame, "loss", "val")
    ax.plot(s.step, s.value, color="C0", label="val loss (nats)")
    ax.set(xlabel="step (SGD steps)", ylabel="loss (nats)", title="loss and attention entropy")
    twin = ax.twinx()
    s = _series(frame, "attn_entropy_bits")
    twin.plot(s.step, s.value, color="C2", label="attention entropy (bits)")
    twin.set_ylabel("attention entropy (bits)")
    ax.legend(loc="upper right")
    twin.legend(loc="center right")
    for a in axes.flat:
        a.grid(alpha=0.3)
    data = run.record.get("dataset", {}).get("source", "?")
    fig.suptitle(f"one-layer transformer, focus-dilution ({data}), lr={run.config.get('lr')}")
    fig.tight_layout()
    return _save(fig, run.paths.report / "markov_focus.png")
