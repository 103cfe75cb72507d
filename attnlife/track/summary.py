"""The end-of-run attention summary: per layer, entropy and span at the first and last tracked step.

`attention_summary(metrics)` takes the tidy metric table (`load_run(p).metrics()`) and returns one
row per layer with the head-mean `entropy_bits` (bits) and `span_tokens` (tokens) at the first
and last step that has attention rows; `summary_table` renders it as a rich Table.
"""
from __future__ import annotations

import pandas as pd

from attnlife.store.metrics_table import per_head

SUMMARY_METRICS = ("entropy_bits", "span_tokens")


def attention_summary(metrics: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """Columns: layer, first_step, last_step, then <metric>_first / <metric>_last per summary metric.

    Values are means over the heads of the layer (per-head rows). Empty frame if nothing tracked.
    """
    cols = ["layer", "first_step", "last_step"] + [f"{m}_{w}" for m in SUMMARY_METRICS
                                                    for w in ("first", "last")]
    rows = per_head(metrics, SUMMARY_METRICS, split)
    if rows.empty:
        return pd.DataFrame(columns=cols)
    first, last = int(rows["step"].min()), int(rows["step"].max())
    means = rows[rows["step"].isin([first, last])].groupby(["layer", "step", "metric"])["value"].mean()
    out = []
    for layer in sorted(rows["layer"].unique()):
        rec = {"layer": int(layer), "first_step": first, "last_step": last}
        for m in SUMMARY_METRICS:
            rec[f"{m}_first"] = float(means.get((layer, first, m), float("nan")))
            rec[f"{m}_last"] = float(means.get((layer, last, m), float("nan")))
        out.append(rec)
    return pd.DataFrame(out, columns=cols)


def summary_table(summary: pd.DataFrame):  # noqa: ANN201 - rich.table.Table
    """A rich Table of `attention_summary` output (one line per layer)."""
    from rich.table import Table

    if summary.empty:
        return Table(title="attention summary: no tracked steps")
    first, last = int(summary["first_step"].iloc[0]), int(summary["last_step"].iloc[0])
    table = Table(title=f"attention per layer, step {first} -> {last} (mean over heads)")
    table.add_column("layer", justify="right")
    for m, unit in (("entropy", "bits"), ("span", "tokens")):
        table.add_column(f"{m} {unit} @{first}", justify="right")
        table.add_column(f"{m} {unit} @{last}", justify="right")
    for rec in summary.itertuples(index=False):
        table.add_row(str(rec.layer), f"{rec.entropy_bits_first:.3f}", f"{rec.entropy_bits_last:.3f}",
                      f"{rec.span_tokens_first:.2f}", f"{rec.span_tokens_last:.2f}")
    return table
