"""Head-type labels, emergence (first crossing that stays) and the induction phase change."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.head_types import emergence_index, emergence_table, induction_phase, label_types


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
    em = emergence_table(frame).set_index(["layer", "head_index", "type"])
    assert em.loc[(0, 0, "previous_token"), "emergence_step"] == 10
    assert em.loc[(1, 1, "sink"), "emergence_step"] == 100
    assert len(em) == 2


def test_induction_phase_change_with_loss_bump() -> None:
    steps = np.array([0, 100, 200, 300, 400])
    score = np.array([0.02, 0.03, 0.05, 0.6, 0.65])
    dense_steps = np.arange(0, 401)
    dense = 3.0 - dense_steps / 400 + np.where((dense_steps > 220) & (dense_steps < 260), 0.4, 0.0)
    out = induction_phase(steps, score, steps, 3.0 - steps / 400, dense=(dense_steps, dense))
    assert out["step"] == 300 and out["step_before"] == 200
    assert out["score_before"] == 0.05 and out["score_after"] == 0.6
    assert out["loss_before"] == pytest.approx(2.5) and out["loss_after"] == pytest.approx(2.25)
    assert out["loss_bump"] == pytest.approx((3.0 - 221 / 400 + 0.4) - 2.5, abs=1e-9)  # max at step 221
    assert induction_phase(steps, np.linspace(0, 0.5, 5), steps, steps * 0.0) is None  # gradual: no jump
