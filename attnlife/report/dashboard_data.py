"""The dashboard's data: one compact JSON payload built from a `ReportRun` (nothing recomputed).

Numeric arrays travel as base64 of little-endian float32 (uint8 for attention patterns), which
keeps a Pythia-1.4B-sized run (384 heads x 154 checkpoints) to a few MB:
  stats[name]   = {unit, source, steps [S], values: f32 [S * L * H], stderr: f32 [S * L * H] (when
                   stored)} (step-major, then layer, head)
  eigen         = {steps [S], k, values: f32 [S * L * H * k]}   (k <= MAX_EIGEN leading lambdas)
  snapshots     = {steps [S], t, tokens, pool, packing, values: u8} (probability * 255, rounded):
                   packing "lower" = per step, layer, head the lower triangle row by row (row i:
                   keys 0..i; causal patterns hold nothing above the diagonal), [S * L * H *
                   t(t+1)/2]; "full" = [S * L * H * t * t]; every query and key position; a context longer than
                   MAX_PATTERN_TOKENS is mean-pooled in pool x pool blocks (t = ceil(tokens / pool)),
                   never cropped; steps (first and last kept) thinned to PATTERN_BUDGET_BYTES;
                   heads [{layer, head, note}] + rule: the heads the section opens on
                   (`snapshot_choice`: the heads that emerged, as the snapshot figure)
Curves (train loss raw and trailing-smoothed, val loss, probe loss with stderr, lr), phases, the
embedding and how it was made, head-type lanes (the figure's rule), claims and the generation
metrics are small plain lists.
"""
from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd

from attnlife.report.data import MissingData, ReportRun, cube

MAX_EIGEN = 16
MAX_PATTERN_TOKENS = 128
PATTERN_BUDGET_BYTES = 3_000_000
GENERATION_METRICS = re.compile(r"(distinct|repetition)_\d+|mean_logprob_nats")  # track/generation.py names
WEIGHT_STATS = {
    "elem_std": "sigma of W_QK elements (weight units)",
    "elem_kl_gauss_nats": "KL of W_QK elements to a Gaussian (nats)",
    "elem_excess_kurtosis": "excess kurtosis of W_QK elements",
    "stable_rank": "stable rank of W_QK",
    "spectral_entropy_bits": "spectral entropy of W_QK (bits)",
    "lambda_1": "lambda_1 of W_QK (weight units^2)",
    "participation_ratio": "participation ratio of W_QK",
    "qk_null_ks": "KS distance of the W_QK spectrum to its random-matrix null",
    "qk_alignment_index": "Q-K alignment index of W_QK (1 = random)",
    "lambda1_over_null_edge": "lambda_1 of W_QK over the null's finite-size edge",
}
ATTENTION_UNITS = {"entropy_bits": "bits", "entropy_norm": "fraction of log2(i+1)", "span_tokens": "tokens",
                   "mean_distance_tokens": "tokens", "sink_mass": "probability"}


def b64_f32(values: np.ndarray) -> str:
    """base64 of the little-endian float32 bytes of `values` (flattened, C order)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def _cube_entry(steps: np.ndarray, values: np.ndarray, unit: str, source: str) -> dict:
    return {"unit": unit, "source": source, "steps": [int(s) for s in steps], "values": b64_f32(values)}


def _series(frame: pd.DataFrame) -> dict:
    out = {"step": frame["step"].astype(int).tolist(), "value": np.round(frame["value"].astype(float), 5).tolist()}
    if "stderr" in frame and np.isfinite(frame["stderr"].to_numpy(float)).any():
        out["stderr"] = np.round(frame["stderr"].astype(float), 6).tolist()
    return out


def curves(run: ReportRun) -> dict:
    """Train loss (raw and trailing-smoothed as in the figures), val loss, probe loss (+ stderr) and
    learning rate (model-level rows), whichever exist."""
    from attnlife.report.figures_training import trailing_mean

    out = {}
    for key, metric, split in (("train_loss", "loss", "train"), ("val_loss", "eval_loss", "val"),
                               ("probe_loss", "probe_loss_nats", "probe"), ("lr", "lr", "train")):
        s = run.model_series(metric, split)
        if len(s):
            out[key] = _series(s)
    if "train_loss" in out:
        loss = run.model_series("loss", "train")
        out["train_loss_smooth"] = {"step": out["train_loss"]["step"], "value": np.round(
            trailing_mean(loss.step.to_numpy(), loss.value.to_numpy()), 5).tolist()}
    return out


LIGHT_PREFIX = "light_"


def stats(run: ReportRun, shape: tuple[int, int]) -> dict:
    """Per-head statistics (attention metrics with their standard errors, then W_QK statistics) as
    step cubes. The light tier's `light_*` rows (logged at every training step: 143,000 steps x 384
    heads would be 220 MB per metric) are left out: the health sections draw them, thinned
    (dashboard_health.py)."""
    out = {}
    for metric in (m for m in run.attention_metrics() if not m.startswith(LIGHT_PREFIX)):
        rows = run.head_rows(metric)
        steps, values = cube(rows)
        if values.shape[1:] == shape:
            out[metric] = _cube_entry(steps, values, ATTENTION_UNITS.get(metric, "score"), "attention")
            _, se = cube(rows, "stderr")
            if np.isfinite(se).any():
                out[metric]["stderr"] = b64_f32(se)
    present = set(run.weight_stats())
    for stat, unit in WEIGHT_STATS.items():
        if stat in present:
            steps, values = run.weight_cube(stat)
            if values.shape[1:] == shape:
                out[stat] = _cube_entry(steps, values, unit, "weights")
    return out


def head_shape(run: ReportRun) -> tuple[int, int] | None:
    """(n_layer, n_head) from the spectra table, else the attention rows, else run.json."""
    for getter in (lambda: run.weight_cube("stable_rank")[1], lambda: run.head_cube("entropy_bits")[1]):
        try:
            return getter().shape[1:]
        except MissingData:
            continue
    model = run.run.config.get("model", {})
    return (int(model["n_layer"]), int(model["n_head"])) if "n_layer" in model else None


def eigen(run: ReportRun) -> dict | None:
    try:
        steps, lam = run.array_series("qk.lambda")  # [S, L, H, K]
    except MissingData:
        return None
    k = min(MAX_EIGEN, lam.shape[-1])
    return {"steps": [int(s) for s in steps], "k": k, "values": b64_f32(lam[..., :k])}


def pattern_pool(tokens: int, most: int | None = None) -> int:
    """The block size that mean-pools a tokens x tokens pattern to at most `most` x `most`
    (default MAX_PATTERN_TOKENS; 1 = full size)."""
    return max(1, -(-tokens // (most or MAX_PATTERN_TOKENS)))


def pooled(pattern: np.ndarray, pool: int) -> np.ndarray:
    """Mean over pool x pool blocks of [..., T, T], float32 (the last partial block zero-padded, averaged over
    the whole block so every block's mean is comparable)."""
    if pool == 1:
        return pattern
    t = pattern.shape[-1]
    n = -(-t // pool)
    padded = np.zeros(pattern.shape[:-2] + (n * pool, n * pool), dtype=np.float32)
    padded[..., :t, :t] = pattern
    return padded.reshape(pattern.shape[:-2] + (n, pool, n, pool)).mean(axis=(-3, -1))


def snapshots(run: ReportRun, shape: tuple[int, int]) -> dict | None:
    """Attention patterns of every head at every position (pooled beyond MAX_PATTERN_TOKENS), uint8;
    steps thinned to the byte budget, first and last always kept."""
    try:
        store = run.snapshot_store()
    except MissingData:
        return None
    names = [f"layer{layer}" for layer in range(shape[0])]
    if not all(n in store.names() for n in names):
        return None
    steps = store.steps(names[0])
    first = next((p for p in (store.read_or_warn(names[0], s) for s in steps) if p is not None), None)
    if first is None:
        return None
    tokens = int(first.shape[-1])
    pool = pattern_pool(tokens)
    t = -(-tokens // pool)
    per_step = shape[0] * shape[1] * t * (t + 1) // 2  # causal: the lower triangle travels
    keep = max(2, min(len(steps), PATTERN_BUDGET_BYTES // per_step))
    steps = [steps[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(steps) - 1, min(keep, len(steps)))})]
    frames, shown = [], []
    for step in steps:   # a step with a damaged snapshot file (warned about) is left out
        patterns = [store.read_or_warn(name, step) for name in names]
        if any(p is None for p in patterns):
            continue
        frames.append(np.stack([np.round(np.clip(pooled(p.float().numpy(), pool), 0, 1) * 255)
                                .astype(np.uint8) for p in patterns]))
        shown.append(int(step))
    if not shown:
        return None
    stacked = np.stack(frames)
    rows, cols = np.tril_indices(t)
    causal = not stacked[..., cols, rows][..., rows != cols].any()  # nothing above the diagonal
    packed = stacked[..., rows, cols] if causal else stacked         # row i: its first i + 1 keys
    return {"steps": shown, "t": t, "tokens": tokens, "pool": pool,
            "packing": "lower" if causal else "full", "values": base64.b64encode(packed.tobytes()).decode("ascii"),
            **snapshot_choice(run, shape)}


def snapshot_choice(run: ReportRun, shape: tuple[int, int]) -> dict:
    """The heads the snapshot section opens on, by the snapshot figure's rule
    (`figures_analysis.snapshot_heads`: `--heads`, else the heads that emerged as a type, the
    earliest of each type first, else head 0 of layers spread over the depth), and that rule in
    words: {heads: [{layer, head, note}], rule}."""
    from attnlife.report.figures_analysis import emerged_heads, snapshot_heads

    heads = snapshot_heads(run, shape[0], shape[1], most=8)
    types: dict[tuple[int, int], list[str]] = {}   # a head that took several types names them all
    for layer, head, kind, step in emerged_heads(run):
        types.setdefault((layer, head), []).append(f"{kind} from step {step:,}")
    if not run.heads:
        heads = [(a, b, ", ".join(types.get((a, b), [note]))) for a, b, note in heads]
    rule = ("heads chosen with --heads" if run.heads else
            "heads spread over the depth (head 0 of each layer shown; no head type emerged in analysis/emergence)"
            if heads[0][2] == "no head type emerged" else
            "heads that emerged as a type (analysis/emergence), the earliest of each type first, "
            "as in the attention_snapshots figure")
    return {"heads": [{"layer": int(a), "head": int(b), "note": note} for a, b, note in heads], "rule": rule}


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    cols = [c for c in columns if c in frame.columns]
    return frame[cols].astype(object).where(frame[cols].notna(), None).to_dict("records")


def type_lanes(run: ReportRun) -> dict | None:
    """The emergence figure's lanes (`figures_analysis.lanes_shown`): per lane the type at each
    step (index into `kinds`), the emergence ticks and how many heads were left out."""
    from attnlife.report.figures_analysis import emerged_heads, lanes_shown

    table = run.analysis.get("head_types")
    if table is None or table.empty:
        return None
    lanes, left_out = lanes_shown(run, table)
    steps = np.sort(table.step.unique())
    kinds = sorted(set(table.type), key=lambda t: (t == "mixed", t))
    code = {k: i for i, k in enumerate(kinds)}
    label = {(int(r.layer), int(r.head_index), int(r.step)): code[str(r.type)] for r in table.itertuples()}
    mixed = code.get("mixed", -1)
    codes = [[label.get((a, b, int(s)), mixed) for s in steps] for a, b in lanes]
    ticks = [{"lane": lanes.index((a, b)), "step": step, "type": kind}
             for a, b, kind, step in emerged_heads(run) if (a, b) in lanes]
    return {"steps": steps.astype(int).tolist(), "lanes": [f"L{a}H{b}" for a, b in lanes], "kinds": kinds,
            "codes": codes, "emergence": ticks, "left_out": int(left_out)}


def analysis_parts(run: ReportRun) -> dict:
    """Phases, embedding (+ how it was made), head-type lanes, emergence, induction phase and claims, as stored."""
    a = run.analysis
    out: dict = {}
    if a.get("phases") is not None:
        out["phases"] = _records(a["phases"], ["scope", "layer", "start_step", "end_step", "label"])
    if a.get("embedding") is not None:
        info = run.summary.get("notes", {}).get("embedding", {}) if isinstance(run.summary, dict) else {}
        out["umap"] = {"points": _records(a["embedding"], ["layer", "head_index", "x", "y", "cluster"]),
                       "edges": _records(a.get("embedding_edges", pd.DataFrame()), ["src", "dst"]),
                       "info": {k: info[k] for k in ("method", "n_neighbors", "explained", "silhouette")
                                if k in info}}
    lanes = type_lanes(run)
    if lanes is not None:
        out["types"] = lanes
    for name, cols in (("emergence", ["layer", "head_index", "type", "emergence_step"]),
                       ("induction_phase", ["step", "loss_bump"]),
                       ("claims", ["claim_id", "source", "claim", "measured", "verdict", "reason"])):
        if a.get(name) is not None:
            out[name] = _records(a[name], cols)
    return out


def samples(run: ReportRun) -> dict:
    """Generation-quality metrics (split `sample`, model level, GENERATION_METRICS only: the
    attention rows measured on the samples are not generation quality) and texts if stored."""
    m = run.metrics
    rows = m[(m.split == "sample") & (m.layer == -1) & (m.head_index == -1) & (m.layer_b == -1)
             & m.metric.map(lambda name: bool(GENERATION_METRICS.fullmatch(str(name))))]
    out = {"metrics": {name: _series(g.sort_values("step")) for name, g in rows.groupby("metric")}}
    texts = run.analysis.get("samples")
    if texts is not None and {"step", "text"} <= set(texts.columns):
        out["texts"] = _records(texts, ["step", "text"])
    return out


def build_payload(run: ReportRun) -> dict:
    """Everything the dashboard draws (see module docstring)."""
    shape = head_shape(run)
    payload = {"name": run.name, "dataset": run.dataset, "curves": curves(run),
               "samples": samples(run), **analysis_parts(run)}
    if shape is not None:
        payload.update(n_layer=int(shape[0]), n_head=int(shape[1]), stats=stats(run, tuple(shape)),
                       eigen=eigen(run), snapshots=snapshots(run, tuple(shape)))
    return payload
