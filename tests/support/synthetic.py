"""A synthetic run directory written through the store's writers, for tests and the benchmark.

`write_synthetic_run(path, n_layer, n_head, n_ckpt, ...)` writes run.json, a metric table (loss,
lr, val loss, per-head attention metrics and type scores, cross-layer pairs, sample-quality rows),
a spectra table with arrays (lambda, element histograms) and meetings, attention snapshots and
every analysis table the report draws; with part `health`, light-tier signals and attention-health
alerts (the trainer's `light_*` and `alert_<kind>` rows) and a loss event. Values follow smooth made-up trajectories (entropy falls,
sigma grows, stable rank dips) with seeded noise: shapes are realistic, numbers mean nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

HEAD_STATS = ("entropy_bits", "span_tokens", "sink_mass", "prev_token_score", "induction_score")
BINS = 200


def checkpoint_steps(n_ckpt: int, last: int) -> list[int]:
    """0, 1, 2, 4, ... then evenly spaced to `last`: `n_ckpt` distinct steps."""
    logs = [0] + [2 ** i for i in range(0, 12) if 2 ** i < last // 4]
    rest = np.linspace(logs[-1], last, max(2, n_ckpt - len(logs) + 1))[1:]
    return sorted({int(s) for s in logs + [int(round(x)) for x in rest]})[:n_ckpt]


def tracked_steps(n_tracked: int, last: int, log_tracked: bool) -> list[int]:
    """Steps of the attention rows: the checkpoint series (log-spaced) or `n_tracked` even steps."""
    if log_tracked:
        return checkpoint_steps(n_tracked, last)
    return sorted({int(s) for s in np.linspace(0, last, n_tracked)})


def _metrics(root: Path, n_layer: int, n_head: int, last: int, n_tracked: int, rng: np.random.Generator,
             log_tracked: bool = False, loss_every: int = 0, probe_loss: bool = True) -> None:
    from attnlife.store.metrics_table import MetricRow, MetricWriter

    writer = MetricWriter(root)
    for step in range(0, last, loss_every or max(1, last // 200)):
        writer.log(step, "loss", 4.2 * np.exp(-step / (last / 3)) + 1.5 + 0.05 * rng.standard_normal())
        writer.log(step, "lr", 1e-3 * min(1.0, (step + 1) / 20))
    for step in tracked_steps(n_tracked, last, log_tracked):
        frac = step / last
        writer.log(step, "eval_loss", 4.2 * np.exp(-step / (last / 3)) + 1.6, split="val")
        writer.log(step, "eval_loss", 4.2 * np.exp(-step / (last / 3)) + 1.55, split="train")
        probe = 4.2 * np.exp(-step / (last / 3)) + 1.62
        if probe_loss:
            writer.log(step, "probe_loss_nats", probe, split="probe", stderr=0.02 + 0.01 * (1 - frac))
        rows = []
        for layer in range(n_layer):
            for h in range(n_head):
                base = 4.5 - 2.0 * frac * (1 + 0.2 * h) / (1 + 0.1 * layer)
                vals = {"entropy_bits": base, "span_tokens": 3 + 10 * (1 - frac) + layer,
                        "sink_mass": 0.1 + 0.3 * frac * (h == 0), "prev_token_score": 0.2 + 0.6 * frac * (h == 1),
                        "induction_score": 0.1 + 0.7 * frac * (layer == n_layer - 1) * (h == 2 % n_head)}
                rows += [MetricRow(layer, h, k, float(v + 0.02 * rng.standard_normal()), stderr=0.03 + 0.01 * h)
                         for k, v in vals.items()]
        for a in range(n_layer):
            for b in range(a + 1, n_layer):
                rows.append(MetricRow(a, -1, "xlayer_jsd", 0.05 + 0.1 * frac * (b - a), layer_b=b, stderr=0.004))
                rows.append(MetricRow(a, -1, "xlayer_cos", 0.9 - 0.2 * frac * (b - a), layer_b=b, stderr=0.004))
        writer.log_rows(step, rows, split="probe" if log_tracked else "train")
        writer.log(step, "distinct_2", 0.3 + 0.5 * frac, split="sample")
        writer.log(step, "repetition_4", 0.4 - 0.3 * frac, split="sample")
    writer.close()


def _spectra(root: Path, model: str, steps: list[int], n_layer: int, n_head: int, d_head: int,
             rng: np.random.Generator) -> None:
    import torch
    from safetensors.torch import save_file

    from attnlife.spectra.stats_elements import histogram_edges_sigma
    from attnlife.store.layout import RunPaths
    from attnlife.store.atomic import atomic_path
    from attnlife.store.part_table import SPECTRA_SCHEMA, write_part

    edges = histogram_edges_sigma(BINS)
    centres = ((edges[:-1] + edges[1:]) / 2).numpy()
    last = max(steps)
    for step in steps:
        frac = np.log1p(step) / np.log1p(last)
        lam = np.sort(rng.gamma(2.0, 1.0, (n_layer, n_head, d_head)), axis=-1)[..., ::-1] * 0.01
        lam[..., 0] *= 1 + 300 * frac
        lam = lam.copy()
        p = lam / lam.sum(-1, keepdims=True)
        tail = 1.0 + 2.0 * frac
        density = np.exp(-np.abs(centres) ** (2 / tail))
        hist = rng.poisson(1e4 * density / density.sum(), (n_layer, n_head, BINS + 2)).astype(np.int32)
        stats = {"elem_std": 0.003 * (1 + 5 * frac) * np.ones((n_layer, n_head)) + rng.uniform(0, 1e-3, (n_layer, n_head)),
                 "elem_kl_gauss_nats": 0.2 * frac + rng.uniform(0, 0.02, (n_layer, n_head)),
                 "stable_rank": lam.sum(-1) / lam[..., 0], "spectral_entropy_bits": -(p * np.log2(p)).sum(-1)}
        stats.update({f"lambda_{i + 1}": lam[..., i] for i in range(4)})
        rows = [(model, step, layer, h, "qk", name, float(v[layer, h]))
                for name, v in stats.items() for layer in range(n_layer) for h in range(n_head)]
        write_part(root / "spectra", pd.DataFrame(rows, columns=SPECTRA_SCHEMA.names), SPECTRA_SCHEMA)
        arrays = {"qk.lambda": torch.from_numpy(lam), "qk.elem_hist": torch.from_numpy(hist),
                  "elem_hist_edges_sigma": edges}
        with atomic_path(RunPaths(root).spectra_arrays(model, step)) as tmp:
            save_file(arrays, str(tmp))
    meetings = pd.DataFrame({"model": model, "matrix": "qk", "layer": 0, "head_index": 0, "step": steps[2:4],
                             "rank": [1, 2], "gap_rel": 0.05, "overlap_stay": 0.3, "overlap_swap": 0.6,
                             "label": ["crossing", "repulsion"]})
    with atomic_path(root / "spectra" / "meetings" / f"{model}.parquet") as tmp:
        meetings.to_parquet(tmp, index=False)


def _snapshots(root: Path, n_layer: int, n_head: int, last: int, t: int, rng: np.random.Generator) -> None:
    import torch

    from attnlife.store.snapshots import SnapshotStore

    store = SnapshotStore(root)
    mask = torch.tril(torch.ones(t, t))
    for step in range(0, last + 1, max(1, last // 4)):
        logits = torch.from_numpy(rng.standard_normal((n_layer, n_head, t, t)) * (1 + 3 * step / last))
        probs = torch.softmax(logits.masked_fill(mask == 0, float("-inf")), dim=-1)
        store.write_many(step, {layer: probs[layer] for layer in range(n_layer)})


def _analysis(root: Path, n_layer: int, n_head: int, last: int, rng: np.random.Generator,
              type_steps: list[int] | None = None) -> None:
    from attnlife.store.analysis_tables import write_analysis_table, write_summary

    third = last // 3
    write_analysis_table(root, "phases", pd.DataFrame({
        "scope": "model", "layer": -1, "segment": [0, 1, 2], "start_step": [0, third, 2 * third],
        "end_step": [third, 2 * third, last], "label": ["focusing", "specialisation", "stabilisation"],
        "slopes": "{}", "evidence": "synthetic"}))
    steps = type_steps or list(range(0, last + 1, max(1, last // 10)))
    types = ["sink", "previous_token", "induction"]
    onset = {h: steps[min(len(steps) - 2, (h + 1) * len(steps) // (n_head + 1))] for h in range(n_head)}
    rows = [(s, layer, h, types[h % 3] if layer == 0 and s >= onset[h] else "mixed", 0.5)
            for s in steps for layer in range(n_layer) for h in range(n_head)]
    write_analysis_table(root, "head_types", pd.DataFrame(rows, columns=["step", "layer", "head_index", "type", "score"]))
    write_analysis_table(root, "emergence", pd.DataFrame({
        "layer": 0, "head_index": range(n_head), "type": [types[h % 3] for h in range(n_head)],
        "emergence_step": [onset[h] for h in range(n_head)], "threshold": 0.4,
        "probe_loss_nats": [3.0 - h * 0.2 for h in range(n_head)]}))
    write_analysis_table(root, "induction_phase", pd.DataFrame({
        "step": [last // 2], "step_before": [last // 4], "score_before": [0.1], "score_after": [0.6],
        "loss_before": [2.0],
        "loss_after": [1.9], "loss_bump": [0.02]}))
    n = n_layer * n_head
    write_analysis_table(root, "embedding", pd.DataFrame({
        "layer": np.repeat(range(n_layer), n_head), "head_index": np.tile(range(n_head), n_layer),
        "x": rng.standard_normal(n), "y": rng.standard_normal(n), "cluster": np.arange(n) % 2}))
    write_analysis_table(root, "embedding_edges", pd.DataFrame({"src": range(n - 1), "dst": range(1, n),
                                                                "distance": 1.0}))
    write_analysis_table(root, "claims", pd.DataFrame({
        "claim_id": ["entropy_falls", "span_rises", "layers_4_6"], "source": "lifecycle paper",
        "claim": ["entropy falls from 4.2 to 2.8 bits in 1000 iterations", "span rises from 5 to 25 tokens",
                  "middle layers (4-6) JSD < 0.15"],
        "measured": ["4.5 -> 2.9 bits", "13 -> 3 tokens", "-"],
        "verdict": ["holds", "does not hold", "not applicable"],
        "reason": ["", "span fell", "model has fewer than 6 layers"]}))
    method = "pca (fewer than 64 heads)" if n < 64 else "umap n_neighbors=15"
    write_summary(root, {"run": str(root), "notes": {"attention_split": "probe", "embedding": {
        "method": method, "n_neighbors": max(1, min(15, max(2, n // 3), n - 1)), "n_heads": n, "n_clusters": 2,
        "silhouette": 0.41, "explained": [0.62, 0.21] if n < 64 else []}}})


HEALTH_SIGNALS = ("light_entropy_bits", "light_lse_max_nats", "light_sink_mass")


def health_alert_plan(n_layer: int, n_head: int, last: int) -> list[tuple[int, int, int, str, float]]:
    """(step, layer, head_index, kind, value) of the synthetic alerts: about one head in eight of
    every fourth layer, kinds in turn, at steps spread over the first half; one layer-level alert."""
    kinds = ("entropy_collapse", "logit_growth", "sink_takeover", "dead_head")
    plan = []
    for i, (layer, head) in enumerate((a, b) for a in range(0, n_layer, 4) for b in range(0, n_head, 8)):
        step = int(last * (0.05 + 0.4 * (i % 7) / 7))
        plan.append((step, layer, head, kinds[i % 4], 0.3 + 0.1 * i))
        if i % 3 == 0:  # a head that alerts twice, the second kind later
            plan.append((min(last, step + last // 10), layer, head, kinds[(i + 1) % 4], 40.0 + i))
    plan.append((last // 3, n_layer - 1, -1, "entropy_collapse", 0.5))
    return sorted(plan)


def _health(root: Path, n_layer: int, n_head: int, last: int, n_light: int, rng: np.random.Generator) -> None:
    from attnlife.store.analysis_tables import write_analysis_table
    from attnlife.store.metrics_table import MetricRow, MetricWriter

    writer = MetricWriter(root)
    plan = health_alert_plan(n_layer, n_head, last)
    layers, heads = np.meshgrid(range(n_layer), range(n_head), indexing="ij")
    steps = sorted({int(s) for s in np.linspace(0, last, n_light)} | {p[0] for p in plan})
    for step in steps:
        frac = step / last
        values = {"light_entropy_bits": 5.5 - 3.0 * frac * (1 + 0.1 * heads) / (1 + 0.05 * layers),
                  "light_lse_max_nats": 4.0 + 30.0 * frac * (1 + 0.02 * layers),
                  "light_sink_mass": 0.05 + 0.4 * frac * (heads == 0)}
        rows = [MetricRow(int(layer), int(h), name, float(v[layer, h] + 0.01 * rng.standard_normal()))
                for name, v in values.items() for layer in range(n_layer) for h in range(n_head)]
        rows += [MetricRow(layer, head, f"alert_{kind}", value) for s, layer, head, kind, value in plan if s == step]
        writer.log_rows(step, rows, split="train")
    writer.close()
    write_analysis_table(root, "health_events", pd.DataFrame({"step": [last // 2], "event": ["spike"],
                                                              "loss": [2.5]}))


def write_synthetic_run(path: str | os.PathLike, n_layer: int = 2, n_head: int = 3, n_ckpt: int = 10,
                        last_step: int = 200, d_head: int = 8, pattern_tokens: int = 16, seed: int = 0,
                        n_tracked: int = 11,
                        parts: tuple[str, ...] = ("metrics", "spectra", "snapshots", "analysis"),
                        log_tracked: bool = False, loss_every: int = 0, probe_loss: bool = True,
                        n_light: int = 50) -> Path:
    """Write a synthetic run directory (see module docstring) with the chosen `parts`; returns it.

    `log_tracked`: attention rows at the log-spaced checkpoint steps, in split `probe` with
    standard errors (like `attnlife track`), instead of `n_tracked` even steps in split `train`;
    `loss_every`: the training-loss logging interval (default last_step // 200); `probe_loss=False`:
    no probe pass (no `probe_loss_nats` rows); `n_light`: the steps of light-tier rows (part
    `health`, not written by default).
    """
    from attnlife.store.run_dir import write_run_json

    root = Path(path)
    rng = np.random.default_rng(seed)
    write_run_json(root, {"config": {"data": {"dataset": "synthetic"}, "train": {"seed": seed},
                                     "model": {"n_layer": n_layer, "n_head": n_head, "n_embd": d_head * n_head}}})
    if "metrics" in parts:
        _metrics(root, n_layer, n_head, last_step, n_tracked, rng, log_tracked, loss_every, probe_loss)
    if "spectra" in parts:
        _spectra(root, root.name, checkpoint_steps(n_ckpt, last_step), n_layer, n_head, d_head, rng)
    if "snapshots" in parts:
        _snapshots(root, n_layer, n_head, last_step, pattern_tokens, rng)
    if "analysis" in parts:
        _analysis(root, n_layer, n_head, last_step, rng,
                  tracked_steps(n_tracked, last_step, log_tracked) if log_tracked else None)
    if "health" in parts:
        _health(root, n_layer, n_head, last_step, n_light, rng)
    return root
