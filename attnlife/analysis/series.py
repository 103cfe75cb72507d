"""Step-indexed series out of a run's tidy metric and spectra tables (pure pandas).

Aggregation rules: a layer's value of a per-head metric is the mean over its heads; the model's
value is the mean over layers of the layer values; a layer's cross-layer JSD is the mean of the
`xlayer_jsd` pairs it belongs to. Theory runs name their entropy differently; `ENTROPY_ALIASES`
maps those names onto `entropy_bits` so the same detectors run on them.
"""
from __future__ import annotations

import pandas as pd

ATTENTION_SPLITS = ("probe", "train", "sample")
HEAD_METRICS = ("entropy_bits", "span_tokens", "mean_distance_tokens", "sink_mass", "entropy_norm")
LAYER_METRICS = ("head_jsd_mean", "head_entropy_var")
ENTROPY_ALIASES = {"entropy_distinct_bits": "entropy_bits", "attn_entropy_bits": "entropy_bits"}
PHASE_SERIES = ("entropy_bits", "span_tokens", "head_jsd_mean", "head_entropy_var", "xlayer_jsd")


def _head_rows(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    rows = frame[(frame.split == split) & (frame.layer >= 0) & (frame.head_index >= 0) & (frame.layer_b < 0)]
    return rows.assign(metric=rows.metric.replace(ENTROPY_ALIASES))


def attention_split(frame: pd.DataFrame, min_steps: int = 6) -> str | None:
    """The split whose per-head entropy is sampled most usefully: the first of probe, train, sample
    with >= `min_steps` steps, else the one with the most steps; None if no split has any."""
    counts = {}
    for split in ATTENTION_SPLITS:
        rows = _head_rows(frame, split)
        counts[split] = rows[rows.metric == "entropy_bits"].step.nunique()
    for split in ATTENTION_SPLITS:
        if counts[split] >= min_steps:
            return split
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else None


def head_table(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """Per-head rows of `split` (aliases applied): step, layer, head_index, metric, value."""
    return _head_rows(frame, split)[["step", "layer", "head_index", "metric", "value"]]


def layer_series(frame: pd.DataFrame, split: str, layer: int) -> pd.DataFrame:
    """Step-indexed columns for one layer: head means of HEAD_METRICS, LAYER_METRICS, xlayer_jsd."""
    heads = _head_rows(frame, split)
    heads = heads[heads.layer == layer]
    cols = [heads.groupby(["step", "metric"]).value.mean().unstack("metric")]
    lay = frame[(frame.split == split) & (frame.layer == layer) & (frame.head_index < 0) & (frame.layer_b < 0)
                & frame.metric.isin(LAYER_METRICS)]
    cols.append(lay.pivot_table(index="step", columns="metric", values="value"))
    pairs = frame[(frame.split == split) & (frame.metric == "xlayer_jsd") & (frame.layer_b >= 0)
                  & ((frame.layer == layer) | (frame.layer_b == layer))]
    if len(pairs):
        cols.append(pairs.groupby("step").value.mean().rename("xlayer_jsd").to_frame())
    return pd.concat(cols, axis=1).sort_index()


def model_series(frame: pd.DataFrame, split: str) -> pd.DataFrame:
    """Step-indexed model columns: layer means of every `layer_series` column (+ model-level aliases)."""
    layers = sorted(_head_rows(frame, split).layer.unique())
    parts = [layer_series(frame, split, int(layer)) for layer in layers]
    if parts:
        out = pd.concat(parts, keys=range(len(parts)), names=["_layer", "step"]).groupby("step").mean()
    else:
        out = pd.DataFrame()
    model = frame[(frame.split == split) & (frame.layer < 0) & (frame.layer_b < 0)]
    model = model.assign(metric=model.metric.replace(ENTROPY_ALIASES))
    for name in set(model.metric) & {"entropy_bits"} - set(out.columns):
        out = out.join(model[model.metric == name].set_index("step").value.rename(name), how="outer")
    return out.sort_index()


def val_loss(frame: pd.DataFrame) -> pd.Series:
    """Validation loss by step (nats): `eval_loss` on split val, else `loss` on split val."""
    for metric in ("eval_loss", "loss"):
        rows = frame[(frame.split == "val") & (frame.metric == metric) & (frame.layer < 0)]
        if len(rows):
            return rows.groupby("step").value.mean().sort_index()
    return pd.Series(dtype=float)


def probe_loss(frame: pd.DataFrame) -> pd.Series:
    """Mean next-token loss on the probe windows by step (nats): `probe_loss_nats`, split probe,
    model level, one value per checkpoint the probe pass measured."""
    rows = frame[(frame.split == "probe") & (frame.metric == "probe_loss_nats") & (frame.layer < 0)]
    return rows.groupby("step").value.mean().sort_index()


def checkpoint_loss(frame: pd.DataFrame) -> tuple[str, pd.Series]:
    """(name, loss by step) the analysis pairs with attention: `probe_loss_nats` when the probe pass
    ran (a value at every checkpoint), else `val_loss` at its eval steps. Never interpolated."""
    loss = probe_loss(frame)
    return ("probe_loss_nats", loss) if len(loss) else ("val_loss", val_loss(frame))


def train_loss(frame: pd.DataFrame) -> pd.Series:
    """Training loss by step (nats), split train, model level."""
    rows = frame[(frame.split == "train") & (frame.metric == "loss") & (frame.layer < 0)]
    return rows.groupby("step").value.mean().sort_index()


def spectra_head_series(spectra: pd.DataFrame, stat: str, matrix: str = "qk") -> pd.DataFrame:
    """Per-head W stat: rows step, columns (layer, head_index) (heads only, the first model)."""
    rows = spectra[(spectra.stat == stat) & (spectra.matrix == matrix) & (spectra.head_index >= 0)]
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows.model == rows.model.iloc[0]]
    return rows.pivot_table(index="step", columns=["layer", "head_index"], values="value").sort_index()
