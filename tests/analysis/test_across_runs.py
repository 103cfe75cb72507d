"""Correlations across run directories (kind `runs`), merged into each run's table with BH."""
from __future__ import annotations

from pathlib import Path

import pytest

import attnlife
from attnlife.explain import across_run_rows, add_across_runs, analyze_run
from attnlife.store.metrics_table import MetricWriter
from tests.analysis.test_correlations import bh_reference


def _run(root: Path, final_entropy: float, best_loss: float) -> Path:
    with MetricWriter(root) as w:
        for k, step in enumerate([0, 100, 200, 300]):
            for h in (0, 1):
                value = 4.0 + (final_entropy - 4.0) * k / 3 + 0.1 * h
                w.log(step, "entropy_bits", value, split="train", layer=0, head_index=h)
                w.log(step, "span_tokens", 3.0 + k * best_loss * (1 + h), split="train", layer=0, head_index=h)
            w.log(step, "eval_loss", 4.0 + (best_loss - 4.0) * k / 3, split="val")
    return root


def test_runs_kind_rows_and_merge(tmp_path: Path) -> None:
    finals = [(2.0, 1.5), (2.5, 1.7), (3.0, 1.6), (3.5, 2.1), (4.0, 2.3)]
    runs = [_run(tmp_path / f"r{i}", e, loss) for i, (e, loss) in enumerate(finals)]
    rows = across_run_rows(runs)
    row = next(r for r in rows if r["x"] == "entropy_bits" and r["y"] == "best_val_loss")
    assert row["kind"] == "runs" and row["n"] == 5 and row["rho"] == pytest.approx(0.9)
    for r in runs:
        analyze_run(r, quiet=True, sample=False)
    assert add_across_runs(runs) == len(rows)
    table = attnlife.load_run(runs[0]).analysis_table("correlations")
    got = table[table.kind == "runs"]
    assert len(got) == len(rows) > 1
    want = dict(zip(zip(got.x, got.y), bh_reference(got.p.tolist())))       # BH over the `runs` rows only
    assert got.p_bh.tolist() == pytest.approx([want[k] for k in zip(got.x, got.y)], rel=1e-12)
    add_across_runs(runs)  # idempotent: replaced, not appended
    assert len(attnlife.load_run(runs[0]).analysis_table("correlations").query("kind == 'runs'")) == len(rows)
