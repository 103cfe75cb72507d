"""The run's metric table: one tidy long table of every measured value.

Columns: `step` (weights after `step` optimizer updates), `split` (train / val / probe / sample /
...), `layer`, `head_index`, `layer_b`, `metric`, `value`, `stderr`.

- `layer = -1` marks a model-level value (loss, lr, a cross-model mean), `head_index = -1` a
  layer-level one (head diversity); `layer_b >= 0` marks a cross-layer pair (layer, layer_b) with
  layer < layer_b (metrics `xlayer_jsd`, `xlayer_cos`); otherwise `layer_b = -1`.
- `stderr` is the standard error of `value` across the probe's sequences where one is measured,
  NaN otherwise.

The column is `head_index`, not `head`, so it never shadows `DataFrame.head`. Use the views `per_head`, `per_layer`, `cross_layer` and `model_level` rather than filtering on
the -1 markers by hand.

Splits: a `split` says which data a value was measured on: `train` (the training batches: loss,
lr, the tracker and the light tier), `val` / `train` for `eval_loss` (held-out / training batches
at eval steps), `probe` (`attnlife track`: a fixed held-out probe set, every checkpoint, with
standard errors), `sample` (generation quality of sampled text). The views never mix splits
silently: with `split=None` they return the one split that holds the selected rows; where several
do, the attention views (`per_head`, `per_layer`, `cross_layer`) take the run's primary attention
split (`probe` when present, else `train`: `PRIMARY_ATTENTION_SPLITS`) and `model_level` raises
`SplitError` naming the splits. `split="all"` returns every split (keep the `split` column in
your groupby/pivot). The split used is in `result.attrs["split"]`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, NamedTuple, Optional, Sequence

import pandas as pd

from attnlife.errors import AttnlifeError
from attnlife.store.part_table import METRICS_SCHEMA, PartWriter, read_table

MODEL_LEVEL = -1
LAYER_LEVEL = -1
NO_PAIR = -1
SORT_ORDER = ["step", "split", "metric", "layer", "layer_b", "head_index"]
PRIMARY_ATTENTION_SPLITS = ("probe", "train")  # post-hoc probe pass first, then the tracker
ALL_SPLITS = "all"


class SplitError(AttnlifeError):
    """Rows of several splits were selected without saying which one is meant."""


class MetricRow(NamedTuple):
    """One measured value at a step (the step and split are given when it is logged)."""

    layer: int
    head_index: int
    metric: str
    value: float
    layer_b: int = NO_PAIR
    stderr: float = math.nan


class MetricWriter(PartWriter):
    """Buffered, crash-safe writer of the metric table in `RUN/metrics/`."""

    def __init__(self, run_dir: str | os.PathLike, flush_rows: int = 50_000,
                 flush_seconds: float = 30.0) -> None:
        super().__init__(Path(run_dir) / "metrics", METRICS_SCHEMA, flush_rows, flush_seconds)

    def log(self, step: int, metric: str, value: float, split: str = "train",
            layer: int = MODEL_LEVEL, head_index: int = LAYER_LEVEL, layer_b: int = NO_PAIR,
            stderr: float = math.nan) -> None:
        """Buffer one value: `metric` at `step` for `split`, `layer`, `head_index` (-1 = aggregate),
        `layer_b` (the second layer of a cross-layer pair, else -1) with its standard error."""
        self.add(step=int(step), split=split, layer=int(layer), head_index=int(head_index),
                 layer_b=int(layer_b), metric=metric, value=float(value), stderr=float(stderr))

    def log_rows(self, step: int, rows: Iterable[MetricRow], split: str = "train") -> None:
        """Buffer many `MetricRow`s measured at `step` on `split`."""
        for r in rows:
            self.log(step, r.metric, r.value, split=split, layer=r.layer, head_index=r.head_index,
                     layer_b=r.layer_b, stderr=r.stderr)


def read_metrics(run_dir: str | os.PathLike, strict: bool = False) -> pd.DataFrame:
    """All metric rows of a run, one per (step, split, layer, head_index, layer_b, metric);
    a row re-logged later (a resumed run) replaces the earlier one. Damaged parts are skipped
    with a warning (`strict`: RunDirError)."""
    frame = read_table(Path(run_dir) / "metrics", METRICS_SCHEMA, strict=strict)
    return frame.sort_values(SORT_ORDER, kind="stable").reset_index(drop=True)


def _select(frame: pd.DataFrame, mask: pd.Series, metric: Optional[str | Sequence[str]],
            split: Optional[str], drop: Sequence[str], prefer: Sequence[str], view: str) -> pd.DataFrame:
    if metric is not None:
        mask &= frame["metric"].isin([metric] if isinstance(metric, str) else list(metric))
    chosen = split
    if split is None:
        present = sorted(frame.loc[mask, "split"].unique())
        chosen = present[0] if len(present) == 1 else next((p for p in prefer if p in present), None)
        if len(present) > 1 and chosen is None:
            what = f"{metric!r}" if isinstance(metric, str) else f"the {view} rows"
            raise SplitError(f"{what} span splits {', '.join(present)}; pass split= one of them "
                             f"(or split='all' and keep the split column)")
        if chosen is not None:
            if metric is not None and not isinstance(metric, str) and len(present) > 1:
                named = set(frame.loc[mask, "metric"].unique())
                lost = sorted(named - set(frame.loc[mask & (frame["split"] == chosen), "metric"].unique()))
                if lost:  # a named metric the chosen split lacks is never dropped silently
                    raise SplitError(f"{', '.join(lost)} not on split {chosen} (the default for the "
                                     f"{view} view); ask for it alone, or pass split= or split='all'")
            mask &= frame["split"] == chosen
    elif split != ALL_SPLITS:
        mask &= frame["split"] == split
    out = frame.loc[mask].drop(columns=list(drop)).reset_index(drop=True)
    out.attrs["split"] = chosen
    return out


def per_head(frame: pd.DataFrame, metric: Optional[str | Sequence[str]] = None,
             split: Optional[str] = None) -> pd.DataFrame:
    """Per-head rows: step, split, layer, head_index, metric, value, stderr.

    `split=None`: the primary attention split among those holding the selected rows (`probe`,
    else `train`); `split="all"`: every split (see the module docstring).
    """
    mask = (frame["layer"] >= 0) & (frame["head_index"] >= 0) & (frame["layer_b"] < 0)
    return _select(frame, mask, metric, split, ["layer_b"], PRIMARY_ATTENTION_SPLITS, "per-head")


def per_layer(frame: pd.DataFrame, metric: Optional[str | Sequence[str]] = None,
              split: Optional[str] = None) -> pd.DataFrame:
    """Layer-level rows (head diversity and the like): step, split, layer, metric, value, stderr.

    `split=None`: the primary attention split (`probe`, else `train`); `split="all"`: every split.
    """
    mask = (frame["layer"] >= 0) & (frame["head_index"] < 0) & (frame["layer_b"] < 0)
    return _select(frame, mask, metric, split, ["head_index", "layer_b"], PRIMARY_ATTENTION_SPLITS, "per-layer")


def cross_layer(frame: pd.DataFrame, metric: Optional[str | Sequence[str]] = None,
                split: Optional[str] = None) -> pd.DataFrame:
    """Cross-layer pair rows: step, split, layer, layer_b, metric, value, stderr (layer < layer_b).

    `split=None`: the primary attention split (`probe`, else `train`); `split="all"`: every split.
    """
    mask = frame["layer_b"] >= 0
    return _select(frame, mask, metric, split, ["head_index"], PRIMARY_ATTENTION_SPLITS, "cross-layer")


def model_level(frame: pd.DataFrame, metric: Optional[str | Sequence[str]] = None,
                split: Optional[str] = None) -> pd.DataFrame:
    """Model-level rows (loss, lr, tokens/s, means over the model): step, split, metric, value, stderr.

    `split=None` works when the selected rows come from one split (`loss`, `lr`: train;
    `probe_loss_nats`: probe); otherwise (`eval_loss` has train and val) it raises `SplitError`:
    pass `split="val"`, or `split="all"` for every split.
    """
    mask = (frame["layer"] < 0) & (frame["layer_b"] < 0)
    return _select(frame, mask, metric, split, ["layer", "head_index", "layer_b"], (), "model-level")
