"""Theory-run analysis moved out of the CLI: log-decade slopes, sweep trends, the sweep table."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.theory_trends import (SCAN_SNAP_SIGNALS, log_decade_slopes, scan_snap_tables, snap_row,
                                            sweep_eta_z_trend, sweep_final_table, sweep_tables, sweep_trend,
                                            theory_tables)
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


def test_decades_stop_at_the_last_step_and_the_last_one_is_clipped() -> None:
    steps = np.array([1.0, 10.0, 100.0, 1000.0])
    values = np.array([0.0, 1.0, 3.0, 6.0])
    assert log_decade_slopes(steps, values) == [
        {"from_step": 10.0, "to_step": 100.0, "slope_per_ln_step": pytest.approx(2.0 / np.log(10))},
        {"from_step": 100.0, "to_step": 1000.0, "slope_per_ln_step": pytest.approx(3.0 / np.log(10))}]
    clipped = log_decade_slopes(np.array([1, 10, 100, 500]), np.array([0, 1, 3, 4]))  # integer input
    assert [(s["from_step"], s["to_step"]) for s in clipped] == [(10.0, 100.0), (100.0, 500.0)]
    assert clipped[1]["slope_per_ln_step"] == pytest.approx(1.0 / np.log(5))
    assert log_decade_slopes(np.array([1.0, 5.0]), np.array([0.0, 1.0]), first=2.0) == [
        {"from_step": 2.0, "to_step": 5.0, "slope_per_ln_step": pytest.approx(0.75 / np.log(2.5))}]
    assert log_decade_slopes(np.array([1.0, 10.0]), np.array([0.0, 1.0])) == []


def test_scan_snap_tables_from_a_metric_table() -> None:
    rows = []
    for step in (100, 1, 10, 1000):                                   # unsorted on purpose
        for i, name in enumerate(SCAN_SNAP_SIGNALS):
            rows.append({"step": step, "metric": name, "value": i + np.log10(step)})
    rows.append({"step": 5, "metric": "loss", "value": 9.0})
    tables = scan_snap_tables(pd.DataFrame(rows))
    assert tables["scan_snap"].to_dict("records") == [{"signal": n, "start": float(i), "end": i + 3.0}
                                                      for i, n in enumerate(SCAN_SNAP_SIGNALS)]
    z = tables["z_growth"]
    assert list(z.columns) == ["from_step", "to_step", "slope_per_ln_step"]
    assert z.from_step.tolist() == [10.0, 100.0] and z.slope_per_ln_step.tolist() == pytest.approx([1 / np.log(10)] * 2)


def _grid(values: dict[tuple[int, float], list[float]], step: int = 50) -> pd.DataFrame:
    rows = []
    for (m, ratio), seeds in values.items():
        for seed, v in enumerate(seeds):
            for s, val in ((step, v), (step // 2, 99.0)):
                rows.append({"name": "entropy_distinct_bits", "step": s, "m": m, "k": 2, "eta_z": 1.0, "ratio": ratio,
                             "seed": seed, "value": val})
            rows.append({"name": "attn_common", "step": step, "m": m, "k": 2, "eta_z": 1.0, "ratio": ratio,
                         "seed": seed, "value": -1.0})
    return pd.DataFrame(rows)


def test_sweep_tables_final_mean_se_and_trend_per_group() -> None:
    grid = _grid({(1, 2.0): [1.0, 2.0, 3.0], (1, 0.5): [0.5, 0.5, 0.8], (2, 0.5): [2.0, 4.0, 0.0],
                  (2, 2.0): [1.0, 1.0, 1.0], (2, 8.0): [0.0, 0.0, 0.3]})
    final = sweep_final_table(grid)
    assert list(final.columns) == ["m", "k", "eta_z", "ratio", "mean", "se"]
    assert list(zip(final.m, final.ratio)) == [(1, 0.5), (1, 2.0), (2, 0.5), (2, 2.0), (2, 8.0)]
    assert final["mean"].tolist() == pytest.approx([0.6, 2.0, 2.0, 1.0, 0.1])
    assert final.se.tolist() == pytest.approx([np.sqrt(0.03) / np.sqrt(3), 1 / np.sqrt(3), 2 / np.sqrt(3), 0.0,
                                               np.sqrt(0.03) / np.sqrt(3)])
    tables = sweep_tables(grid)
    assert tables["sweep_final"].equals(final)
    trend = tables["sweep_trend"]
    assert trend.to_dict("records")[0] == {"m": 1, "k": 2, "eta_z": 1.0, "spearman_entropy_vs_ratio": pytest.approx(
        float("nan"), nan_ok=True), "rises": True}                  # two ratios: no rho
    assert trend.spearman_entropy_vs_ratio.tolist()[1] == pytest.approx(-1.0) and trend.rises.tolist() == [True, False]
    empty = sweep_tables(grid.iloc[:0])
    assert empty["sweep_final"].empty and list(empty["sweep_trend"].columns) == [
        "m", "k", "eta_z", "spearman_entropy_vs_ratio", "rises"]


def test_theory_tables_by_kind() -> None:
    frame = pd.DataFrame([{"step": s, "metric": n, "value": 1.0} for s in (1, 100) for n in SCAN_SNAP_SIGNALS])
    grid = _grid({(1, 0.5): [1.0, 2.0]})
    assert sorted(theory_tables("theory-scan-snap", frame, grid)) == ["scan_snap", "snap", "z_growth"]
    assert theory_tables("theory-scan-snap", frame.iloc[:0], grid) == {}
    assert sorted(theory_tables("theory-scan-snap-sweep", frame, grid)) == ["sweep_eta_z_trend", "sweep_final",
                                                                              "sweep_trend"]
    assert theory_tables("train", frame, grid) == {}
    markov = theory_tables("theory-markov", frame, grid)       # no stable rank or focus signal: an empty table
    assert list(markov) == ["focus_stages"] and markov["focus_stages"].empty


def test_empty_tables_keep_their_columns_and_low_precision_inputs_are_float64() -> None:
    tables = scan_snap_tables(pd.DataFrame([{"step": s, "metric": n, "value": 1.0} for s in (1, 5)
                                            for n in SCAN_SNAP_SIGNALS]))
    assert tables["z_growth"].empty and list(tables["z_growth"].columns) == ["from_step", "to_step", "slope_per_ln_step"]
    assert list(sweep_final_table(pd.DataFrame()).columns) == ["m", "k", "eta_z", "ratio", "mean", "se"]
    steps = np.array([1, 10, 100, 500], dtype=np.float16)                 # the last decade is clipped at 500
    values = np.array([0.1, 1.3, 2.7, 4.1], dtype=np.float16)
    assert log_decade_slopes(steps, values) == log_decade_slopes(steps.astype(float), values.astype(float))


def test_planted_snap_is_found_and_a_log_time_fall_is_not() -> None:
    steps = np.unique(np.round(np.logspace(0, 4, 80)).astype(float))
    steps = np.concatenate([[0.0], steps])
    snapped = 3.0 - 0.5 * (1 - np.exp(-steps / 10))           # falls 0.5 bits, frozen after ~60 steps
    row = snap_row(steps, snapped, tolerance=0.01)
    assert row["status"] == "snapped" and 20 <= row["snap_step"] <= 80
    assert abs(row["last_decade_change"]) < 1e-6 and row["total_change"] == pytest.approx(-0.5, abs=1e-6)
    falling = 3.0 - 0.05 * np.log10(1 + steps)                 # 0.05 bits per decade forever
    row = snap_row(steps, falling, tolerance=0.01)
    assert row["status"] == "not snapped" and np.isnan(row["snap_step"])
    assert row["last_decade_change"] == pytest.approx(-0.05, abs=2e-3)
    assert snap_row(steps, np.full_like(steps, 2.0))["status"] == "no scan"   # never moved


def test_sweep_eta_z_trend_per_ratio() -> None:
    table = pd.DataFrame({"m": 1, "k": 2, "ratio": 5.0, "eta_z": [0.5, 1.0, 2.0], "mean": [2.0, 1.9, 1.7]})
    assert sweep_eta_z_trend(table) == [{"m": 1, "k": 2, "ratio": 5.0, "spearman_entropy_vs_eta_z": pytest.approx(-1.0),
                                         "falls": True}]


def _markov_rows(series: dict[str, dict[int, float]], split: str = "train") -> list[dict]:
    return [{"step": s, "split": split, "layer": -1, "head_index": -1, "layer_b": -1, "metric": name, "value": v}
            for name, values in series.items() for s, v in values.items()]


def test_focus_stages_on_planted_markov_signals() -> None:
    """Embedding stable rank 6 -> 1 (exactly 1.5 = low + 10 % of the fall at step 30: condensation), back
    up by 1 (exactly 2.0) at step 320 (new direction); a triangular focus peak at 120 falling to 0 by
    180; W_QK change 1e-4 per step logged every 20 steps (read by interpolation at odd steps)."""
    from attnlife.analysis.cycles import smooth
    from attnlife.analysis.theory_trends import STAGE_COLUMNS, focus_stages, stages_in_paper_order

    ks = range(40)
    rank = {10 * k: ([6.0, 4.0, 2.0, 1.5] + [1.0] * 26 + [1.0 + 0.5 * j for j in range(10)])[k] for k in ks}
    focus = {10 * k: float(np.clip(1 - abs(k - 12) / 6, 0, None)) for k in ks}
    qk = {20 * k: 1e-4 * 20 * k for k in range(20)}
    rows = _markov_rows({"stable_rank_embedding": rank, "attn_focus_excess": focus, "attn_qk_rel_change": qk})
    rows += _markov_rows({"stable_rank_embedding": {s: 0.0 for s in rank}, "attn_focus_excess": {s: 9.0 for s in rank},
                          "attn_qk_rel_change": {s: 5.0 for s in rank}}, split="val")      # another split
    table = focus_stages(pd.DataFrame(rows))
    later = pd.Series([focus[s] for s in sorted(focus) if s >= 30], index=[s for s in sorted(focus) if s >= 30])
    sm = pd.Series(smooth(later.to_numpy(), 5), index=later.index)
    after = sm[sm.index > 120]
    half = float(after.index[(after <= (sm[120] + after.min()) / 2).to_numpy()][0])
    assert sm.idxmax() == 120 and half == 160.0
    want = pd.DataFrame([["condensation", 30.0, "stable_rank_embedding", 1.5, 0.003],
                         ["focus", 120.0, "attn_focus_excess", sm[120], 0.012],
                         ["dilution", 160.0, "attn_focus_excess", sm[160], 0.016],
                         ["new_direction", 320.0, "stable_rank_embedding", 2.0, 0.032]], columns=STAGE_COLUMNS)
    pd.testing.assert_frame_equal(table, want, rtol=1e-12)
    assert stages_in_paper_order(table)
    # the smoothing window is passed on: over 9 samples the focus peak is lower
    sm9 = pd.Series(smooth(later.to_numpy(), 9), index=later.index)
    w9 = focus_stages(pd.DataFrame(rows), window=9).set_index("stage")
    assert w9.step["focus"] == 120.0 and sm9[120] < sm[120]
    assert w9.value["focus"] == pytest.approx(sm9[120], rel=1e-12)
    # no W_QK change logged: NaN, and the order check fails (attention not shown frozen)
    no_qk = focus_stages(pd.DataFrame([r for r in rows if r["metric"] != "attn_qk_rel_change"]))
    assert no_qk.attn_qk_rel_change.isna().all() and not stages_in_paper_order(no_qk)
    # the rank never grows by 1 after condensation: no new direction
    flat = {s: min(v, 1.9) if s > 30 else v for s, v in rank.items()}
    got = focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": flat, "attn_focus_excess": focus})))
    assert got.stage.tolist() == ["condensation", "focus", "dilution"]
    # two focus samples from condensation on: no focus stage (nor dilution)
    short = {s: v for s, v in focus.items() if s <= 40}
    got = focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": rank, "attn_focus_excess": short})))
    assert got.stage.tolist() == ["condensation", "new_direction"]
    three = {s: v for s, v in focus.items() if s <= 50}
    got = focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": rank, "attn_focus_excess": three})))
    assert got.stage.tolist() == ["condensation", "focus", "dilution", "new_direction"]   # three are enough
    empty = focus_stages(pd.DataFrame(_markov_rows({"attn_focus_excess": focus})))
    assert empty.empty and list(empty.columns) == STAGE_COLUMNS
    assert focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": rank}))).empty


LOG_STEPS = [0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 550, 1000]


def _snap(values: dict[int, float], **kw) -> dict:
    """snap_row of a piecewise-linear signal given at some of LOG_STEPS (interpolated at the rest)."""
    known = sorted(values)
    v = np.interp(LOG_STEPS, known, [values[s] for s in known])
    return snap_row(np.array(LOG_STEPS), v, **kw)


def test_snap_row_exact_rows_and_limits() -> None:
    # falls 1 bit by step 10, flat after: the window [10, 100] is the first that stays still
    assert _snap({0: 3.0, 1: 2.9, 10: 2.0, 1000: 2.0}) == {
        "signal": "entropy_distinct_bits", "tolerance": 0.01, "snap_step": 10.0, "last_decade_change": 0.0,
        "total_change": -1.0, "status": "snapped"}
    # flat from step 1 on: step 1 is a candidate (t >= 1)
    assert _snap({0: 3.0, 1: 2.0, 1000: 2.0})["snap_step"] == 1.0
    # still moving until step 100: 100 is a candidate because 10 x 100 = 1000 is the last step (<=)
    got = _snap({0: 3.0, 50: 2.0, 100: 1.5, 1000: 1.5}, signal="h")
    assert (got["signal"], got["snap_step"], got["status"]) == ("h", 100.0, "snapped")
    # a drift of 450 s over [50, 500] (below 0.01) but 500 s over [50, 550]: the window is [t, 10 t]
    s = 0.01 / 475
    got = _snap({0: 3.0, 20: 3.0, 50: 2.0, 550: 2.0 - 500 * s, 1000: 2.0 - 500 * s})
    assert got["snap_step"] == 50.0
    # a window that moves by exactly the tolerance is not still (< tolerance)
    assert _snap({0: 3.0, 1: 2.0, 50: 2.0, 100: 1.75, 1000: 1.75}, tolerance=0.25)["snap_step"] == 100.0
    # moved exactly 10 x tolerance before the snap: a scan
    assert _snap({0: 3.0, 1: 1.75, 1000: 1.75}, tolerance=0.125)["status"] == "snapped"
    assert _snap({0: 3.0, 1: 1.875, 1000: 1.875}, tolerance=0.125)["status"] == "no scan"
    # the scan is measured from the first value (2.0 -> 3.0, though step 1 is already 2.5)
    assert _snap({0: 2.0, 1: 2.5, 2: 3.0, 1000: 3.0}, tolerance=0.1)["status"] == "snapped"
    # ... and only up to the snap: 0.95 before it, 0.09 more drifting after it (below 10 x 0.1)
    got = _snap({0: 3.0, 1: 2.05, 10: 2.05, 100: 1.96, 1000: 1.96}, tolerance=0.1)
    assert (got["snap_step"], got["status"]) == (1.0, "no scan")
    # the last two values differ: the changes read the last one
    got = _snap({0: 3.0, 10: 2.0, 550: 2.0, 1000: 2.004})
    assert got["total_change"] == pytest.approx(-0.996, abs=1e-12)
    assert got["last_decade_change"] == pytest.approx(0.004, abs=1e-12)      # H(1000) - H(100)
    # float32 values are promoted before the changes are taken
    v32 = np.array([100.1] + [0.3] * 11, dtype=np.float32)
    got = snap_row(np.array(LOG_STEPS), v32)
    assert got["total_change"] == float(np.float64(v32[-1]) - np.float64(v32[0]))


def test_scan_snap_tables_snap_reads_the_distinct_entropy() -> None:
    rows = [{"step": s, "metric": "entropy_distinct_bits", "value": v}
            for s, v in zip(LOG_STEPS, np.interp(LOG_STEPS, [0, 10, 1000], [3.0, 2.0, 2.0]))]
    rows += [{"step": s, "metric": n, "value": 7.0 * s} for s in LOG_STEPS for n in SCAN_SNAP_SIGNALS
             if n != "entropy_distinct_bits"]
    snap = scan_snap_tables(pd.DataFrame(rows))["snap"]
    assert snap.to_dict("records") == [_snap({0: 3.0, 10: 2.0, 1000: 2.0})]


def test_sweep_eta_z_trend_needs_three_rates_and_sweep_tables_carry_it() -> None:
    two = pd.DataFrame({"m": 1, "k": 2, "ratio": 5.0, "eta_z": [0.5, 1.0], "mean": [2.0, 1.9]})
    (row,) = sweep_eta_z_trend(two)
    assert math.isnan(row["spearman_entropy_vs_eta_z"]) and row["falls"] is True
    grid = pd.DataFrame([{"name": "entropy_distinct_bits", "step": 50, "m": 1, "k": 2, "eta_z": ez, "ratio": 5.0,
                          "seed": 0, "value": v} for ez, v in ((0.5, 2.0), (1.0, 1.9), (2.0, 1.7))])
    tables = sweep_tables(grid)
    assert tables["sweep_eta_z_trend"].to_dict("records") == [
        {"m": 1, "k": 2, "ratio": 5.0, "spearman_entropy_vs_eta_z": pytest.approx(-1.0), "falls": True}]
    empty = sweep_tables(grid.iloc[:0])["sweep_eta_z_trend"]
    assert empty.empty and list(empty.columns) == ["m", "k", "ratio", "spearman_entropy_vs_eta_z", "falls"]


def test_stages_in_paper_order_limits() -> None:
    from attnlife.analysis.theory_trends import FROZEN_QK, STAGE_COLUMNS, stages_in_paper_order

    def table(steps: dict[str, float], qk: float = 0.01) -> pd.DataFrame:
        return pd.DataFrame([[stage, step, "s", 0.0, qk if stage == "condensation" else 9.0]
                             for stage, step in steps.items()], columns=STAGE_COLUMNS)

    good = {"condensation": 10.0, "focus": 100.0, "dilution": 200.0, "new_direction": 1000.0}
    assert stages_in_paper_order(table(good))
    assert not stages_in_paper_order(table({k: v for k, v in good.items() if k != "dilution"}))   # one missing
    assert not stages_in_paper_order(table(good, qk=FROZEN_QK))                 # exactly 5 %: not frozen
    assert stages_in_paper_order(table(good, qk=FROZEN_QK * 0.999))
    assert not stages_in_paper_order(table({**good, "focus": 10.0}))            # focus at condensation: not after
    assert not stages_in_paper_order(table({**good, "dilution": 90.0}))         # dilution before the focus peak


def test_focus_stages_limits() -> None:
    from attnlife.analysis.theory_trends import focus_stages

    steps = [10 * k for k in range(30)]
    # condensation at the first rank <= low + 10 % of the fall (1 + 0.5 = 1.5), not at 1.6
    rank = dict(zip(steps, [6.0, 4.0, 1.6, 1.5] + [1.0] * 26))
    rise = dict(zip(steps, [0.1 * k for k in range(30)]))                  # focus still rising at the end
    got = focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": rank, "attn_focus_excess": rise})))
    assert got.stage.tolist() == ["condensation", "focus"] and got.step.tolist() == [30.0, 290.0]  # no dilution
    # a large fall: the condensation value (2.0) is itself low + 1; a new direction must come after it
    big = dict(zip(steps, [20.0, 5.0, 2.0] + [1.0] * 20 + [2.5] * 7))
    got = focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": big, "attn_focus_excess": rise})))
    assert got.set_index("stage").step.to_dict() == {"condensation": 20.0, "focus": 290.0, "new_direction": 230.0}
    # dilution half-way between the peak and the lowest value after it (1.5 -> 0.5: at 1.0), above zero
    tri = dict(zip(steps, [0.5 + max(0.0, 1 - abs(k - 10) / 5) for k in range(30)]))
    got = focus_stages(pd.DataFrame(_markov_rows({"stable_rank_embedding": rank, "attn_focus_excess": tri})),
                       window=1).set_index("stage")
    assert got.step["focus"] == 100.0 and got.step["dilution"] == 130.0 and got.value["dilution"] == 0.9
