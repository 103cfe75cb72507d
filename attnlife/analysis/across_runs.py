"""Correlations across run directories (kind `runs`): one final value per run.

x: each model-level attention series' value at the run's last analysed step; y: the run's best
val loss and its final-checkpoint sample metrics. Spearman over the runs (n = runs that have both;
needs >= 4, see correlations.MIN_N). The rows are added to every run's correlations table and the
BH adjustment of kind `runs` is recomputed there.
"""
from __future__ import annotations

import os

import pandas as pd

from attnlife.analysis import correlations
from attnlife.analysis.builders import SAMPLE_METRICS
from attnlife.analysis.series import attention_split, model_series, val_loss
from attnlife.errors import RunDirError
from attnlife.store import analysis_tables as store
from attnlife.store.run_dir import load_run


def run_finals(run_dir: str | os.PathLike) -> dict[str, float]:
    """Final model-level attention values, best val loss and final sample metrics of one run."""
    frame = load_run(run_dir).metrics()
    out: dict[str, float] = {}
    split = attention_split(frame)
    if split is not None:
        model = model_series(frame, split)
        out.update({f"x:{c}": float(model[c].dropna().iloc[-1]) for c in model.columns if model[c].notna().any()})
    loss = val_loss(frame)
    if len(loss):
        out["y:best_val_loss"] = float(loss.min())
    sample = frame[(frame.split == "sample") & (frame.layer < 0)]
    for m in SAMPLE_METRICS:
        s = sample[sample.metric == m].sort_values("step")
        if len(s):
            out[f"y:{m}"] = float(s.value.iloc[-1])
    return out


def across_run_rows(run_dirs: list[str | os.PathLike]) -> list[dict]:
    """Spearman rows (kind `runs`) between final attention values and outcomes across runs."""
    finals = pd.DataFrame([run_finals(d) for d in run_dirs])
    rows = []
    for x in [c for c in finals.columns if c.startswith("x:")]:
        for y in [c for c in finals.columns if c.startswith("y:")]:
            rho, p, n = correlations.spearman(finals[x].to_numpy(), finals[y].to_numpy())
            if rho == rho:
                rows.append({"x": x[2:], "x_layer": -1, "x_head": -1, "y": y[2:], "kind": "runs",
                             "rho": rho, "p": p, "n": n})
    return rows


def add_across_runs(run_dirs: list[str | os.PathLike]) -> int:
    """Compute the `runs` rows and merge them into each run's correlations table; returns the row count."""
    rows = across_run_rows(run_dirs)
    for d in run_dirs:
        try:
            table = store.read_analysis_table(d, "correlations")
        except RunDirError:  # a run that was not analysed gets none
            continue
        kept = table[table.kind != "runs"].drop(columns=["p_bh"]).to_dict("records")
        store.write_analysis_table(d, "correlations", correlations.finish(kept + rows))
    return len(rows)
