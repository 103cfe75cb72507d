"""The grid's results from its cells' done markers: run_{k}.json, overhead.csv, compare.md.

run_{k}.json has the published layout, one entry per dataset:
  {"<dataset>": {"means":  {"final_train_loss_mean", "best_val_loss_mean",
                            "total_train_time_mean", "avg_inference_tokens_per_second_mean"},
                 "stderrs": {"<same keys>_stderr"}, "n_seeds": n,
                 "final_info_dict": {"<key>": [one value per seed], "seed": [...]},
                 "data": {"prefix", "train_tokens", "total_tokens"}, "config": {...}}}
Mean over seeds; standard error = sample standard deviation (ddof 1) / sqrt(n), null for n = 1.
Losses in nats/token, times in seconds, speeds in new tokens per second.

overhead.csv, per dataset and run k in 1-3: mean training time of run k and of run 0 and
overhead_pct = 100 (mean_k / mean_0 - 1); with paired seeds also the per-seed ratios' mean and
standard error (overhead_pct_paired, overhead_pct_paired_stderr).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from attnlife.reproduce.cell import read_done
from attnlife.reproduce.protocol import Cell
from attnlife.store.atomic import atomic_path

KEYS = ("final_train_loss", "best_val_loss", "total_train_time", "avg_inference_tokens_per_second")


def mean_stderr(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample std / sqrt(n)); stderr NaN when n < 2."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else float("nan")


def cell_table(out_dir: str | Path, cells: Iterable[Cell]) -> pd.DataFrame:
    """One row per finished cell: run, dataset, seed, the KEYS, best_val_step, final_val_loss."""
    rows = []
    for cell in cells:
        done = read_done(Path(out_dir) / cell.rel_dir)
        if done is not None:
            rows.append({"run": cell.run, "dataset": cell.dataset, "seed": cell.seed,
                         **done["numbers"]})
    return pd.DataFrame(rows)


def run_results(table: pd.DataFrame, run: int, data_info: dict[str, dict],
                configs: dict[str, dict]) -> dict:
    """The published-layout dict of one run (module docstring)."""
    out = {}
    for dataset, group in table[table.run == run].groupby("dataset", sort=False):
        group = group.sort_values("seed")
        stats = {k: mean_stderr(group[k]) for k in KEYS}
        out[dataset] = {
            "means": {f"{k}_mean": _num(stats[k][0]) for k in KEYS},
            "stderrs": {f"{k}_stderr": _num(stats[k][1]) for k in KEYS},
            "n_seeds": int(len(group)),
            "final_info_dict": {**{k: [float(v) for v in group[k]] for k in KEYS},
                                "best_val_step": [int(v) for v in group["best_val_step"]],
                                "seed": [int(v) for v in group["seed"]]},
            "data": data_info.get(dataset, {}),
            "config": configs.get(dataset, {}),
        }
    return out


def overhead_table(table: pd.DataFrame) -> pd.DataFrame:
    """Runs 1-3 against run 0: training wall time per dataset (module docstring)."""
    rows = []
    for dataset, group in table.groupby("dataset", sort=False):
        base = group[group.run == 0].set_index("seed")["total_train_time"]
        for run in sorted(r for r in group.run.unique() if r != 0):
            times = group[group.run == run].set_index("seed")["total_train_time"]
            paired = (times / base).dropna()
            mean_p, se_p = mean_stderr(100.0 * (paired - 1.0))
            rows.append({"dataset": dataset, "run": int(run), "n_seeds": int(len(times)),
                         "train_time_s_mean": times.mean(), "baseline_time_s_mean": base.mean(),
                         "overhead_pct": 100.0 * (times.mean() / base.mean() - 1.0),
                         "overhead_pct_paired": mean_p, "overhead_pct_paired_stderr": se_p})
    return pd.DataFrame(rows, columns=["dataset", "run", "n_seeds", "train_time_s_mean",
                                       "baseline_time_s_mean", "overhead_pct",
                                       "overhead_pct_paired", "overhead_pct_paired_stderr"])


def write_results(out_dir: str | Path, table: pd.DataFrame, data_info: dict[str, dict],
                  configs: dict[str, dict]) -> list[Path]:
    """Write results/run_{k}.json for every run present and results/overhead.csv."""
    results = Path(out_dir) / "results"
    written = []
    for run in sorted(table.run.unique()):
        path = results / f"run_{int(run)}.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(run_results(table, int(run), data_info, configs), indent=1)
                           + "\n")
        written.append(path)
    if 0 in set(table.run):
        path = results / "overhead.csv"
        with atomic_path(path) as tmp:
            overhead_table(table).to_csv(tmp, index=False, float_format="%.6g")
        written.append(path)
    return written


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)
