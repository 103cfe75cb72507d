"""Each analysis table is cut from the series it names: builders against the pure functions they wire.

The frame is a real-shaped metric table (two layers of two heads, probe and train splits, val and
train loss, sample metrics, cross-layer pairs) with planted signals: entropy falls then settles,
a previous-token head emerges, an induction score jumps, a sink head cycles.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis import builders as B
from attnlife.analysis.correlations import paired_rows, rank_test
from attnlife.analysis.cycles import cycle_rows
from attnlife.analysis.head_types import emergence_table, induction_phase, label_types
from attnlife.analysis.phases import detect_phases, phase_rows
from attnlife.analysis.series import head_table, layer_series, model_series, probe_loss

STEPS = [0, 1, 2, 4, 8, 16, 32, 64, 100, 150, 200, 250, 300, 350, 400, 450]


def _row(step, metric, value, split="probe", layer=-1, head=-1, layer_b=-1) -> dict:
    return {"step": step, "split": split, "layer": layer, "head_index": head, "layer_b": layer_b, "metric": metric,
            "value": float(value), "stderr": np.nan}


def _frame(val_from: int = 0) -> pd.DataFrame:
    rows = []
    for k, step in enumerate(STEPS):
        f = k / (len(STEPS) - 1)
        for layer in (0, 1):
            for h in (0, 1):
                ent = 4.0 - 2.5 * min(f / 0.5, 1.0) * (1 + 0.1 * h) + 0.01 * np.sin(k + layer)
                rows += [_row(step, "entropy_bits", ent, layer=layer, head=h),
                         _row(step, "span_tokens", 3 + 4 * f + layer + 0.1 * np.cos(k * h), layer=layer, head=h),
                         _row(step, "sink_mass", 0.2 + 0.3 * (k % 4 == 2) * (h == 0), layer=layer, head=h),
                         _row(step, "prev_token_score", 0.1 + 0.6 * (f > 0.3) * (layer == 0) * (h == 1),
                              layer=layer, head=h),
                         _row(step, "induction_score", 0.05 + 0.6 * (step >= 200) * (layer == 1) * (h == 0),
                              layer=layer, head=h),
                         _row(step, "local_score", 0.3, layer=layer, head=h),
                         _row(step, "entropy_bits", 9.0, split="train", layer=layer, head=h)]
            rows.append(_row(step, "head_jsd_mean", 0.05 + 0.2 * f + 0.01 * layer, layer=layer))
        rows.append(_row(step, "xlayer_jsd", 0.1 + 0.1 * f, layer=0, layer_b=1))
        if step >= val_from:
            rows.append(_row(step, "eval_loss", 4.0 - 2.0 * f + 0.05 * np.sin(3 * k), split="val"))
        rows.append(_row(step, "distinct_2", 0.3 + 0.5 * f + 0.02 * np.cos(2 * k), split="sample"))
    for step in range(0, 451, 10):
        rows.append(_row(step, "loss", 4.2 - 2.0 * step / 450 + 0.3 * (210 <= step <= 230), split="train"))
    return pd.DataFrame(rows)


def _same(got: pd.DataFrame, want: list[dict]) -> None:
    pd.testing.assert_frame_equal(got.reset_index(drop=True), pd.DataFrame(want, columns=got.columns),
                                  check_dtype=False)


def _probe_loss(frame: pd.DataFrame, steps=STEPS) -> pd.DataFrame:
    rows = [_row(s, "probe_loss_nats", 3.5 - 1.5 * k / len(steps) + 0.02 * np.cos(5 * k)) for k, s in enumerate(steps)]
    return pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)


def test_phases_table_wires_model_and_layer_series_with_the_checkpoint_loss_never_interpolated() -> None:
    frame = _frame()
    table, note = B.phases_table(frame, "probe")
    assert list(table.columns) == ["scope", "layer", "segment", "start_step", "end_step", "label", "slopes",
                                   "evidence"]
    assert note == f"split probe, {len(STEPS)} steps, min segment 3 samples, loss series: val_loss"
    model = model_series(frame, "probe").dropna(axis=1, how="any")
    loss = frame[frame.metric == "eval_loss"].set_index("step").value
    series = {c: model[c].to_numpy() for c in ("entropy_bits", "span_tokens", "head_jsd_mean", "xlayer_jsd")}
    series["val_loss"] = loss.loc[model.index].to_numpy()                # measured at every step: used as is
    want = phase_rows("model", -1, detect_phases(model.index.to_numpy(), series))
    assert table[table.scope == "model"].to_dict("records") == want
    assert "val_loss" in json.loads(want[0]["slopes"])
    l1 = layer_series(frame, "probe", 1).dropna(axis=1, how="any")
    got_l1 = table[table.scope == "L1"]
    assert set(table.scope) == {"model", "L0", "L1"} and (got_l1.layer == 1).all()
    assert got_l1.start_step.tolist() == [r["start_step"] for r in phase_rows(
        "L1", 1, detect_phases(l1.index.to_numpy(), {**{c: l1[c].to_numpy() for c in l1.columns
                                                       if c in series}, "val_loss": series["val_loss"]}))]
    # a loss series missing at some tracked steps is left out, never interpolated or extrapolated
    late, late_note = B.phases_table(_frame(val_from=4), "probe")
    assert all("val_loss" not in json.loads(s) for s in late.slopes)
    assert late_note.endswith("loss series: no loss (not measured at every step)")
    two = pd.concat([frame[frame.metric != "eval_loss"],
                     pd.DataFrame([_row(0, "eval_loss", 4.0, split="val"), _row(450, "eval_loss", 2.0, split="val")])])
    assert "val_loss" not in json.loads(B.phases_table(two, "probe")[0].slopes.iloc[0])
    # the probe loss (measured at every checkpoint) wins over val loss
    probe, probe_note = B.phases_table(_probe_loss(two), "probe")
    assert probe_note.endswith("loss series: probe_loss_nats")
    with_probe = {**{k: v for k, v in series.items() if k != "val_loss"},
                  "probe_loss_nats": probe_loss(_probe_loss(two)).loc[model.index].to_numpy()}
    assert probe[probe.scope == "model"].to_dict("records") == phase_rows(
        "model", -1, detect_phases(model.index.to_numpy(), with_probe))
    bigger, note6 = B.phases_table(frame, "probe", min_size=6)
    assert note6.endswith("min segment 6 samples, loss series: val_loss")
    assert bigger[bigger.scope == "model"].to_dict("records") == phase_rows(
        "model", -1, detect_phases(model.index.to_numpy(), series, min_size=6))
    l1_6 = phase_rows("L1", 1, detect_phases(l1.index.to_numpy(), {**{c: l1[c].to_numpy() for c in l1.columns
                                                                      if c in series}, "val_loss": series["val_loss"]}, 6))
    assert bigger[bigger.scope == "L1"].start_step.tolist() == [r["start_step"] for r in l1_6]
    # a series missing at one step is left out; the step is kept
    gap = frame[~((frame.metric == "xlayer_jsd") & (frame.step == 0))]
    gapped, _ = B.phases_table(gap, "probe")
    assert gapped[gapped.scope == "model"].start_step.iloc[0] == 0
    assert all("xlayer_jsd" not in json.loads(s) for s in gapped[gapped.scope == "model"].slopes)
    nothing, _ = B.phases_table(pd.DataFrame([_row(0, "entropy_norm", np.nan, layer=0, head=0)]), "probe")
    assert nothing.empty and list(nothing.columns) == list(table.columns)
    empty, why = B.phases_table(frame, None)
    assert empty.empty and list(empty.columns) == list(table.columns)
    assert why == "skipped: no attention metrics in this run"


def test_type_split_prefers_probe_and_ignores_sink_mass() -> None:
    frame = _frame()
    assert B.type_split(frame) == "probe"
    only_train = frame.assign(split=frame.split.replace({"probe": "train"}))
    assert B.type_split(only_train) == "train"
    sink_only = frame[~frame.metric.isin(["prev_token_score", "induction_score", "local_score"])]
    assert B.type_split(sink_only) is None


def test_head_type_tables_use_the_type_split_and_the_max_induction_score() -> None:
    frame = _frame()
    tables, note = B.head_type_tables(frame)
    assert note == "split probe"
    scores = head_table(frame, "probe")
    scores = scores[scores.metric.isin(["prev_token_score", "local_score", "sink_mass", "self_score",
                                        "induction_score"])]
    assert tables["head_types"].equals(label_types(scores))
    val = frame[frame.metric == "eval_loss"].set_index("step").value
    assert tables["emergence"].equals(emergence_table(scores, val))
    assert tables["emergence"].probe_loss_nats.tolist() == val.loc[tables["emergence"].emergence_step].tolist()
    assert ((tables["emergence"].layer == 0) & (tables["emergence"].head_index == 1)
            & (tables["emergence"].type == "previous_token")).any()
    ind = tables["induction_phase"]
    assert list(ind.columns) == ["step", "step_before", "score_before", "score_after", "loss_before", "loss_after",
                                 "loss_bump"]
    (row,) = ind.to_dict("records")
    dense = frame[(frame.metric == "loss") & (frame.split == "train")].set_index("step").value
    want = induction_phase(np.array(STEPS), np.array([0.05 + 0.6 * (s >= 200) for s in STEPS]),
                           val, dense=(dense.index.to_numpy(), dense.to_numpy()))
    assert row == pytest.approx(want) and row["step"] == 200 and row["loss_bump"] > 0.2  # the dense bump at 210-230
    flat = frame.assign(value=np.where(frame.metric == "induction_score", 0.05, frame.value))
    no_phase = B.head_type_tables(flat)[0]["induction_phase"]
    assert no_phase.empty and list(no_phase.columns) == list(ind.columns)
    none, why = B.head_type_tables(frame[~frame.metric.isin(["prev_token_score", "induction_score", "local_score"])])
    assert all(t.empty for t in none.values()) and sorted(none) == ["emergence", "head_types", "induction_phase"]
    assert why == "skipped: no per-head type scores (run `attnlife track RUN` to add split probe)"


def test_cycles_table_reads_each_focus_signal_with_its_sign() -> None:
    frame = _frame()
    focus = [_row(s, "attn_focus_excess", np.cos(2 * np.pi * s / 100), split="train") for s in range(0, 260, 5)]
    frame = pd.concat([frame, pd.DataFrame(focus)], ignore_index=True)
    table, note = B.cycles_table(frame, "probe")
    assert list(table.columns) == ["layer", "head_index", "signal", "start_step", "trough_step", "end_step",
                                   "period_steps", "prominence", "status"]
    heads = head_table(frame, "probe")
    sink = heads[(heads.metric == "sink_mass") & (heads.layer == 1) & (heads.head_index == 0)].sort_values("step")
    want = cycle_rows(sink.step.to_numpy(), sink.value.to_numpy(), 0.2, 3)
    got = table[(table.signal == "sink_mass") & (table.layer == 1) & (table.head_index == 0)]
    assert len(want) > 0
    _same(got.drop(columns=["layer", "head_index", "signal"]), want)
    ent = heads[(heads.metric == "entropy_bits") & (heads.layer == 0) & (heads.head_index == 1)].sort_values("step")
    want_ent = cycle_rows(ent.step.to_numpy(), -ent.value.to_numpy(), 0.2, 3)   # focus = low entropy
    got_ent = table[(table.signal == "entropy_bits") & (table.layer == 0) & (table.head_index == 1)]
    _same(got_ent.drop(columns=["layer", "head_index", "signal"]), want_ent)
    markov = table[table.signal == "attn_focus_excess"]
    f = pd.DataFrame(focus)
    _same(markov.drop(columns=["layer", "head_index", "signal"]), cycle_rows(f.step.to_numpy(), f.value.to_numpy(), 0.2, 5))
    assert (markov.layer == -1).all() and (markov.head_index == -1).all() and (markov.status == "closed").sum() == 1
    closed = int((table.status == "closed").sum())
    assert note == f"{closed} closed, {len(table) - closed} open (open cycles are not counted)" and closed >= 2
    wide, _ = B.cycles_table(frame, "probe", rel_prominence=0.9, smooth_window=1, focus_window=1)
    assert len(wide[wide.signal == "sink_mass"]) != len(table[table.signal == "sink_mass"])
    none, none_note = B.cycles_table(frame[frame.metric != "attn_focus_excess"], None)
    assert none.empty and none_note == "0 closed, 0 open (open cycles are not counted)"
    assert list(none.columns) == list(table.columns)


def test_per_step_light_signals_are_smoothed_before_cycles() -> None:
    """Light tier, one value per step: a planted sink-mass cycle of period 1000 under batch noise gives
    its cycles; pure noise gives none (1 % moving average and a floor of 8 standard errors of the noise)."""
    rng = np.random.default_rng(0)
    steps = np.arange(3000)
    sink = 0.1 + 0.05 * np.cos(2 * np.pi * steps / 1000) + rng.normal(0, 0.01, steps.size)
    flat = 3.0 + rng.normal(0, 0.05, steps.size)
    rows = ([_row(s, "light_sink_mass", v, split="train", layer=0, head=1) for s, v in zip(steps, sink)]
            + [_row(s, "light_entropy_bits", v, split="train", layer=0, head=1) for s, v in zip(steps, flat)]
            + [_row(s, "light_ms", 1.0, split="train") for s in steps])
    table, _ = B.cycles_table(pd.DataFrame(rows), None)
    assert set(table.signal) == {"light_sink_mass"} and (table.layer == 0).all() and (table.head_index == 1).all()
    closed, open_ = table[table.status == "closed"], table[table.status == "open"]  # peak 2000: no recovery
    assert closed.start_step.tolist() == pytest.approx([1000], abs=40)
    assert closed.period_steps.tolist() == pytest.approx([1000], abs=60)
    assert open_.start_step.tolist() == pytest.approx([2000], abs=40)
    assert B.light_window(3000, 3) == 31 and B.light_window(50, 3) == 3 and B.light_window(400, 3) == 5
    assert len(cycle_rows(steps, -flat, 0.2, 31)) > 3        # 20 % of a noise range alone: wiggles count
    floor = B.light_prominence(-flat, 31, 0.2)
    assert floor == pytest.approx(8 * np.std(np.diff(flat)) / np.sqrt(2) / np.sqrt(31))


def _spectra() -> pd.DataFrame:
    rows = []
    for k, step in enumerate(STEPS):
        for layer in (0, 1):
            for h in (0, 1):
                for stat, v in (("stable_rank", 5 - 0.1 * k * (1 + h) + 0.05 * np.sin(k)),
                                ("spectral_entropy_bits", 3 + 0.02 * k * k),
                                ("lambda_1", 1 + 0.3 * k + layer)):
                    rows.append({"model": "m", "step": step, "layer": layer, "head_index": h, "matrix": "qk",
                                 "stat": stat, "value": v})
    return pd.DataFrame(rows)


def test_correlation_rows_pair_every_attention_series_with_every_outcome() -> None:
    frame, spectra = _frame(), _spectra()
    rows = B.correlation_rows(frame, "probe", spectra)
    val = frame[frame.metric == "eval_loss"].set_index("step").value
    model = model_series(frame, "probe")
    want = paired_rows(model.entropy_bits.dropna(), val, ("entropy_bits", -1, -1, "val_loss"))
    assert [r for r in rows if (r["x"], r["x_layer"], r["y"]) == ("entropy_bits", -1, "val_loss")] == want
    l0 = layer_series(frame, "probe", 0)
    sample = frame[frame.metric == "distinct_2"].set_index("step").value
    assert [r for r in rows if (r["x"], r["x_layer"], r["y"]) == ("span_tokens", 0, "distinct_2")] == \
        paired_rows(l0.span_tokens.dropna(), sample, ("span_tokens", 0, -1, "distinct_2"))
    assert {r["y"] for r in rows} == {"val_loss", "distinct_2", "qk_stable_rank", "qk_spectral_entropy_bits",
                                      "qk_lambda_1"}
    hw = [r for r in rows if r["kind"] == "head_weights"]
    head = head_table(frame, "probe")
    x = head[(head.metric == "entropy_bits") & (head.layer == 1) & (head.head_index == 1)].set_index("step").value
    y = spectra[(spectra.stat == "stable_rank") & (spectra.layer == 1) & (spectra.head_index == 1)].set_index("step").value
    t = rank_test(x.loc[y.index].to_numpy(), y.to_numpy())
    (got,) = [r for r in hw if (r["x"], r["x_layer"], r["x_head"], r["y"]) == ("entropy_bits", 1, 1, "qk_stable_rank")]
    assert got == {"x": "entropy_bits", "x_layer": 1, "x_head": 1, "y": "qk_stable_rank", "kind": "head_weights",
                   "rho": t.rho, "p": t.p, "n": t.n, "p_min": t.p_min, "method": t.method}
    # constant series (local_score is not a head metric; sink_mass of head 1 is constant) give no row
    assert not [r for r in hw if r["x"] == "sink_mass" and r["x_head"] == 1]
    no_heads = B.correlation_rows(frame, "probe", spectra[spectra.layer == 0])
    assert {r["x_layer"] for r in no_heads if r["kind"] == "head_weights"} == {0}
    later = B.correlation_rows(frame, "probe", spectra[spectra.layer == 1])   # heads of layer 0 missing first
    assert {r["x_layer"] for r in later if r["kind"] == "head_weights"} == {1}
    assert B.correlation_rows(frame, None, spectra) == []


def test_embedding_tables_stack_every_statistic_of_the_same_heads() -> None:
    frame, spectra = _frame(), _spectra()                                  # three heads: PCA, no UMAP JIT
    frame = frame[~((frame.layer == 1) & (frame.head_index == 1))]
    spectra = spectra[~((spectra.layer == 1) & (spectra.head_index == 1))]
    emb, edges, info = B.embedding_tables(frame, "probe", spectra.iloc[:0])
    assert list(zip(emb.layer, emb.head_index)) == [(0, 0), (0, 1), (1, 0)]
    assert info["statistics"] == 3 and info["n_heads"] == 3                # entropy, span, sink mass
    emb2, _, info2 = B.embedding_tables(frame, "probe", spectra)
    assert info2["statistics"] == 6                                        # + three W_QK statistics
    assert info2["features"] == 6 * len(STEPS)
    other_heads = spectra.assign(head_index=spectra.head_index + 5)        # another set of heads: left out
    assert B.embedding_tables(frame, "probe", other_heads)[2]["statistics"] == 3
    one_head = frame[(frame.layer <= 0) & (frame.head_index <= 0)]           # one head (0, 0) and model rows
    skipped = B.embedding_tables(one_head, "probe", spectra.iloc[:0])
    assert skipped[0].empty and skipped[1].empty and skipped[2] == {"skipped": "fewer than 2 heads with trajectories"}
    assert list(skipped[0].columns) == ["layer", "head_index", "x", "y", "cluster"]
    assert B.embedding_tables(frame, None, spectra)[2]["statistics"] == 3
    # a statistic over other heads is skipped, the ones after it still count
    no_sink = frame[~((frame.metric == "sink_mass") & (frame.layer == 1))]
    assert B.embedding_tables(no_sink, "probe", spectra)[2]["statistics"] == 5
    # a head missing at one step drops the step, not the head; two heads are enough
    holey = frame[~((frame.metric == "span_tokens") & (frame.step == 4) & (frame.layer == 1))]
    e, _, i = B.embedding_tables(holey, "probe", spectra.iloc[:0])
    assert len(e) == 3 and i["features"] == 3 * len(STEPS) - 1
    two = frame[frame.layer <= 0]
    e2, _, i2 = B.embedding_tables(two, "probe", spectra.iloc[:0])
    assert len(e2) == 2 and i2["statistics"] == 3 and e2.cluster.dtype.kind == "i"


def test_run_finals_and_across_run_rows() -> None:
    from attnlife.analysis.across_runs import finals_correlation_rows, merge_runs_rows, run_finals
    from attnlife.analysis.correlations import finish

    frame = _frame()
    finals = run_finals(frame)
    model = model_series(frame, "probe")
    assert finals == {**{f"x:{c}": float(model[c].iloc[-1]) for c in model.columns},
                      "y:best_val_loss": float(frame[frame.metric == "eval_loss"].value.min()),
                      "y:distinct_2": float(frame[frame.metric == "distinct_2"].value.iloc[-1])}
    assert run_finals(frame[frame.metric == "loss"]) == {}                 # no attention, val loss or samples
    runs = [{"x:entropy_bits": e, "x:span_tokens": s, "y:best_val_loss": v}
            for e, s, v in ((2.0, 1, 1.5), (2.5, 2, 1.7), (3.0, 3, 1.6), (3.5, 4, 2.1), (4.0, 5, 2.3))]
    runs.append({"x:entropy_bits": 9.0, "y:best_val_loss": 9.0})          # a run without span: n = 5 for span
    rows = finals_correlation_rows(runs)
    assert [(r["x"], r["y"], r["n"], r["kind"], r["x_layer"], r["x_head"]) for r in rows] == \
        [("entropy_bits", "best_val_loss", 6, "runs", -1, -1), ("span_tokens", "best_val_loss", 5, "runs", -1, -1)]
    assert rows[1]["rho"] == pytest.approx(0.9)
    assert finals_correlation_rows([{"x:a": 1.0, "y:b": 2.0}] * 5) == []  # constant: no row
    table = finish([{"x": "e", "x_layer": -1, "x_head": -1, "y": "v", "kind": "steps_diff", "rho": 0.5, "p": 0.01,
                     "n": 9},
                    {"x": "old", "x_layer": -1, "x_head": -1, "y": "v", "kind": "runs", "rho": 0.1, "p": 0.9, "n": 4}])
    merged = merge_runs_rows(table, rows)
    assert sorted(merged[merged.kind == "runs"].x) == ["entropy_bits", "span_tokens"]   # old runs rows replaced
    assert merged[merged.kind == "steps_diff"].p_bh.tolist() == [0.01]
    assert merged[merged.kind == "runs"].p_bh.tolist() == pytest.approx(
        finish(rows).p_bh.tolist())                                        # BH over the new runs rows only


def test_embedding_tables_pass_the_seed_to_the_embedding() -> None:
    """12 heads in three planted groups: k-means numbers the groups by its seed (seeds 0 and 4 number
    them differently), and the table is the embedding of the heads' trajectories with that seed."""
    from attnlife.analysis.embedding import embed_trajectories

    rng = np.random.default_rng(0)
    steps = list(range(0, 100, 10))
    keys = [(layer, h) for layer in range(3) for h in range(4)]
    base = [np.linspace(4, 1, len(steps)), np.linspace(1, 4, len(steps)), np.full(len(steps), 2.5)]
    x = np.array([base[i % 3] + 0.3 * rng.normal(size=len(steps)) for i in range(len(keys))])   # [heads, steps]
    frame = pd.DataFrame([_row(s, "entropy_bits", x[i, k], layer=layer, head=h)
                          for i, (layer, h) in enumerate(keys) for k, s in enumerate(steps)])
    no_spectra = _spectra().iloc[:0]
    want = {s: embed_trajectories(keys, [x], seed=s)[0] for s in (0, 4)}
    assert want[0].cluster.tolist() != want[4].cluster.tolist()             # the seed matters here
    for s in (0, 4):
        pd.testing.assert_frame_equal(B.embedding_tables(frame, "probe", no_spectra, seed=s)[0], want[s])
    pd.testing.assert_frame_equal(B.embedding_tables(frame, "probe", no_spectra)[0], want[0])   # default seed 0


def test_phase_frame_drops_steps_without_phase_series_then_columns_with_gaps() -> None:
    """Light-tier steps (no phase series at all) go first, so a series measured at every checkpoint
    survives; a series with a gap at a checkpoint goes."""
    table = pd.DataFrame({"entropy_bits": [4.0, np.nan, 3.0, np.nan, 2.0],
                          "span_tokens": [1.0, np.nan, 2.0, np.nan, np.nan],     # gap at checkpoint 4
                          "light_sink_mass": [0.1, 0.2, 0.3, 0.4, 0.5]},        # not a phase series
                         index=[0, 1, 2, 3, 4])
    got = B._phase_frame(table)
    pd.testing.assert_frame_equal(got, pd.DataFrame({"entropy_bits": [4.0, 3.0, 2.0]}, index=[0, 2, 4]))


def test_phase_input_aligns_the_loss_to_the_tables_steps() -> None:
    table = pd.DataFrame({"entropy_bits": [4.0, 3.0, 2.0]}, index=[10, 20, 30])
    loss = pd.Series([9.0, 2.5, 2.0, 1.5, 1.0], index=[0, 10, 20, 25, 30])      # measured at more steps
    got = B._phase_input(table, ("probe_loss_nats", loss))
    assert set(got) == {"entropy_bits", "probe_loss_nats"}
    assert got["probe_loss_nats"].tolist() == [2.5, 2.0, 1.0] and got["probe_loss_nats"].dtype == np.float64
    assert set(B._phase_input(table, ("val_loss", loss.drop(20)))) == {"entropy_bits"}      # a step missing
    assert set(B._phase_input(table.iloc[:0], ("val_loss", pd.Series(dtype=float)))) == {"entropy_bits"}


def test_correlation_rows_read_model_level_sample_metrics_and_name_every_kind() -> None:
    frame, spectra = _frame(), _spectra()
    clean = B.correlation_rows(frame, "probe", spectra)
    assert {r["kind"] for r in clean} == {"steps_raw", "steps_diff", "steps_resid", "head_weights",
                                          "head_weights_resid"}
    sample = frame[frame.metric == "distinct_2"].set_index("step").value
    # a per-layer row of a sample metric, and the metric on another split: neither is the sample outcome
    noise = pd.DataFrame([_row(s, "distinct_2", 50.0 * np.sin(k), split="sample", layer=0, head=0)
                          for k, s in enumerate(STEPS)] +
                         [_row(s, "distinct_2", -30.0 * np.cos(k), split="val") for k, s in enumerate(STEPS)])
    rows = B.correlation_rows(pd.concat([frame, noise], ignore_index=True), "probe", spectra)
    model = model_series(frame, "probe")
    got = [r for r in rows if (r["x"], r["x_layer"], r["y"]) == ("entropy_bits", -1, "distinct_2")]
    assert got == paired_rows(model.entropy_bits.dropna(), sample, ("entropy_bits", -1, -1, "distinct_2"))
    assert len(got) == 3


def test_phases_table_passes_min_size_to_every_scope() -> None:
    """Minimum segment 8 samples: the first segment of the 16 steps ends at step 64, not 100 (it does
    with every minimum from 2 to 7), in the model and in each layer."""
    frame = _frame()
    default, _ = B.phases_table(frame, "probe")
    eight, _ = B.phases_table(frame, "probe", min_size=8)
    for scope in ("model", "L0", "L1"):
        assert default[default.scope == scope][["start_step", "end_step"]].values.tolist() == [[0, 100], [150, 450]]
        assert eight[eight.scope == scope][["start_step", "end_step"]].values.tolist() == [[0, 64], [100, 450]]
    model = model_series(frame, "probe").dropna(axis=1, how="any")
    series = {c: model[c].to_numpy() for c in ("entropy_bits", "span_tokens", "head_jsd_mean", "xlayer_jsd")}
    series["val_loss"] = frame[frame.metric == "eval_loss"].set_index("step").value.loc[model.index].to_numpy()
    assert eight[eight.scope == "model"].to_dict("records") == phase_rows(
        "model", -1, detect_phases(model.index.to_numpy(), series, min_size=8))


def test_light_prominence_limits_and_float64() -> None:
    # three samples are enough: the range term (0.5 x 1) is below the noise floor 8 x std(1, -1) / sqrt 2
    assert B.light_prominence(np.array([10.0, 11.0, 10.0]), 1, 0.5) == pytest.approx(8 / np.sqrt(2), rel=1e-15)
    assert B.light_prominence(np.array([10.0, 11.0]), 1, 0.5) == np.inf
    # a slow ramp far from zero: the range term wins (0.2 x 9 = 1.8 > 8 x 0 noise)
    ramp = 100.0 + np.arange(10.0)
    assert B.light_prominence(ramp, 1, 0.2) == pytest.approx(0.2 * 9, rel=1e-12)
    # float32 samples are promoted before the noise is measured
    rng = np.random.default_rng(1)
    v32 = (3.0 + rng.normal(0, 0.05, 500)).astype(np.float32)
    v64 = v32.astype(np.float64)
    want = max(0.2 * float(np.ptp(B.smooth(v64, 7))), 8 * float(np.std(np.diff(v64))) / np.sqrt(2) / np.sqrt(7))
    assert B.light_prominence(v32, 7, 0.2) == pytest.approx(want, rel=1e-12)


def test_light_tier_head_zero_cycles_and_markov_noise_floor() -> None:
    """A planted light-tier cycle on head 0 is found (head 0 is a head); a flat noisy Markov focus
    signal logged every step gives no cycle above the noise floor, though 20 % of its range would."""
    rng = np.random.default_rng(2)
    steps = np.arange(1000)
    sink = 0.1 + 0.05 * np.cos(2 * np.pi * steps / 300) + rng.normal(0, 0.005, steps.size)
    noise = 0.2 + rng.normal(0, 0.05, steps.size)
    rows = ([_row(s, "light_sink_mass", v, split="train", layer=1, head=0) for s, v in zip(steps, sink)]
            + [_row(s, "attn_focus_excess", v, split="train") for s, v in zip(steps, noise)])
    table, _ = B.cycles_table(pd.DataFrame(rows), None)
    window = B.light_window(1000, 3)
    want = cycle_rows(steps, sink, smooth_window=window, prominence=B.light_prominence(sink, window, 0.2))
    assert len(want) >= 2
    _same(table[table.signal == "light_sink_mass"].drop(columns=["layer", "head_index", "signal"]), want)
    assert set(zip(table.layer, table.head_index)) == {(1, 0)}
    assert not (table.signal == "attn_focus_excess").any()
    assert len(cycle_rows(steps, noise, smooth_window=B.light_window(1000, 5))) > 0   # without the floor: wiggles


def test_embedding_skips_a_first_statistic_over_one_head() -> None:
    """entropy_bits over one head only is skipped; the heads come from the statistics after it."""
    frame = _frame()
    frame = frame[~((frame.layer == 1) & (frame.head_index == 1))]
    one = frame[~((frame.metric == "entropy_bits") & (frame.split == "probe") & (frame.layer >= 0)
                  & ~((frame.layer == 0) & (frame.head_index == 0)))]
    emb, _, info = B.embedding_tables(one, "probe", _spectra().iloc[:0])
    assert list(zip(emb.layer, emb.head_index)) == [(0, 0), (0, 1), (1, 0)]
    assert info["statistics"] == 2                                          # span tokens, sink mass
