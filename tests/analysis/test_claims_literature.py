"""The literature claims (claims_literature) on real-shaped metrics tables: the exact row each branch
writes (measured text, verdict, reason), every limit at, below and above it, against independent
float64 references (scipy's least-squares fit, a brute-force permutation p)."""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from attnlife.analysis import claims_literature as lit
from attnlife.analysis.claim_context import FAILS, HOLDS, NA, ClaimContext

METRIC_COLUMNS = ["step", "split", "layer", "head_index", "layer_b", "metric", "value", "stderr"]
STEPS = [0, 250, 500, 750, 1000, 1500, 2000, 3000]


def _ctx(metrics: list[dict] | None = None, n_layer: int = 6, train_loss: pd.Series | None = None,
         induction: list[dict] | None = None) -> ClaimContext:
    empty = pd.DataFrame(columns=["scope", "label", "start_step", "end_step", "status"])
    return ClaimContext(
        metrics=pd.DataFrame(metrics or [], columns=METRIC_COLUMNS), split="probe", model=pd.DataFrame(),
        layers={}, val_loss=pd.Series(dtype=float),
        spectra=pd.DataFrame(columns=["model", "step", "layer", "head_index", "matrix", "stat", "value"]),
        record={"kind": "train", "config": {"model": {"n_layer": n_layer, "block_size": 64}}},
        phases=empty, cycles=empty, induction_phase=pd.DataFrame(induction or []),
        train_loss=train_loss if train_loss is not None else pd.Series(dtype=float))


def _rows(metric: str, values: dict, steps=STEPS, split: str = "probe") -> list[dict]:
    """values: (layer, head) -> one value per step."""
    return [{"step": s, "split": split, "layer": layer, "head_index": head, "layer_b": -1, "metric": metric,
             "value": float(v), "stderr": np.nan}
            for (layer, head), vals in values.items() for s, v in zip(steps, vals, strict=True)]


def _distractors(metric: str, steps=STEPS, big: float = 5.0) -> list[dict]:
    """Rows a per-head claim must not read, all with a large value: the same metric on another split,
    its layer-mean (head -1) and model (layer -1) rows, and another metric's per-head rows."""
    rows = _rows(metric, {(0, 0): [big] * len(steps), (2, 1): [big] * len(steps)}, steps, split="train")
    rows += _rows(metric, {(0, -1): [big] * len(steps), (-1, -1): [big] * len(steps)}, steps)
    rows += _rows("attn_norm", {(0, 0): [big] * len(steps), (1, 1): [big] * len(steps)}, steps)
    return rows


# --- _slope: least squares and its standard error -------------------------------------------

def test_slope_is_the_least_squares_fit_with_its_standard_error() -> None:
    rng = np.random.default_rng(3)
    x = np.arange(40, 71)
    y = 2.0 - 0.013 * x + 0.05 * rng.normal(size=len(x))
    ref = stats.linregress(x, y)
    assert lit._slope(x, y) == pytest.approx((ref.slope, ref.stderr), rel=1e-12)
    # three points is enough (one residual degree of freedom): se = |resid| sqrt(1 / Sxx)
    b, se = lit._slope(np.array([0, 1, 2]), np.array([0.0, 2.0, 1.0]))
    assert b == pytest.approx(0.5, rel=1e-15) and se == pytest.approx(math.sqrt(1.5 / 1 / 2), rel=1e-15)
    # x = [0, 1, 1] has ptp 1: still a fit (slope 1.5, residuals 0, -0.5, 0.5)
    b, se = lit._slope(np.array([0, 1, 1]), np.array([0.0, 1.0, 2.0]))
    assert b == pytest.approx(1.5, rel=1e-15) and se == pytest.approx(math.sqrt(0.5 / 1 / (2 / 3)), rel=1e-15)


def test_slope_computes_in_float64_whatever_the_input_dtype() -> None:
    """float32 steps (fractional epochs, thousands of tokens) are promoted before centring: a float32
    mean and float32 deviations would move the standard error by ~1e-6 relative."""
    x32 = np.array([100.1, 250.3, 333.7, 512.9, 700.3, 845.7, 1000.9], dtype=np.float32)
    y = 3.0 - 0.002 * x32.astype(np.float64) + 0.01 * np.sin(np.arange(7))
    ref = stats.linregress(x32.astype(np.float64), y)
    assert lit._slope(x32, y) == pytest.approx((ref.slope, ref.stderr), rel=1e-9)
    # float32 losses far from zero: a float32 mean would shift every residual (se off by ~1e-5)
    y32 = (np.float32(1000.3) - np.float32(0.5) * np.arange(7, dtype=np.float32)
           + np.float32(0.01) * np.sin(np.arange(7)).astype(np.float32))
    ref = stats.linregress(np.arange(7, dtype=np.float64), y32.astype(np.float64))
    assert lit._slope(np.arange(7), y32) == pytest.approx((ref.slope, ref.stderr), rel=1e-9)


@pytest.mark.parametrize("x, y", [([0, 1], [1.0, 0.0]),              # 2 points: no residual dof
                                  ([5, 5, 5], [1.0, 2.0, 3.0]),      # constant step: no slope
                                  ([], [])])
def test_slope_is_nan_with_infinite_error_without_a_fit(x, y) -> None:
    b, se = lit._slope(np.array(x, dtype=np.int64), np.array(y))
    assert math.isnan(b) and se == math.inf


# --- induction_loss_bump ---------------------------------------------------------------------

def _bump_loss(amplitude: float, noise: float, seed: int = 0, n: int = 600) -> pd.Series:
    """Per-step loss 3 - 0.001 s, plus `amplitude` x 0.001 extra fall per step in 300-400, plus noise,
    plus +0.05 spikes on the window edges 200, 300, 400, 500 (a window that drops an edge moves)."""
    steps = np.arange(n)
    rng = np.random.default_rng(seed)
    loss = 3.0 - 0.001 * steps - amplitude * 0.001 * np.clip(steps - 300, 0, 100) + noise * rng.normal(size=n)
    loss[[200, 300, 400, 500]] += 0.05
    return pd.Series(loss, index=steps)


def _reference_text(loss: pd.Series, a: int, b: int, w: int) -> tuple[str, list[tuple[float, float]]]:
    loss = loss.dropna()
    fits = []
    for lo, hi in ((a, b), (a - w, a), (b, b + w)):                # inside, before, after; edges included
        part = loss[(loss.index >= lo) & (loss.index <= hi)]
        r = stats.linregress(part.index.to_numpy(dtype=float), part.to_numpy())
        fits.append((r.slope, r.stderr))
    (s_in, e_in), (s_b, e_b), (s_a, e_a) = fits
    return (f"loss slope {s_in * 1e3:+.3f} mnats/step in {a}-{b} vs {s_b * 1e3:+.3f} before, "
            f"{s_a * 1e3:+.3f} after (se {e_in * 1e3:.3f}, {e_b * 1e3:.3f}, {e_a * 1e3:.3f})"), fits


def test_induction_bump_row_against_a_float64_reference() -> None:
    loss = _bump_loss(amplitude=4.0, noise=0.003)
    text, _ = _reference_text(loss, 300, 400, 100)
    got = lit.induction_loss_bump(_ctx(train_loss=loss, induction=[{"step_before": 300, "step": 400}]))
    assert got == {"measured": text, "verdict": HOLDS,
                   "reason": "steeper improvement inside the phase change than either side"}
    # the planted slopes: -5 mnats/step inside, -1 on either side
    assert text.startswith("loss slope -4.999 mnats/step in 300-400 vs -1.006 before, -1.009 after (se 0.026")
    # NaN losses are dropped, not fitted
    holed = loss.copy()
    holed.iloc[[10, 350, 450]] = np.nan
    text, _ = _reference_text(holed, 300, 400, 100)
    got = lit.induction_loss_bump(_ctx(train_loss=holed, induction=[{"step_before": 300, "step": 400}]))
    assert got["measured"] == text and got["verdict"] == HOLDS


def test_induction_bump_fails_without_a_bump_and_at_exactly_equal_slopes() -> None:
    loss = _bump_loss(amplitude=0.0, noise=0.003)
    text, _ = _reference_text(loss, 300, 400, 100)
    got = lit.induction_loss_bump(_ctx(train_loss=loss, induction=[{"step_before": 300, "step": 400}]))
    assert got == {"measured": text, "verdict": FAILS,
                   "reason": "not steeper than both neighbouring windows by 2 standard errors"}
    # an exact line (slopes -1/16 everywhere, zero residuals): the margin is 0, not > 0
    steps = np.arange(0, 600)
    line = pd.Series(3.0 - steps / 16.0, index=steps)
    got = lit.induction_loss_bump(_ctx(train_loss=line, induction=[{"step_before": 300, "step": 400}]))
    assert got["verdict"] == FAILS
    assert got["measured"] == ("loss slope -62.500 mnats/step in 300-400 vs -62.500 before, -62.500 after "
                               "(se 0.000, 0.000, 0.000)")


def test_induction_bump_margin_is_two_combined_standard_errors() -> None:
    """A bump whose margin over the nearer neighbour is between 2 and 3 combined standard errors holds."""
    a, b, w = 300, 400, 100
    for amplitude in np.arange(0.02, 1.0, 0.02):
        loss = _bump_loss(amplitude=float(amplitude), noise=0.01, seed=5)
        _, ((s_in, e_in), (s_b, e_b), (s_a, e_a)) = _reference_text(loss, a, b, w)
        margin = min((s_b - s_in) / np.hypot(e_in, e_b), (s_a - s_in) / np.hypot(e_in, e_a))
        if 2.2 < margin < 2.8:
            break
    else:
        pytest.fail("no amplitude gives a margin between 2 and 3 standard errors")
    got = lit.induction_loss_bump(_ctx(train_loss=loss, induction=[{"step_before": a, "step": b}]))
    assert got["verdict"] == HOLDS
    weaker = _bump_loss(amplitude=float(amplitude) * 0.5, noise=0.01, seed=5)   # margin below 2: fails
    _, ((s_in, e_in), (s_b, e_b), (s_a, e_a)) = _reference_text(weaker, a, b, w)
    assert min((s_b - s_in) / np.hypot(e_in, e_b), (s_a - s_in) / np.hypot(e_in, e_a)) < 2
    assert lit.induction_loss_bump(_ctx(train_loss=weaker, induction=[{"step_before": a, "step": b}]))["verdict"] == FAILS


def test_induction_bump_not_applicable_rows() -> None:
    loss = _bump_loss(amplitude=4.0, noise=0.003)
    assert lit.induction_loss_bump(_ctx(train_loss=loss)) == {
        "measured": "", "verdict": NA,
        "reason": "no induction phase change in this run (largest induction score rise too small)"}
    nan_loss = pd.Series(np.nan, index=np.arange(600))
    assert lit.induction_loss_bump(_ctx(train_loss=nan_loss, induction=[{"step_before": 300, "step": 400}])) == {
        "measured": "", "verdict": NA, "reason": "run has no per-step training loss"}
    # a one-step phase change gets a 3-step window: 2 points inside, too few for a slope and its error
    assert lit.induction_loss_bump(_ctx(train_loss=loss, induction=[{"step_before": 300, "step": 301}])) == {
        "measured": "", "verdict": NA,
        "reason": "too few training-loss points around the phase change 300-301 (window 3 steps)"}
    # a 2-step phase change: w = 3 (the minimum), 3 points inside: measured
    got = lit.induction_loss_bump(_ctx(train_loss=loss, induction=[{"step_before": 300, "step": 302}]))
    text, _ = _reference_text(loss, 300, 302, 3)
    assert got["measured"] == text
    # the loss ends right after the phase change: the after window has 2 points
    short = loss[loss.index <= 401]
    assert lit.induction_loss_bump(_ctx(train_loss=short, induction=[{"step_before": 300, "step": 400}]))["reason"] == \
        "too few training-loss points around the phase change 300-400 (window 100 steps)"
    # ... with 3 points after it, it is measured
    text, _ = _reference_text(loss[loss.index <= 402], 300, 400, 100)
    assert lit.induction_loss_bump(_ctx(train_loss=loss[loss.index <= 402],
                                        induction=[{"step_before": 300, "step": 400}]))["measured"] == text


# --- layers_stabilise_early ------------------------------------------------------------------

S10 = [0, 200, 400, 600, 800, 1000, 1500, 2000, 2500, 3000]     # 20 % of 3000 = 600, a tracked step


def test_layers_stabilise_early_row() -> None:
    layers = {
        (0, 0): [4.0, 3.5, 3.0, 2.1, 2.05, 2.0, 2.0, 2.0, 2.0, 2.0],   # d/max: 1, .75, .5, .05: stable from 600
        (0, 1): [4.0, 3.5, 3.0, 2.1, 2.05, 2.0, 2.0, 2.0, 2.0, 2.0],
        (1, 0): [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0],    # never moves: stable from the start
        (2, 0): [2.5, 2.08, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],   # raw d .5, .08; d/max 1, .16: from 400
        (3, 0): [4.0, 3.8, 3.6, 3.4, 3.2, 3.0, 2.8, 2.6, 2.4, 2.2],    # moves to the end: stable from 3000
        (4, 0): [3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0],    # stable from 200
    }
    ctx = _ctx(_rows("entropy_bits", layers, S10) + _distractors("entropy_bits", S10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # a constant layer warns nothing
        got = lit.layers_stabilise_early(ctx)
    assert got == {"measured": "stable from: L0 @ 600, L1 @ 0, L2 @ 400, L3 @ 3000, L4 @ 200 "
                               "(20 % of training = step 600)",
                   "verdict": HOLDS, "reason": "4 of 5 layers stable within the first 20 %"}   # 4 >= 0.8 x 5


def test_layers_stabilise_early_limits() -> None:
    # d exactly at tol is settled (d > tol counts as moving): tol 0.25, d = 1, 0.5, 0.25, 0
    v = {(0, 0): [3.0, 2.5, 2.25, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]}
    got = lit.layers_stabilise_early(_ctx(_rows("entropy_bits", v, S10)), tol=0.25)
    assert got["measured"].startswith("stable from: L0 @ 400 ")
    # default tol 0.1: d = 0.1 after a fall of 1 (dyadic offsets keep it exact: 2.0 + 0.125 -> 0.125 > 0.1)
    v = {(0, 0): [3.0, 2.125, 2.0625, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]}
    got = lit.layers_stabilise_early(_ctx(_rows("entropy_bits", v, S10)))
    assert got["measured"].startswith("stable from: L0 @ 400 ")           # 0.125 > 0.1 >= 0.0625
    # a layer stable from step 800 (> 600) is late; at 600 it is early (<=)
    late = {(0, 0): [4.0, 3.5, 3.0, 2.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]}
    got = lit.layers_stabilise_early(_ctx(_rows("entropy_bits", late, S10)))
    assert got == {"measured": "stable from: L0 @ 800 (20 % of training = step 600)", "verdict": FAILS,
                   "reason": "0 of 1 layers stable within the first 20 %"}
    on_time = {(0, 0): [4.0, 3.5, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]}
    got = lit.layers_stabilise_early(_ctx(_rows("entropy_bits", on_time, S10)))
    assert got["verdict"] == HOLDS and got["reason"] == "1 of 1 layers stable within the first 20 %"
    # share: 4 of 5 early holds (>= 0.8), 3 of 4 does not
    five = {(layer, 0): on_time[(0, 0)] for layer in range(4)} | {(4, 0): late[(0, 0)]}
    assert lit.layers_stabilise_early(_ctx(_rows("entropy_bits", five, S10)))["verdict"] == HOLDS
    four = {(layer, 0): on_time[(0, 0)] for layer in range(3)} | {(3, 0): late[(0, 0)]}
    got = lit.layers_stabilise_early(_ctx(_rows("entropy_bits", four, S10)))
    assert got["verdict"] == FAILS and got["reason"] == "3 of 4 layers stable within the first 20 %"
    assert lit.layers_stabilise_early(_ctx(_rows("entropy_bits", four, S10)), share=0.75)["verdict"] == HOLDS


def test_layers_stabilise_early_needs_four_steps_of_per_head_entropy() -> None:
    v = {(0, 0): [4.0, 3.0, 2.0, 2.0]}
    got = lit.layers_stabilise_early(_ctx(_rows("entropy_bits", v, [0, 100, 200, 300])))
    assert got == {"measured": "stable from: L0 @ 200 (20 % of training = step 60)", "verdict": FAILS,
                   "reason": "0 of 1 layers stable within the first 20 %"}
    three = _rows("entropy_bits", {(0, 0): [4.0, 3.0, 2.0]}, [0, 100, 200])
    assert lit.layers_stabilise_early(_ctx(three)) == {"measured": "", "verdict": NA, "reason": "only 3 tracked steps"}
    # a step where one head is missing (300) is dropped: steps 0, 100, 200, 400 remain, d = 1, .5, 0, 0
    gap = three + _rows("entropy_bits", {(0, 1): [4.0, 3.0, 2.0, 2.0]}, [0, 100, 200, 300]) + \
        _rows("entropy_bits", {(0, 0): [2.0], (0, 1): [2.0]}, [400])
    assert lit.layers_stabilise_early(_ctx(gap))["measured"] == "stable from: L0 @ 200 (20 % of training = step 80)"
    only_others = _distractors("entropy_bits", S10)
    assert lit.layers_stabilise_early(_ctx(only_others)) == {
        "measured": "", "verdict": NA, "reason": "run has no per-head entropy_bits on the attention split"}


# --- the sink claims -------------------------------------------------------------------------

def _exact_spearman_p(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided exact permutation p of Spearman's rho over all n! arrangements of y's ranks, and rho."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt((rx @ rx) * (ry @ ry))
    rho = float(rx @ ry / denom)
    perms = np.array(list(itertools.permutations(range(len(y)))))
    null = np.abs(ry[perms] @ rx) / denom
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    return float(np.mean(null >= abs(rho) - 1e-12)), rho


def test_sink_share_grows_row() -> None:
    ramp = {(2, h): [0.0] * (1 + h) + [0.5] * (7 - h) for h in range(4)}   # sink heads appear one by one
    quiet = {(layer, h): [0.05] * 8 for layer in (0, 1) for h in range(4)}
    at_threshold = {(2, 4): [0.3] * 8}                                       # exactly 0.3 is not a sink
    rows = _rows("sink_mass", {**ramp, **quiet, **at_threshold}) + _distractors("sink_mass")
    got = lit.sink_share_grows(_ctx(rows, n_layer=3))
    share = np.array([0, 1, 2, 3, 4, 4, 4, 4]) / 13
    p, rho = _exact_spearman_p(np.array(STEPS, dtype=float), share)
    assert p < 0.05
    assert got == {"measured": f"sink-head share 0% at step 0 -> 31% at step 3000 (max 31%; rho {rho:+.2f}, p {p:.2g})",
                   "verdict": HOLDS, "reason": "rises over training"}


def test_sink_share_that_does_not_rise() -> None:
    quiet = {(layer, h): [0.05] * 8 for layer in (0, 1, 2) for h in range(2)}
    # one sink head throughout: constant share, no rank correlation
    got = lit.sink_share_grows(_ctx(_rows("sink_mass", {**quiet, (2, 2): [0.5] * 8}), n_layer=3))
    assert got == {"measured": "sink-head share 14% at step 0 -> 14% at step 3000 (max 14%; constant)",
                   "verdict": FAILS, "reason": "does not rise"}
    # rising at the end but not with step overall (rho > 0, p >= 0.05)
    wobble = {(2, 2): [0.5, 0.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.5], (2, 3): [0.0] * 7 + [0.5]}
    got = lit.sink_share_grows(_ctx(_rows("sink_mass", {**quiet, **wobble}), n_layer=3))
    share = np.array([1, 0, 1, 0, 0, 1, 0, 2]) / 8
    p, rho = _exact_spearman_p(np.array(STEPS, dtype=float), share)
    assert rho > 0 and p >= 0.05
    assert got == {"measured": f"sink-head share 12% at step 0 -> 25% at step 3000 (max 25%; rho {rho:+.2f}, p {p:.2g})",
                   "verdict": FAILS, "reason": "does not rise"}
    # rising significantly with step (rho 0.7, p < 0.01), but back to where it started at the last step
    counts = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1]
    steps = [100 * i for i in range(len(counts))]
    back = {(2, h): [0.5 if h < c else 0.0 for c in counts] for h in range(12)}
    got = lit.sink_share_grows(_ctx(_rows("sink_mass", back, steps), n_layer=3))
    assert got["measured"].startswith("sink-head share 8% at step 0 -> 8% at step 1300 (max 100%; rho +0.")
    assert (got["verdict"], got["reason"]) == (FAILS, "does not rise")
    higher = {(2, h): [0.5 if h < c else 0.0 for c in counts[:-1] + [2]] for h in range(12)}
    assert lit.sink_share_grows(_ctx(_rows("sink_mass", higher, steps), n_layer=3))["verdict"] == HOLDS  # ends 1 higher
    # p exactly 0.05 (36 of the 720 arrangements) is not below 0.05: counts 0, 0, 0, 1, 3, 2 of 3 heads
    counts = [0, 0, 0, 1, 3, 2]
    steps = [0, 100, 200, 300, 400, 500]
    edge = {(2, h): [0.5 if h < c else 0.0 for c in counts] for h in range(3)}
    p, rho = _exact_spearman_p(np.array(steps, dtype=float), np.array(counts, dtype=float))
    assert p == 0.05
    assert lit.sink_share_grows(_ctx(_rows("sink_mass", edge, steps), n_layer=3)) == {
        "measured": f"sink-head share 0% at step 0 -> 67% at step 500 (max 100%; rho {rho:+.2f}, p 0.05)",
        "verdict": FAILS, "reason": "does not rise"}
    # no sink head anywhere
    got = lit.sink_share_grows(_ctx(_rows("sink_mass", quiet) + _distractors("sink_mass"), n_layer=3))
    assert got == {"measured": "sink-head share 0% at step 0 -> 0% at step 3000 (max 0%; constant)",
                   "verdict": FAILS, "reason": "no sink head forms"}
    assert lit.sink_share_grows(_ctx(_distractors("sink_mass"), n_layer=3)) == {
        "measured": "", "verdict": NA, "reason": "run has no per-head sink_mass (run `attnlife track RUN`)"}


def test_no_sinks_in_first_two_layers() -> None:
    quiet = {(layer, h): [0.05] * 8 for layer in (0, 1, 2) for h in range(2)}
    # layer 0 head 1 sits exactly at the threshold from step 500: the worst, but not a sink
    edge = {(0, 1): [0.05, 0.05, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], (2, 0): [0.9] * 8}
    got = lit.no_sinks_in_first_two_layers(_ctx(_rows("sink_mass", {**quiet, **edge}) + _distractors("sink_mass"),
                                                 n_layer=3))
    assert got == {"measured": "max sink_mass in layers 0-1: 0.300 (L0H1 at step 500); 0 head-checkpoints above 0.3",
                   "verdict": HOLDS, "reason": "no sink head in layers 0-1"}
    # a sink head in layer 1 counts (layers 0 AND 1)
    sink = {(1, 0): [0.05, 0.05, 0.05, 0.05, 0.05, 0.4, 0.45, 0.4]}
    got = lit.no_sinks_in_first_two_layers(_ctx(_rows("sink_mass", {**quiet, **sink}), n_layer=3))
    assert got == {"measured": "max sink_mass in layers 0-1: 0.450 (L1H0 at step 2000); 3 head-checkpoints above 0.3",
                   "verdict": FAILS, "reason": "sink heads in layers 0-1"}
    assert lit.no_sinks_in_first_two_layers(_ctx(_distractors("sink_mass"), n_layer=3)) == {
        "measured": "", "verdict": NA, "reason": "run has no per-head sink_mass (run `attnlife track RUN`)"}
    assert lit.no_sinks_in_first_two_layers(_ctx(_rows("sink_mass", quiet), n_layer=2)) == {
        "measured": "", "verdict": NA,
        "reason": "claim contrasts layers 0-1 with later ones; this model has 2 layers"}
