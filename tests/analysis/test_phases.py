"""Phase detection on planted synthetic trajectories."""
from __future__ import annotations

import json

import numpy as np
import pytest

from attnlife.analysis.phases import (bic_penalty, change_points, detect_phases, label_segment, noise_sigma, phase_rows,
                                     segment_delta, standardise)


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


def _from_second_differences(d2: list[float]) -> np.ndarray:
    """A series z with z_0 = z_1 = 0 whose second differences are d2."""
    z = [0.0, 0.0]
    for d in d2:
        z.append(d + 2 * z[-1] - z[-2])
    return np.array(z)


def test_noise_sigma_and_penalty_closed_forms_above_the_floor() -> None:
    z = np.column_stack([_from_second_differences([1, 2, 4, 7, 11]), np.zeros(7)])
    # column 0: median of d2 = 4, |d2 - 4| = 3 2 0 3 7, MAD = 3; column 1: MAD 0
    np.testing.assert_allclose(noise_sigma(z), [1.4826 * 3 / np.sqrt(6.0), 0.0], rtol=1e-15)
    sigma2 = ((1.4826 * 3 / np.sqrt(6.0)) ** 2 + 0.1**2) / 2       # column 1 is floored at 0.1
    assert bic_penalty(z) == pytest.approx(3 * 3 * sigma2 * np.log(7), rel=1e-12)
    assert bic_penalty(z, noise_floor=2.0) == pytest.approx(3 * 3 * 4.0 * np.log(7), rel=1e-12)
    assert noise_sigma(np.ones((2, 3))).tolist() == [0.0, 0.0, 0.0]   # fewer than 3 samples
    # ln n is taken of at least 2 samples
    assert bic_penalty(np.zeros((2, 1))) == pytest.approx(3 * 2 * 0.01 * np.log(2))
    assert bic_penalty(np.zeros((1, 2))) == pytest.approx(3 * 3 * 0.01 * np.log(2))


def test_standardise_constant_column_without_invalid_arithmetic() -> None:
    with np.errstate(all="raise"):                                    # no 0 / 0 behind the zeros
        z = standardise(np.column_stack([np.full(5, 2.0), np.arange(5.0)]))
    assert z[:, 0].tolist() == [0.0] * 5
    np.testing.assert_allclose(z[:, 1], (np.arange(5.0) - 2) / np.sqrt(2.0))
    z3 = standardise(np.arange(12.0).reshape(4, 3) ** 2)              # per column, not per row
    np.testing.assert_allclose(z3.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z3.std(axis=0), 1.0)


def test_change_points_limits_and_the_penalty() -> None:
    x = np.arange(60.0)
    kink = np.where(x < 20, 4.0 - 0.1 * x, 2.0)                       # noiseless: the break is exact
    assert change_points(kink) == [21, 60]                            # every index is a candidate (jump 1)
    v = np.r_[3.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    assert change_points(v) == [3, 6]                                 # n = 2 min_size: can be cut
    assert change_points(v[1:]) == [5]                                # n < 2 min_size: one segment
    assert change_points(v[1:3]) == [2] and change_points(v[:1]) == [1]  # too short for PELT (it refuses)
    assert change_points(v, min_size=2) == [3, 6]
    assert change_points(np.full(10, 7.0)) == [10]                    # constant: nothing to cut
    noisy = 4 - 0.02 * x + np.random.default_rng(0).normal(0, 0.001, 60)
    assert change_points(noisy) == [60]                               # BIC: a line is one segment
    assert len(change_points(noisy, penalty=1e-9)) > 5                # a given penalty is used


def test_segment_delta_small_samples() -> None:
    assert segment_delta(np.array([3.0]), np.array([1.0])) == (0.0, np.inf)
    delta, se = segment_delta(np.array([1.0, 3.0]), np.array([5.0, 2.0]))   # two points: exact, no error
    assert delta == pytest.approx(-3.0) and se == np.inf
    x, y = np.arange(4.0), np.array([0.0, 1.0, 1.0, 3.0])
    # b = 0.9, residuals 0.1 0.2 -0.7 0.4 -> sum 0.7, se_b = sqrt(0.7 / 2 / 5), width 3
    delta, se = segment_delta(x, y)
    assert delta == pytest.approx(2.7) and se == pytest.approx(3 * np.sqrt(0.07), rel=1e-12)
    _, se3 = segment_delta(np.arange(3.0), np.array([0.0, 1.0, 1.0]))
    assert se3 == pytest.approx(2 * np.sqrt((1 / 36 + 4 / 36 + 1 / 36) / 1 / 2), rel=1e-12)


def test_label_segment_thresholds_at_below_and_above() -> None:
    rng = {"entropy_bits": 1.0}
    # moved needs |delta| >= tol * range AND |delta| >= 3 se; both limits are inclusive
    assert label_segment({"entropy_bits": (-0.25, 0.0)}, rng, tol=0.25)[0] == "focusing"
    assert label_segment({"entropy_bits": (-0.2499, 0.0)}, rng, tol=0.25)[0] == "stabilisation"
    assert label_segment({"entropy_bits": (-0.375, 0.125)}, rng, tol=0.25)[0] == "focusing"      # = 3 se
    assert label_segment({"entropy_bits": (-0.375, 0.12501)}, rng, tol=0.25)[0] == "stabilisation"
    assert label_segment({"entropy_bits": (0.5, 0.0)}, rng)[0] == "diffusion"
    assert label_segment({"entropy_bits": (0.0, 0.0)}, {"entropy_bits": 0.0}) == ("stabilisation", [])
    assert label_segment({"entropy_bits": (1.0, 0.0)}, {}) == ("stabilisation", [])              # no range


def test_label_segment_kinds_evidence_and_the_winner() -> None:
    label, evidence = label_segment({"entropy_bits@L1": (-0.5, 0.0), "head_jsd_mean": (0.8, 0.0)},
                                    {"entropy_bits@L1": 1.0, "head_jsd_mean": 1.0})
    assert label == "specialisation"                                  # the larger |delta| / range wins
    assert evidence == ["entropy_bits@L1 down 0.50 of range", "head_jsd_mean up 0.80 of range"]
    assert label_segment({"entropy_bits": (-0.9, 0.0), "xlayer_jsd": (0.3, 0.0)},
                         {"entropy_bits": 1.0, "xlayer_jsd": 1.0})[0] == "focusing"
    # span alone moved: transition; a named kind beats transition even when smaller
    assert label_segment({"span_tokens": (0.9, 0.0)}, {"span_tokens": 1.0}) == \
        ("transition", ["span_tokens up 0.90 of range"])
    assert label_segment({"span_tokens": (0.9, 0.0), "entropy_bits": (-0.3, 0.0)},
                         {"span_tokens": 1.0, "entropy_bits": 1.0})[0] == "focusing"
    # head diversity falling is no specialisation
    assert label_segment({"head_entropy_var": (-0.5, 0.0)}, {"head_entropy_var": 1.0})[0] == "transition"
    # relative to the range: 0.5 of a range of 2 is 0.25, below tol 0.3
    assert label_segment({"entropy_bits": (-0.5, 0.0)}, {"entropy_bits": 2.0}, tol=0.3)[0] == "stabilisation"


def test_detect_phases_merges_every_run_of_one_label() -> None:
    x = np.arange(60.0)
    noisy = 4 - 0.02 * x + np.random.default_rng(0).normal(0, 0.001, 60)
    (seg,) = detect_phases(x, {"entropy_bits": noisy}, penalty=1e-9)  # cut in > 5 pieces, all focusing
    assert (seg.label, seg.start, seg.end, seg.start_step, seg.end_step) == ("focusing", 0, 59, 0, 59)
    fitted = np.polyfit(x, noisy, 1)[0] * 59
    assert json.loads(phase_rows("model", -1, [seg])[0]["slopes"]) == {"entropy_bits": round(fitted, 6)}


def test_detect_phases_drops_unusable_series() -> None:
    x = np.arange(30.0)
    good = {"entropy_bits": 1.0 + 0.05 * x}
    want = [(s.label, s.start, s.end) for s in detect_phases(x, good)]
    with_bad = dict(good, span_tokens=np.where(x == 3, np.nan, x), head_jsd_mean=np.ones(29))
    assert [(s.label, s.start, s.end) for s in detect_phases(x, with_bad)] == want == [("diffusion", 0, 29)]
    assert detect_phases(x, {"entropy_bits": np.full(30, np.nan)}) == []
    assert detect_phases(np.array([]), {"entropy_bits": np.array([])}) == []
    assert detect_phases(x, {}) == []


def test_phase_rows_number_segments_and_sort_slopes() -> None:
    x, entropy, jsd = _planted(1)
    segs = detect_phases(10 * x, {"head_jsd_mean": jsd, "entropy_bits": entropy})
    rows = phase_rows("L0", 0, segs)
    assert [r["segment"] for r in rows] == list(range(len(segs))) and len(rows) == 3
    assert [(r["scope"], r["layer"]) for r in rows] == [("L0", 0)] * 3
    assert [(r["start_step"], r["end_step"], r["label"], r["evidence"]) for r in rows] == \
        [(s.start_step, s.end_step, s.label, s.evidence) for s in segs]
    assert rows[0]["slopes"].index('"entropy_bits"') < rows[0]["slopes"].index('"head_jsd_mean"')
    assert rows[1]["start_step"] == rows[0]["end_step"] + 10           # segments tile the samples
    d, _ = segment_delta(np.arange(segs[0].start, segs[0].end + 1.0), entropy[segs[0].start:segs[0].end + 1])
    assert json.loads(rows[0]["slopes"])["entropy_bits"] == round(d, 6)
    assert rows[0]["evidence"].startswith("entropy_bits down ") and rows[2]["evidence"] == "no series moved"


def test_penalty_min_size_and_tol_reach_the_segmentation() -> None:
    x, entropy, jsd = _planted(2)
    series = {"entropy_bits": entropy, "head_jsd_mean": jsd}
    assert len(detect_phases(x, series)) == 3
    (whole,) = detect_phases(x, series, penalty=1e6)                  # a huge penalty: no change point
    assert (whole.start, whole.end) == (0, 59)
    assert [s.label for s in detect_phases(x, series, tol=5.0)] == ["stabilisation"]  # no move is 5 ranges
    noisy = 4 - 0.02 * np.arange(40.0) + np.random.default_rng(3).normal(0, 0.05, 40)
    for size in (3, 5):
        ends = change_points(noisy, min_size=size, penalty=1e-9)
        assert min(np.diff([0] + ends)) >= size and len(ends) > 3
    assert min(np.diff([0] + change_points(noisy, min_size=5, penalty=1e-9))) > 3     # not clinear's own 3
    v = np.array([0.0, 2.0, 3.0, 2.0, 0.0, 1.0, 1.0, 1.0, 0.0, 2.0, 0.0, 3.0])
    assert [s.start for s in detect_phases(np.arange(12.0), {"entropy_bits": v})] == [0, 3]  # default min_size 3
    assert [s.start for s in detect_phases(np.arange(12.0), {"entropy_bits": v}, min_size=4)] == [0]


def test_label_rules_at_zero_change_and_for_layer_names() -> None:
    # tol 0: a zero change counts as moved; zero is "up", not "down" (only rel < 0 is down)
    assert label_segment({"entropy_bits": (0.0, 0.0)}, {"entropy_bits": 1.0}, tol=0.0) == \
        ("diffusion", ["entropy_bits up 0.00 of range"])
    assert label_segment({"head_jsd_mean": (0.0, 0.0)}, {"head_jsd_mean": 1.0}, tol=0.0)[0] == "transition"
    assert label_segment({"entropy_bits@L1": (-0.5, 0.0)}, {"entropy_bits@L1": 1.0})[0] == "focusing"
    assert label_segment({"head_jsd_mean@L0": (0.5, 0.0)}, {"head_jsd_mean@L0": 1.0})[0] == "specialisation"
    # the relative change is delta / range: 0.8 of a range of 2 is 0.4
    assert label_segment({"entropy_bits": (-0.8, 0.0)}, {"entropy_bits": 2.0}) == \
        ("focusing", ["entropy_bits down 0.40 of range"])
    # a kind's strength is its strongest series, whatever the order: specialisation 0.8 beats focusing 0.5
    deltas = {"head_jsd_mean": (0.8, 0.0), "xlayer_jsd": (0.3, 0.0), "entropy_bits": (-0.5, 0.0)}
    assert label_segment(deltas, dict.fromkeys(deltas, 1.0))[0] == "specialisation"


def test_evidence_of_several_series_is_joined_and_floats_are_accepted() -> None:
    x = np.arange(30.0)
    (seg,) = detect_phases(x, {"entropy_bits": 4.0 - 0.05 * x, "head_jsd_mean": 0.1 + 0.01 * x})
    assert seg.evidence == "entropy_bits down 1.00 of range; head_jsd_mean up 1.00 of range"
    # float16 / float32 inputs are computed in float64: the same result as float64 inputs
    _, entropy, jsd = _planted(5)
    for dtype in (np.float16, np.float32):
        e, j = entropy.astype(dtype).astype(np.float64), jsd.astype(dtype).astype(np.float64)
        want = detect_phases(np.arange(60), {"entropy_bits": e, "head_jsd_mean": j})
        got = detect_phases(np.arange(60), {"entropy_bits": entropy.astype(dtype), "head_jsd_mean": jsd.astype(dtype)})
        assert got == want
        xs, ys = (np.arange(5) / 3).astype(dtype), (np.arange(5) ** 2 / 7).astype(dtype)
        assert segment_delta(xs, ys) == segment_delta(xs.astype(float), ys.astype(float))
        np.testing.assert_array_equal(standardise(e[:, None].astype(dtype)), standardise(e[:, None].astype(dtype).astype(float)))
