"""Correlations across runs (kind `runs`): one final value per run (pure).

x: each model-level attention series' value at the run's last analysed step; y: the run's best
val loss and its final-checkpoint sample metrics. Spearman over the runs (n = runs that have both;
needs >= 4, see correlations.MIN_N). The rows are added to every run's correlations table and the
BH adjustment of kind `runs` is recomputed there (`attnlife.explain.add_across_runs` does the I/O).
"""
from __future__ import annotations

import pandas as pd

from attnlife.analysis import correlations
from attnlife.analysis.builders import SAMPLE_METRICS
from attnlife.analysis.series import attention_split, model_series, val_loss


def run_finals(frame: pd.DataFrame) -> dict[str, float]:
    """Final model-level attention values (`x:<metric>`), best val loss and final sample metrics
    (`y:<metric>`) of one run's metric table."""
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


def finals_correlation_rows(finals: list[dict[str, float]]) -> list[dict]:
    """Spearman rows (kind `runs`) between every x and y of the runs' `run_finals`."""
    table = pd.DataFrame(finals)
    rows = []
    for x in [c for c in table.columns if c.startswith("x:")]:
        for y in [c for c in table.columns if c.startswith("y:")]:
            test = correlations.rank_test(table[x].to_numpy(), table[y].to_numpy())
            if test.rho == test.rho:
                rows.append(correlations.row((x[2:], -1, -1, y[2:]), "runs", test))
    return rows


def merge_runs_rows(table: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    """A correlations table with its `runs` rows replaced by `rows` (BH adjustment recomputed)."""
    kept = table[table.kind != "runs"].drop(columns=["p_bh"]).to_dict("records")
    return correlations.finish(kept + rows)
