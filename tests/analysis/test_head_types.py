"""Head-type labels, emergence (first crossing that stays) and the induction phase change."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.head_types import EMERGENCE_COLUMNS, THRESHOLDS, emergence_index, emergence_table, induction_phase, label_types


def test_planted_emergence_recovered() -> None:
    v = np.r_[np.linspace(0.0, 0.35, 10), np.full(10, 0.6)]
    assert emergence_index(v, 0.4) == 10


def test_crossing_that_falls_back_is_not_emergence() -> None:
    v = np.r_[np.zeros(5), np.full(3, 0.6), np.full(10, 0.1)]
    assert emergence_index(v, 0.4) is None
    # falls back, then emerges for good: the later crossing counts
    assert emergence_index(np.r_[v, np.full(5, 0.7)], 0.4) == 18


def test_hysteresis_tolerates_small_dips_only() -> None:
    v = np.array([0.0, 0.5, 0.38, 0.5, 0.5])
    assert emergence_index(v, 0.4, hysteresis=0.1) == 1       # 0.38 >= 0.36
    assert emergence_index(v, 0.4, hysteresis=0.0) == 3
    assert emergence_index(np.array([0.0, 0.0, 0.9]), 0.4) is None  # last sample alone does not stay


def _scores(steps, per_head: dict[tuple[int, int, str], np.ndarray]) -> pd.DataFrame:
    rows = []
    for (layer, head, metric), vals in per_head.items():
        rows += [{"step": s, "layer": layer, "head_index": head, "metric": metric, "value": float(v)}
                 for s, v in zip(steps, vals)]
    return pd.DataFrame(rows)


def test_labels_and_emergence_table_on_synthetic_scores() -> None:
    steps = [0, 10, 100, 1000]
    frame = _scores(steps, {(0, 0, "prev_token_score"): [0.1, 0.5, 0.8, 0.9],
                            (0, 0, "sink_mass"): [0.05, 0.05, 0.05, 0.05],
                            (1, 1, "sink_mass"): [0.1, 0.1, 0.6, 0.7],
                            (1, 1, "prev_token_score"): [0.1, 0.1, 0.1, 0.1]})
    types = label_types(frame)
    first = types[(types.layer == 0) & (types.head_index == 0)].set_index("step")
    assert first.type.tolist() == ["mixed", "previous_token", "previous_token", "previous_token"]
    assert first.score.tolist() == [0.1, 0.5, 0.8, 0.9]
    em = emergence_table(frame, pd.Series([4.0, 3.0, 2.5, 2.4], index=steps)).set_index(["layer", "head_index", "type"])
    assert em.loc[(0, 0, "previous_token"), "emergence_step"] == 10
    assert em.loc[(0, 0, "previous_token"), "probe_loss_nats"] == 3.0
    assert em.loc[(1, 1, "sink"), "emergence_step"] == 100
    assert len(em) == 2


def test_induction_phase_change_with_loss_bump() -> None:
    steps = np.array([0, 100, 200, 300, 400])
    score = np.array([0.02, 0.03, 0.05, 0.6, 0.65])
    dense_steps = np.arange(0, 401)
    dense = 3.0 - dense_steps / 400 + np.where((dense_steps > 220) & (dense_steps < 260), 0.4, 0.0)
    out = induction_phase(steps, score, pd.Series(3.0 - steps / 400, index=steps), dense=(dense_steps, dense))
    assert out["step"] == 300 and out["step_before"] == 200
    assert out["score_before"] == 0.05 and out["score_after"] == 0.6
    assert out["loss_before"] == pytest.approx(2.5) and out["loss_after"] == pytest.approx(2.25)
    assert out["loss_bump"] == pytest.approx((3.0 - 221 / 400 + 0.4) - 2.5, abs=1e-9)  # max at step 221
    assert induction_phase(steps, np.linspace(0, 0.5, 5), pd.Series(steps * 0.0, index=steps)) is None  # gradual
    sparse = induction_phase(steps, score, pd.Series([3.0, 2.0], index=[0, 400]))     # loss not at 200 / 300
    assert np.isnan(sparse["loss_before"]) and np.isnan(sparse["loss_after"]) and np.isnan(sparse["loss_bump"])


def test_label_is_the_largest_ratio_to_threshold_and_the_threshold_counts() -> None:
    frame = _scores([0, 1, 2, 3], {(0, 0, "prev_token_score"): [0.4, 0.39, 0.45, np.nan],
                                   (0, 0, "local_score"): [0.1, 0.1, 0.75, 0.1],
                                   (0, 0, "induction_score"): [np.nan, np.nan, np.nan, 0.2]})
    types = label_types(frame).set_index("step")
    # step 0: 0.4 is exactly the previous-token threshold; step 1: just below; step 2: 0.45 / 0.4 = 1.125
    # beats 0.75 / 0.7 = 1.07 although 0.75 is the larger score; step 3: NaN is no type, 0.2 / 0.3 leads
    assert types.type.tolist() == ["previous_token", "mixed", "previous_token", "mixed"]
    assert types.score.tolist() == [0.4, 0.39, 0.45, 0.2]
    assert label_types(frame, thresholds=dict(THRESHOLDS, previous_token=0.5)).type.tolist()[0] == "mixed"
    empty = label_types(frame[frame.metric == "entropy_bits"])
    assert empty.empty and list(empty.columns) == ["step", "layer", "head_index", "type", "score"]


def test_emergence_limits_at_below_and_above() -> None:
    assert emergence_index(np.array([0.0, 0.4, 0.4]), 0.4) == 1             # reaching the threshold counts
    assert emergence_index(np.array([0.0, 0.3999, 0.4, 0.4]), 0.4) == 2
    # hysteresis floor (1 - 0.5) * 0.5 = 0.25 is inclusive
    assert emergence_index(np.array([0.0, 0.5, 0.25, 0.5]), 0.5, hysteresis=0.5) == 1
    assert emergence_index(np.array([0.0, 0.5, 0.2499, 0.5, 0.5]), 0.5, hysteresis=0.5) == 3
    # min_points samples must remain, the crossing included
    assert emergence_index(np.array([0.0, 0.5, 0.5]), 0.4, min_points=2) == 1
    assert emergence_index(np.array([0.0, 0.5, 0.5]), 0.4, min_points=3) is None
    assert emergence_index(np.array([0.0, 0.5, 0.5, 0.5]), 0.4, min_points=3) == 1
    # a NaN sample after the crossing is not "stays above"
    assert emergence_index(np.array([0.0, 0.5, np.nan, 0.5, 0.5]), 0.4) == 3


def test_emergence_table_sorts_steps_and_passes_its_parameters() -> None:
    frame = _scores([300, 0, 200, 100], {(2, 1, "self_score"): [0.9, 0.0, 0.38, 0.5],
                                         (2, 1, "local_score"): [0.1, 0.1, 0.1, 0.1]})
    frame = pd.concat([frame, pd.DataFrame([{"step": 0, "layer": 2, "head_index": 1, "metric": "entropy_bits",
                                             "value": 9.0}])])
    em = emergence_table(frame)
    assert em.probe_loss_nats.isna().all()                               # no loss given
    assert em.drop(columns="probe_loss_nats").to_dict("records") == [{"layer": 2, "head_index": 1, "type": "self", "emergence_step": 100,
                                      "threshold": 0.4}]
    assert emergence_table(frame, hysteresis=0.0).empty                  # 0.38 < 0.4; 300 alone is too late
    assert emergence_table(frame, hysteresis=0.0, min_points=1).emergence_step.tolist() == [300]
    assert emergence_table(frame, min_points=4).empty
    assert emergence_table(frame, thresholds=dict(THRESHOLDS, self=0.05)).emergence_step.tolist() == [100]
    assert list(emergence_table(frame.iloc[:0]).columns) == EMERGENCE_COLUMNS


def test_induction_phase_limits() -> None:
    steps, loss = np.array([0, 10, 20]), np.array([3.0, 2.0, 1.0])
    ser = pd.Series(loss, index=steps)
    two = induction_phase(steps[:2], np.array([0.0, 0.5]), ser)    # two samples suffice
    assert (two["step_before"], two["step"], two["loss_before"], two["loss_after"]) == (0, 10, 3.0, 2.0)
    assert induction_phase(steps[:1], np.array([0.5]), ser) is None
    # the jump may be exactly min_jump, exactly half the total rise, and land exactly on the threshold
    assert induction_phase(steps[:2], np.array([0.0, 0.5]), ser, min_jump=0.5)["step"] == 10
    assert induction_phase(steps[:2], np.array([0.0, 0.5]), ser, min_jump=0.5001) is None
    assert induction_phase(steps, np.array([0.0, 0.5, 1.0]), ser)["step"] == 10
    assert induction_phase(np.arange(5), np.array([0, 0.3, 0.35, 0.65, 0.7]), ser) is None  # 0.3 < 0.35
    assert induction_phase(steps[:2], np.array([0.0, 0.3]), ser)["score_after"] == 0.3
    assert induction_phase(steps[:2], np.array([0.0, 0.2999]), ser) is None
    # the total rise is measured from the first sample, not from zero
    assert induction_phase(steps, np.array([0.4, 0.5, 1.0]), ser)["step_before"] == 10


def test_induction_loss_bump_window_is_inclusive_and_floored_at_zero() -> None:
    steps, score = np.array([0, 10, 20]), np.array([0.0, 0.05, 0.6])       # the change is 10 -> 20
    flat = np.array([2.0, 2.0, 2.0])
    at_before = (np.array([5, 10, 15, 30]), np.array([1.0, 2.5, 1.0, 1.0]))
    at_after = (np.array([5, 15, 20, 30]), np.array([1.0, 1.0, 2.25, 9.0]))
    assert induction_phase(steps, score, pd.Series(flat, index=steps), dense=at_before)["loss_bump"] == 0.5
    assert induction_phase(steps, score, pd.Series(flat, index=steps), dense=at_after)["loss_bump"] == 0.25
    below = (np.array([10, 15, 20]), np.array([1.0, 1.5, 1.0]))
    assert induction_phase(steps, score, pd.Series(flat, index=steps), dense=below)["loss_bump"] == 0.0
    outside = (np.array([0, 30]), np.array([9.0, 9.0]))                    # no dense sample in [10, 20]
    assert induction_phase(steps, score, pd.Series(flat, index=steps), dense=outside)["loss_bump"] == 0.0
    coarse = induction_phase(steps, score, pd.Series([2.0, 2.0, 2.75], index=steps), dense=(np.array([]), np.array([])))
    assert coarse["loss_bump"] == 0.75                                      # empty dense: the loss series
    none = induction_phase(steps, score, pd.Series(dtype=float))
    assert all(np.isnan(none[k]) for k in ("loss_before", "loss_after", "loss_bump"))
    assert (none["step_before"], none["step"], none["score_before"]) == (10, 20, 0.05)


def test_low_precision_scores_and_the_default_hysteresis() -> None:
    v16 = np.array([0.0, 0.5, 0.37, 0.5, 0.5], dtype=np.float16)
    assert emergence_index(v16, 0.4) == emergence_index(v16.astype(float), 0.4) == 1   # 0.37 >= 0.36 in float64
    frame = _scores([0, 1, 2, 3, 4], {(0, 0, "prev_token_score"): [0.0, 0.5, 0.3, 0.5, 0.5]})
    assert emergence_table(frame).emergence_step.tolist() == [3]       # 0.3 < 0.9 x 0.4: the dip breaks it
    types = label_types(frame)
    assert isinstance(types.index, pd.RangeIndex) and types.step.tolist() == [0, 1, 2, 3, 4]
    # float16 inputs are judged by their float64 values, not by float16 arithmetic:
    edge = np.array([0.39990234375, 0.443359375, 0.366455078125], dtype=np.float16)  # 0.39990 is 0.4 in float16
    assert emergence_index(edge, 0.4, hysteresis=0.2) == 1
    rise = np.array([0.08380126953125, 0.12054443359375, 0.444091796875, 0.73095703125], dtype=np.float16)
    assert induction_phase(np.arange(4) * 10, rise, np.arange(4) * 10, np.ones(4)) is None   # jump < half the rise
    s32 = np.array([0.02, 0.03, 0.05, 0.6, 0.65], dtype=np.float16)
    steps = np.array([0, 100, 200, 300, 400])
    loss = np.array([3.0, 2.75, 2.5, 2.25, 2.0], dtype=np.float16)
    dense = (np.arange(0, 401, 50), (3.0 - np.arange(0, 401, 50) / 300).astype(np.float16))
    got = induction_phase(steps, s32, pd.Series(loss, index=steps), dense=dense)
    want = induction_phase(steps, s32.astype(float), pd.Series(loss.astype(float), index=steps),
                           dense=(dense[0].astype(float), dense[1].astype(float)))
    assert got == want and isinstance(got["score_after"], float)


def test_induction_phase_without_a_loss_reports_nan_losses() -> None:
    steps = np.arange(10) * 100
    scores = np.r_[np.full(5, 0.05), np.full(5, 0.7)]
    got = induction_phase(steps, scores)                                    # no checkpoint loss at all
    assert {k: got[k] for k in ("step", "step_before", "score_before", "score_after")} == {
        "step": 500, "step_before": 400, "score_before": 0.05, "score_after": 0.7}
    assert all(np.isnan(got[k]) for k in ("loss_before", "loss_after", "loss_bump"))
