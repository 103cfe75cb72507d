"""The dashboard's data: one compact JSON payload built from a `ReportRun` (nothing recomputed).

Numeric arrays travel as base64 of little-endian float32 (uint8 for attention patterns), which
keeps a Pythia-1.4B-sized run (384 heads x 154 checkpoints) to a few MB:
  stats[name]   = {unit, source, steps [S], values: f32 [S * L * H]} (step-major, then layer, head)
  eigen         = {steps [S], k, values: f32 [S * L * H * k]}   (k <= MAX_EIGEN leading lambdas)
  snapshots     = {steps [S], t, values: u8 [S * L * H * t * t]} (probability * 255, rounded;
                   the first `t` <= MAX_PATTERN_TOKENS positions, steps thinned to a byte budget)
Curves, phases, UMAP points, head types, claims and sample metrics are small plain lists.
"""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd

from attnlife.report.data import MissingData, ReportRun

MAX_EIGEN = 16
MAX_PATTERN_TOKENS = 48
PATTERN_BUDGET_BYTES = 4_000_000
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
    return {"step": frame["step"].astype(int).tolist(), "value": np.round(frame["value"].astype(float), 5).tolist()}


def curves(run: ReportRun) -> dict:
    """Train loss, val loss and learning rate (model-level rows), whichever exist."""
    out = {}
    for key, metric, split in (("train_loss", "loss", "train"), ("val_loss", "eval_loss", "val"),
                               ("lr", "lr", "train")):
        s = run.model_series(metric, split)
        if len(s):
            out[key] = _series(s)
    return out


def stats(run: ReportRun, shape: tuple[int, int]) -> dict:
    """Per-head statistics (attention metrics, then W_QK statistics) as step cubes."""
    out = {}
    for metric in run.attention_metrics():
        steps, values = run.head_cube(metric)
        if values.shape[1:] == shape:
            out[metric] = _cube_entry(steps, values, ATTENTION_UNITS.get(metric, "score"), "attention")
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


def snapshots(run: ReportRun, shape: tuple[int, int]) -> dict | None:
    """Attention patterns of every head, first t tokens, uint8; steps thinned to the byte budget."""
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
    t = min(MAX_PATTERN_TOKENS, int(first.shape[-1]))
    per_step = shape[0] * shape[1] * t * t
    keep = max(1, min(len(steps), PATTERN_BUDGET_BYTES // per_step))
    steps = [steps[i] for i in sorted({int(round(x)) for x in np.linspace(0, len(steps) - 1, keep)})]
    frames, shown = [], []
    for step in steps:   # a step with a damaged snapshot file (warned about) is left out
        patterns = [store.read_or_warn(name, step) for name in names]
        if any(p is None for p in patterns):
            continue
        frames.append(np.stack([np.round(np.clip(p.float().numpy()[:, :t, :t], 0, 1) * 255)
                                .astype(np.uint8) for p in patterns]))
        shown.append(int(step))
    if not shown:
        return None
    return {"steps": shown, "t": t, "values": base64.b64encode(np.stack(frames).tobytes()).decode("ascii")}


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    cols = [c for c in columns if c in frame.columns]
    return frame[cols].astype(object).where(frame[cols].notna(), None).to_dict("records")


def analysis_parts(run: ReportRun) -> dict:
    """Phases, UMAP, head types, emergence, induction phase and claims, as stored."""
    a = run.analysis
    out: dict = {}
    if a.get("phases") is not None:
        out["phases"] = _records(a["phases"], ["scope", "layer", "start_step", "end_step", "label"])
    if a.get("embedding") is not None:
        out["umap"] = {"points": _records(a["embedding"], ["layer", "head_index", "x", "y", "cluster"]),
                       "edges": _records(a.get("embedding_edges", pd.DataFrame()), ["src", "dst"])}
    if a.get("head_types") is not None and len(a["head_types"]):
        table = a["head_types"].groupby(["step", "type"]).size().unstack(fill_value=0).sort_index()
        out["types"] = {"steps": table.index.astype(int).tolist(),
                        "counts": {str(t): table[t].astype(int).tolist() for t in table.columns}}
    for name, cols in (("emergence", ["layer", "head_index", "type", "emergence_step"]),
                       ("induction_phase", ["step", "loss_bump"]),
                       ("claims", ["claim_id", "source", "claim", "measured", "verdict", "reason"])):
        if a.get(name) is not None:
            out[name] = _records(a[name], cols)
    return out


def samples(run: ReportRun) -> dict:
    """Generation-quality metrics (split `sample`, model level) over steps, and texts if stored."""
    m = run.metrics
    rows = m[(m.split == "sample") & (m.layer == -1) & (m.head_index == -1)]
    out = {"metrics": {name: _series(g.sort_values("step")) for name, g in rows.groupby("metric")}}
    texts = run.analysis.get("samples")
    if texts is not None and {"step", "text"} <= set(texts.columns):
        out["texts"] = _records(texts, ["step", "text"])
    return out


def build_payload(run: ReportRun) -> dict:
    """Everything the dashboard draws (see module docstring)."""
    shape = head_shape(run)
    payload = {"name": run.name, "dataset": run.dataset, "root": str(run.root), "curves": curves(run),
               "samples": samples(run), **analysis_parts(run)}
    if shape is not None:
        payload.update(n_layer=int(shape[0]), n_head=int(shape[1]), stats=stats(run, tuple(shape)),
                       eigen=eigen(run), snapshots=snapshots(run, tuple(shape)))
    return payload
