"""The run's metric table: tidy rows (step, split, layer, head, metric, value).

`layer = -1` marks a model-level value, `head = -1` a layer-level one. Loss, learning rate,
tokens/s and every attention metric share this table.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from attnlife.store.part_table import METRICS_SCHEMA, PartWriter, read_table

MODEL_LEVEL = -1


class MetricWriter(PartWriter):
    """Buffered, crash-safe writer of the metric table in `RUN/metrics/`."""

    def __init__(self, run_dir: str | os.PathLike, flush_rows: int = 50_000,
                 flush_seconds: float = 30.0) -> None:
        super().__init__(Path(run_dir) / "metrics", METRICS_SCHEMA, flush_rows, flush_seconds)

    def log(self, step: int, metric: str, value: float, split: str = "train",
            layer: int = MODEL_LEVEL, head: int = MODEL_LEVEL) -> None:
        """Buffer one value: `metric` at `step` for `split`, `layer` and `head` (-1 = aggregate)."""
        self.add(step=int(step), split=split, layer=int(layer), head=int(head), metric=metric,
                 value=float(value))


def read_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """All metric rows of a run, one row per (step, split, layer, head, metric), newest wins."""
    frame = read_table(Path(run_dir) / "metrics", METRICS_SCHEMA)
    return frame.sort_values(["step", "split", "metric", "layer", "head"], kind="stable").reset_index(drop=True)
