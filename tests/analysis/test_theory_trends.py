"""Theory-run analysis moved out of the CLI: log-decade slopes, sweep trends, the sweep table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.theory_trends import log_decade_slopes, sweep_final_table, sweep_trend
from attnlife.store.run_dir import load_run
from attnlife.theory.scan_snap_runs import SweepConfig, run_sweep


def test_log_time_growth_has_constant_slope_per_ln_step() -> None:
    steps = np.arange(1, 20001, dtype=float)
    slopes = log_decade_slopes(steps, 0.5 + 2.0 * np.log(steps))
    assert [s["from_step"] for s in slopes] == [10.0, 100.0, 1000.0, 10000.0]
    assert [s["slope_per_ln_step"] for s in slopes] == pytest.approx([2.0] * 4)


def test_sweep_trend_rho_per_group() -> None:
    table = pd.DataFrame({"m": 1, "k": 2, "eta_z": 1.0, "ratio": [0.1, 1.0, 10.0], "mean": [1.0, 1.5, 2.0]})
    assert sweep_trend(table) == [{"m": 1, "k": 2, "eta_z": 1.0, "spearman_entropy_vs_ratio": pytest.approx(1.0),
                                   "rises": True}]


def test_sweep_parameters_are_columns_and_the_final_table_averages_seeds(tmp_path) -> None:
    run = run_sweep(SweepConfig(mk=[(1, 2)], ratios=[0.5, 2.0], eta_z=[1.0], n_seeds=3, steps=12, seq_len=16,
                                log_points=3), tmp_path / "sweep", quiet=True)
    grid = load_run(run).sweep()
    assert {"m", "k", "eta_z", "eta_y", "ratio", "seed"} <= set(grid.columns)
    assert sorted(grid.seed.unique()) == [0, 1, 2] and sorted(grid.ratio.unique()) == [0.5, 2.0]
    assert np.allclose(grid.eta_y, grid.eta_z * grid.ratio)
    assert load_run(run).metrics().empty  # each value once: no parameters inside metric names
    final = sweep_final_table(grid)
    last = grid[(grid.name == "entropy_distinct_bits") & (grid.step == 12)]
    for row in final.itertuples():
        seeds = last[last.ratio == row.ratio].value.to_numpy(dtype=np.float64)
        assert len(seeds) == 3 and row.mean == pytest.approx(seeds.mean())
        assert row.se == pytest.approx(seeds.std(ddof=1) / np.sqrt(3))
