"""Phase detection on planted synthetic trajectories."""
from __future__ import annotations

import json

import numpy as np
import pytest

from attnlife.analysis.phases import bic_penalty, detect_phases, phase_rows, segment_delta, standardise


def _planted(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    x = np.arange(n)
    entropy = np.where(x < 20, 4.2 - 0.07 * x, 4.2 - 0.07 * 20) + rng.normal(0, 0.02, n)
    jsd = np.where(x < 20, 0.05, np.where(x < 40, 0.05 + 0.01 * (x - 20), 0.25)) + rng.normal(0, 0.003, n)
    return x, entropy, jsd


@pytest.mark.parametrize("seed", range(4))
def test_planted_change_points_recovered_and_labelled(seed: int) -> None:
    x, entropy, jsd = _planted(seed)
    steps = 10 * x  # report steps, detect on the sample index
    segs = detect_phases(steps, {"entropy_bits": entropy, "head_jsd_mean": jsd})
    assert [s.label for s in segs] == ["focusing", "specialisation", "stabilisation"]
    assert abs(segs[1].start - 20) <= 2 and abs(segs[2].start - 40) <= 2
    assert segs[0].start_step == 0 and segs[-1].end_step == 590
    assert segs[1].start_step == 10 * segs[1].start


def test_log_spaced_axis_detects_on_samples_reports_steps() -> None:
    x, entropy, jsd = _planted(7)
    steps = np.unique(np.round(np.geomspace(1, 5000, 60)).astype(int))
    steps = np.concatenate([steps, steps[-1] + np.arange(1, 61 - len(steps) + 1) * 100])[:60]
    segs = detect_phases(steps, {"entropy_bits": entropy, "head_jsd_mean": jsd})
    assert [s.label for s in segs] == ["focusing", "specialisation", "stabilisation"]
    assert segs[1].start_step == steps[segs[1].start]


@pytest.mark.parametrize("seed", range(3))
def test_flat_series_is_one_stabilisation_segment(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 50
    segs = detect_phases(np.arange(n), {"entropy_bits": 3 + rng.normal(0, 0.01, n),
                                        "span_tokens": 5 + rng.normal(0, 0.1, n)})
    assert len(segs) == 1 and segs[0].label == "stabilisation" and segs[0].evidence == "no series moved"
    const = detect_phases(np.arange(n), {"entropy_bits": np.full(n, 3.0)})
    assert len(const) == 1 and const[0].label == "stabilisation"


def test_smooth_decay_is_focusing_then_stabilisation_not_three_phases() -> None:
    x = np.arange(60)
    e = 2.8 + 1.4 * np.exp(-x / 8) + np.random.default_rng(0).normal(0, 0.01, 60)
    assert [s.label for s in detect_phases(x, {"entropy_bits": e})] == ["focusing", "stabilisation"]


def test_rising_entropy_is_diffusion() -> None:
    x = np.arange(30)
    segs = detect_phases(x, {"entropy_bits": 1.0 + 0.05 * x})
    assert [s.label for s in segs] == ["diffusion"]


def test_segment_delta_and_penalty_closed_forms() -> None:
    delta, se = segment_delta(np.arange(5.0), 2.0 + 3.0 * np.arange(5.0))
    assert delta == pytest.approx(12.0) and se == pytest.approx(0.0, abs=1e-12)
    z = standardise(np.column_stack([np.arange(10.0), np.ones(10)]))
    assert z[:, 1].tolist() == [0.0] * 10 and z[:, 0].std() == pytest.approx(1.0)
    # noiseless line: noise below the floor 0.1 -> pen = 3 (d + 1) 0.01 ln n
    assert bic_penalty(z) == pytest.approx(3 * 3 * 0.01 * np.log(10))


def test_phase_rows_have_contract_columns() -> None:
    x, entropy, jsd = _planted(0)
    rows = phase_rows("L0", 0, detect_phases(x, {"entropy_bits": entropy}))
    assert set(rows[0]) == {"scope", "layer", "segment", "start_step", "end_step", "label", "slopes", "evidence"}
    assert "entropy_bits" in json.loads(rows[0]["slopes"])
