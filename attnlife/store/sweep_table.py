"""The scan-and-snap sweep table: its grid parameters as columns, `RUN/sweep/part-*.parquet`.

Columns: step, name (entropy_distinct_bits | attn_common | loss), m, k (M last tokens, K classes),
eta_z, eta_y, ratio (= eta_y / eta_z), seed, value. One row per seed; means and standard errors
over seeds are computed by the analysis (attnlife.analysis.theory_trends.sweep_final_table).
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from attnlife.store.part_table import PartWriter, TableSchema, read_table

SWEEP_DIR = "sweep"
SWEEP_SCHEMA = TableSchema(
    fields=(("step", pa.int64()), ("name", pa.string()), ("m", pa.int64()), ("k", pa.int64()),
            ("eta_z", pa.float64()), ("eta_y", pa.float64()), ("ratio", pa.float64()),
            ("seed", pa.int64()), ("value", pa.float64())),
    key=("step", "name", "m", "k", "eta_z", "ratio", "seed"),
)


class SweepWriter(PartWriter):
    """Buffered, crash-safe writer of RUN/sweep/."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        super().__init__(Path(run_dir) / SWEEP_DIR, SWEEP_SCHEMA)

    def log(self, step: int, name: str, m: int, k: int, eta_z: float, ratio: float, seed: int,
            value: float) -> None:
        """One seed's value of `name` at grid point (M=m, K=k, eta_z, eta_y/eta_z=ratio)."""
        self.add(step=int(step), name=name, m=int(m), k=int(k), eta_z=float(eta_z),
                 eta_y=float(eta_z * ratio), ratio=float(ratio), seed=int(seed), value=float(value))


def read_sweep(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The sweep table of a run (empty with the schema's columns if the run wrote none)."""
    return read_table(Path(run_dir) / SWEEP_DIR, SWEEP_SCHEMA)
