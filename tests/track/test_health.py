"""Attention-health signals and detectors: closed forms, planted signals, replay = streaming."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attnlife
from attnlife.config import HealthConfig
from attnlife.errors import ConfigError
from attnlife.store.metrics_table import MetricWriter
from attnlife.track.fused_stats import fused_sequence_means
from attnlife.track.health_monitor import HealthMonitor
from attnlife.track.health_rules import HealthDetector, detect, detect_table
from attnlife.track.health_signals import (StepSignals, entropy_fall_bits, signals_from_rows,
                                           signals_from_table, uniform_entropy_bits, uniform_sink_mass)
from attnlife.track.light_tracker import light_rows

T = 64
U = uniform_entropy_bits(T)


def trace(steps: int, L: int = 2, H: int = 3, seed: int = 0, entropy=None, lse=None, sink=None,
          every: int = 1) -> list[StepSignals]:
    """Noisy healthy-looking signals: entropy drifting from uniform towards 1.5 bits, max-logit
    bound growing slowly from log T, sink mass near uniform's; `entropy(step, e)` etc. may edit
    the [L, H] arrays of a step in place."""
    g = np.random.default_rng(seed)
    out = []
    for s in range(0, steps, every):
        drift = 1.0 - min(s / 2000, 1.0)
        e = np.clip(1.5 + (U - 1.6) * drift + g.normal(0, 0.15, (L, H)), 0, U)
        x = math.log(T) + 15 * (1 - drift) + g.normal(0, 0.8, (L, H))
        k = np.clip(0.06 + g.normal(0, 0.02, (L, H)), 0, 1)
        for fn, arr in ((entropy, e), (lse, x), (sink, k)):
            if fn is not None:
                fn(s, arr)
        out.append(StepSignals(s, e, x, k, T))
    return out


def kinds(alerts):
    return [(a.kind, a.step, a.layer, a.head) for a in alerts]


# ------------------------------------------------------------------------------- signals
def test_uniform_closed_forms_equal_the_light_tier_on_uniform_attention():
    for t in (1, 2, 7, 64, 300):
        assert uniform_entropy_bits(t) == pytest.approx(np.mean(np.log2(np.arange(1, t + 1))), abs=1e-12)
    assert uniform_entropy_bits(64) == pytest.approx(4.6249, abs=1e-4)
    assert uniform_sink_mass(64) == pytest.approx(np.mean(1 / np.arange(2, 65)), abs=1e-12)
    assert math.isnan(uniform_sink_mass(1))
    q = torch.zeros(1, 2, 64, 8, dtype=torch.float64)                # zero logits: uniform rows
    means = fused_sequence_means(q, torch.randn(1, 2, 64, 8, dtype=torch.float64))
    assert float(means["entropy_bits"][0, 0]) == pytest.approx(uniform_entropy_bits(64), abs=1e-10)
    assert float(means["sink_mass"][0, 1]) == pytest.approx(uniform_sink_mass(64), abs=1e-10)
    assert float(means["lse_max_nats"][0, 0]) == pytest.approx(math.log(64), abs=1e-10)


def test_signals_from_rows_and_from_the_table_agree(tmp_path):
    g = torch.Generator().manual_seed(3)
    writer = MetricWriter(tmp_path)
    built = []
    for step in (0, 1, 3):
        means = {layer: {"entropy_bits": torch.rand(2, 3, generator=g) * 4,
                         "mean_distance_tokens": torch.rand(2, 3, generator=g),
                         "sink_mass": torch.rand(2, 3, generator=g),
                         "lse_max_nats": torch.randn(2, 3, generator=g) * 10} for layer in (0, 1)}
        rows = light_rows(means)
        writer.log_rows(step, rows)
        built.append(signals_from_rows(step, rows, T))
        expect = np.stack([means[layer]["entropy_bits"].double().mean(0).numpy() for layer in (0, 1)])
        np.testing.assert_allclose(built[-1].entropy_bits, expect, atol=1e-12)
    writer.close()
    read = list(signals_from_table(attnlife.load_run(tmp_path).metrics(), T))
    assert [s.step for s in read] == [0, 1, 3]
    for a, b in zip(built, read):
        for name in ("entropy_bits", "lse_max_nats", "sink_mass"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6)
    assert signals_from_rows(0, [], T) is None


def test_derived_signals_closed_forms():
    e = np.array([[0.2, 4.0, -1e-7], [U, 0.6, np.nan]])
    s = StepSignals(5, np.maximum(e, 0), np.zeros((2, 3)), np.array([[0.9, 0.8, 0.7], [0.1, np.nan, 0.3]]), T)
    np.testing.assert_allclose(s.collapsed_share(0.5), [2 / 3, 0.0])
    np.testing.assert_allclose(s.layer_sink_mass(), [0.8, 0.2])
    assert s.uniform_fraction()[1, 0] == pytest.approx(1.0)
    assert s.entropy_bits[0, 2] == 0.0                               # clamped at 0
    hist = [StepSignals(t, np.full((1, 1), v), np.zeros((1, 1)), np.zeros((1, 1)), T)
            for t, v in ((0, 4.0), (5, 3.0), (10, 4.5), (30, 1.0))]
    assert entropy_fall_bits(hist, 25)[0, 0] == pytest.approx(3.5)   # high 4.5 at step 10 > 30 - 25
    assert entropy_fall_bits(hist, 20)[0, 0] == pytest.approx(0.0)   # only step 30 in (10, 30]



def test_uniform_fraction_at_the_shortest_sequences():
    """H / U(T) against U(T) = log2(T!) / T: at T = 2 (U = 1/2 bit) and T = 4 (U = 1.146 bits, just
    over 1), and NaN without a warning at T = 1, where U(1) = 0 leaves nothing to select."""
    e = np.array([[0.25, 0.5]])
    for t, u in ((2, 0.5), (4, math.log2(24) / 4)):
        s = StepSignals(0, e, np.zeros((1, 2)), np.zeros((1, 2)), t)
        np.testing.assert_allclose(s.uniform_fraction(), e / u, rtol=1e-12)
    one = StepSignals(0, np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = one.uniform_fraction()
    assert got.shape == (1, 2) and np.isnan(got).all()

# ------------------------------------------------------------------------------- planted signals
def collapse_at(step0: int, layer: int, head: int, to: float = 0.1, until: int = 10**9):
    def edit(s, e):
        if step0 <= s < until:
            e[layer, head] = to
    return edit


def test_planted_collapse_raises_exactly_one_alert_at_its_step():
    rules = HealthConfig()
    alerts = detect(trace(400, entropy=collapse_at(150, 1, 2)), rules)
    assert kinds(alerts) == [("entropy_collapse", 150 + rules.patience - 1, 1, 2)]
    assert alerts[0].value == pytest.approx(0.1)


def test_noisy_healthy_trace_raises_nothing():
    for seed in range(3):
        assert detect(trace(2000, seed=seed)) == []


def test_a_head_that_recovers_and_collapses_again_alerts_twice():
    edit = collapse_at(100, 0, 0, until=200)
    again = collapse_at(300, 0, 0)
    alerts = detect(trace(400, entropy=lambda s, e: (edit(s, e), again(s, e))))
    assert kinds(alerts) == [("entropy_collapse", 102, 0, 0), ("entropy_collapse", 302, 0, 0)]


def test_a_head_hovering_at_the_floor_alerts_once():
    def hover(s, e):
        if s >= 100:
            e[1, 1] = 0.2 if (s // 5) % 2 == 0 else 1.0      # 5 reads below, 5 above, and again
    alerts = detect(trace(400, entropy=hover), HealthConfig(collapse_fall_bits=10.0))
    assert kinds(alerts) == [("entropy_collapse", 102, 1, 1)]


def test_a_fast_fall_above_the_floor_is_a_collapse():
    rules = HealthConfig(collapse_floor_bits=0.0)
    alerts = detect(trace(300, entropy=collapse_at(120, 0, 1, to=1.2)), rules)
    assert kinds(alerts) == [("entropy_collapse", 122, 0, 1)]


@pytest.mark.parametrize("sign", [1, -1])
def test_planted_logit_growth(sign):
    def grow(s, x):
        if s >= 100:
            x[0, 0] = sign * (math.log(T) + 3.0 * (s - 100))     # +3 nats per step
    rules = HealthConfig()
    alerts = detect(trace(200, lse=grow), rules)
    # |lse| = log T + 3 (s - 100) rises by >= logit_rise_nats above its window minimum (log T at
    # step 100) from step 100 + rise / 3 on, whichever its sign
    first = 100 + math.ceil(rules.logit_rise_nats / 3.0)
    assert kinds(alerts) == [("logit_growth", first + rules.patience - 1, 0, 0)]


def test_planted_sink_takeover_is_one_layer_alert():
    def sink(s, k):
        if s >= 50:
            k[1, :] = 0.95
    rules = HealthConfig()
    alerts = detect(trace(120, sink=sink), rules)
    assert kinds(alerts) == [("sink_takeover", 50 + rules.patience - 1, 1, -1)]
    assert alerts[0].value == pytest.approx(0.95)


def test_planted_dead_head_alerts_once_after_the_grace_period():
    def stay_uniform(s, e):
        e[0, 2] = U
    rules = HealthConfig()
    alerts = detect(trace(rules.dead_after_steps + 200, entropy=stay_uniform), rules)
    assert kinds(alerts) == [("dead_head", rules.dead_after_steps + rules.patience - 1, 0, 2)]
    assert alerts[0].value == pytest.approx(1.0)


def test_sparse_observations_count_patience_in_reads_and_windows_in_steps():
    rules = HealthConfig(collapse_floor_bits=0.0)                   # only the fall rule
    alerts = detect(trace(600, every=10, entropy=collapse_at(300, 1, 0, to=1.0)), rules)
    assert kinds(alerts) == [("entropy_collapse", 300 + 10 * (rules.patience - 1), 1, 0)]


# ------------------------------------------------------------------------------- forms agree
def write_light_rows(run_dir, signals) -> None:
    """The light tier's rows of `signals` as a run's metric table under `run_dir`."""
    writer = MetricWriter(run_dir)
    names = {"entropy_bits": "light_entropy_bits", "lse_max_nats": "light_lse_max_nats",
             "sink_mass": "light_sink_mass"}
    for s in signals:
        for attr, metric in names.items():
            for (layer, head), v in np.ndenumerate(getattr(s, attr)):
                writer.log(s.step, metric, float(v), layer=layer, head_index=head)
    writer.close()


def test_replaying_the_table_equals_streaming(tmp_path):
    signals = trace(300, entropy=collapse_at(80, 0, 1), seed=4)
    streamed = detect(signals)
    write_light_rows(tmp_path, signals)
    replayed = detect_table(attnlife.load_run(tmp_path).metrics(), T)
    assert [tuple(r) for r in replayed[["kind", "step", "layer", "head_index"]].itertuples(index=False)] \
        == kinds(streamed)


def test_a_resumed_monitor_alerts_as_the_run_that_never_stopped(tmp_path):
    """Resume at step 120: the head collapsed at 80 (and still collapsed) does not alert again,
    the fall that began at 118 (its streak and window span the resume) and the collapse at 200 do."""
    def edit(s, e):
        collapse_at(80, 0, 1)(s, e)
        collapse_at(118, 1, 2, to=1.2)(s, e)
        collapse_at(200, 1, 0)(s, e)
    signals = trace(300, entropy=edit, seed=5)
    rules = HealthConfig(collapse_fall_bits=2.0)
    whole = kinds(detect(signals, rules))
    assert ("entropy_collapse", 120, 1, 2) in whole and len(whole) == 3
    write_light_rows(tmp_path, signals)            # the table on disk, rows after 120 included
    monitor = HealthMonitor(rules, echo=None)
    replayed = monitor.resume(attnlife.load_run(tmp_path).metrics(), 120, T)
    assert kinds(replayed) == [a for a in whole if a[1] < 120]
    after = [a for s in signals if s.step >= 120 for a in monitor.detector.observe(s)]
    assert kinds(after) == [a for a in whole if a[1] >= 120]
    fresh = HealthDetector(rules)         # without the replay: the collapsed head again, the fall missed
    got = kinds(a for s in signals if s.step >= 120 for a in fresh.observe(s))
    assert ("entropy_collapse", 122, 0, 1) in got and not any(a[2:] == (1, 2) for a in got)


def test_rules_out_of_range_and_steps_out_of_order_are_refused():
    with pytest.raises(ConfigError, match="health.patience"):
        HealthDetector(HealthConfig(patience=0))
    with pytest.raises(ConfigError, match="health.sink_threshold"):
        HealthDetector(HealthConfig(sink_threshold=1.5))
    d = HealthDetector()
    s = trace(2)
    d.observe(s[1])
    with pytest.raises(ValueError, match="not after"):
        d.observe(s[0])


def reference_onsets(cond: list[bool], patience: int, rearm: int) -> list[int]:
    """Independent loop: fire when held `patience` times in a row and not active; re-arm after
    `rearm` misses in a row."""
    out, held, miss, active = [], 0, 0, False
    for i, c in enumerate(cond):
        held, miss = (held + 1, 0) if c else (0, miss + 1)
        if held >= patience and not active:
            active = True
            out.append(i)
        if miss >= rearm:
            active = False
    return out


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([0.1, 3.0]), min_size=1, max_size=60), patience=st.integers(1, 4),
       rearm=st.integers(1, 6))
def test_property_floor_alerts_are_the_onsets_of_held_conditions(values, patience, rearm):
    rules = HealthConfig(patience=patience, rearm_after=rearm, collapse_fall_bits=100.0,
                         logit_ceiling_nats=1e9, logit_rise_nats=1e9)
    signals = [StepSignals(i, np.array([[v]]), np.zeros((1, 1)), np.zeros((1, 1)), T)
               for i, v in enumerate(values)]
    got = [a.step for a in detect(signals, rules) if a.kind == "entropy_collapse"]
    assert got == reference_onsets([v <= rules.collapse_floor_bits for v in values], patience, rearm)


# ------------------------------------------------------------------------------- limits, exactly
def flat(steps: int, e=2.0, x=4.0, k=0.1, edit=None) -> list[StepSignals]:
    """Noise-free signals of one layer of two heads; `edit(step, e, x, k)` changes a step's arrays."""
    out = []
    for s in range(steps):
        arrays = (np.full((1, 2), e), np.full((1, 2), x), np.full((1, 2), k))
        if edit is not None:
            edit(s, *arrays)
        out.append(StepSignals(s, *arrays, 16))
    return out


def test_each_rule_fires_at_its_threshold_and_not_just_inside_it():
    r = HealthConfig(patience=2, rearm_after=3, collapse_floor_bits=0.5, collapse_fall_bits=100.0,
                     logit_ceiling_nats=8.0, logit_rise_nats=100.0, sink_threshold=0.5,
                     dead_uniform_fraction=1.0, dead_after_steps=5)
    u16 = uniform_entropy_bits(16)

    def head0(kind, value):
        def edit(s, e, x, k):
            if s >= 2:
                {"e": e, "x": x, "k": k}[kind][0, 0] = value
        return edit

    assert kinds(detect(flat(6, edit=head0("e", 0.5)), r)) == [("entropy_collapse", 3, 0, 0)]    # H = floor
    assert kinds(detect(flat(6, edit=head0("e", 0.5 + 2**-20)), r)) == []
    assert kinds(detect(flat(6, edit=head0("x", 8.0)), r)) == [("logit_growth", 3, 0, 0)]       # |lse| = ceiling
    assert kinds(detect(flat(6, edit=head0("x", -8.0)), r)) == [("logit_growth", 3, 0, 0)]
    assert kinds(detect(flat(6, edit=head0("x", 8.0 - 2**-20)), r)) == []
    assert kinds(detect(flat(6, edit=head0("k", 0.9)), r)) == [("sink_takeover", 3, 0, -1)]     # mean (0.9 + 0.1) / 2
    assert kinds(detect(flat(6, edit=head0("k", 0.9 - 2**-20)), r)) == []
    dead = flat(9, e=u16)                                                                          # H / U = 1 = fraction
    assert kinds(detect(dead, r)) == [("dead_head", 6, 0, 0), ("dead_head", 6, 0, 1)]             # from step 5, 2 reads
    assert kinds(detect(flat(9, e=u16 * (1 - 2**-20)), r)) == []


def test_patience_and_rearm_count_exactly():
    r = HealthConfig(patience=3, rearm_after=2, collapse_fall_bits=100.0)

    def run(low: set[int], steps: int = 16) -> list:
        def edit(s, e, x, k):
            if s in low:
                e[0, 1] = 0.1
        return kinds(detect(flat(steps, edit=edit), r))

    assert run({2, 3}) == []                                                    # 2 reads < patience 3
    assert run({2, 3, 4}) == [("entropy_collapse", 4, 0, 1)]                    # the 3rd read fires
    assert run({2, 3, 4, 6, 7, 8}) == [("entropy_collapse", 4, 0, 1)]           # 1 clear read: still active
    assert run({2, 3, 4, 7, 8, 9}) == [("entropy_collapse", 4, 0, 1), ("entropy_collapse", 9, 0, 1)]  # 2 clear: re-armed


def test_alert_lines_name_the_rule_with_its_thresholds_and_units():
    from attnlife.track.health_rules import Alert, alerts_frame, rule_text

    rules = HealthConfig(collapse_floor_bits=0.25, collapse_fall_bits=1.5, collapse_window=30, logit_ceiling_nats=40.0,
                         logit_rise_nats=12.0, logit_window=15, sink_threshold=0.6, dead_uniform_fraction=0.9,
                         dead_after_steps=500)
    want = {
        Alert(7, "entropy_collapse", 1, 2, 0.125): "attention health: step 7: entropy collapse at layer 1 head 2: "
            "0.12 bits (entropy <= 0.25 bits, or a fall of >= 1.5 bits within 30 steps)",
        Alert(8, "logit_growth", 0, 0, 41.25): "attention health: step 8: logit growth at layer 0 head 0: 41.2 nats "
            "(|max-logit bound| >= 40 nats, or a rise of >= 12 nats within 15 steps)",
        Alert(9, "sink_takeover", 3, -1, 0.625): "attention health: step 9: sink takeover at layer 3: 0.62 "
            "(mean attention of the layer on token 0 >= 0.6)",
        Alert(600, "dead_head", 0, 1, 0.95): "attention health: step 600: dead head at layer 0 head 1: 95.0% of uniform "
            "(entropy >= 90% of uniform at step >= 500)",
    }
    for alert, line in want.items():
        assert alert.describe(rules) == line and alert.metric == "alert_" + alert.kind
        assert line.endswith(f"({rule_text(alert.kind, rules)})")
    frame = alerts_frame(want)
    assert frame.values.tolist() == [[a.step, a.kind, a.layer, a.head, a.value] for a in want]
    assert frame[["step", "layer", "head_index", "value"]].dtypes.astype(str).tolist() == ["int64"] * 3 + ["float64"]


def test_replaying_a_table_uses_the_rules_it_is_given(tmp_path):
    signals = flat(6, edit=lambda s, e, x, k: e.__setitem__((0, 1), 0.1) if s >= 1 else None)
    write_light_rows(tmp_path, signals)
    m = attnlife.load_run(tmp_path).metrics()
    default = detect_table(m, 16)
    quick = detect_table(m, 16, HealthConfig(patience=1))
    assert default.step.tolist() == [3] and quick.step.tolist() == [1]


def test_fall_and_rise_rules_at_their_thresholds_and_window_edges():
    import warnings

    W = 5
    r = HealthConfig(patience=1, collapse_floor_bits=0.0, collapse_fall_bits=1.0, collapse_window=W,
                     logit_ceiling_nats=1000.0, logit_rise_nats=2.0, logit_window=W)

    def entropy(values):
        return lambda s, e, x, k: e.__setitem__((0, 0), values(s))

    def lse(values):
        return lambda s, e, x, k: x.__setitem__((0, 1), values(s))

    # a fall of exactly 1 bit below the high of the window fires
    assert kinds(detect(flat(3, edit=entropy(lambda s: 3.0 if s == 0 else 2.0)), r)) == [("entropy_collapse", 1, 0, 0)]
    # the high W steps back has left the window: 3.0 at step 0, 2.5 up to W - 1, 2.0 at W: a fall of 0.5
    high = entropy(lambda s: 3.0 if s == 0 else 2.5 if s < W else 2.0)
    assert kinds(detect(flat(W + 1, edit=high), r)) == []
    # the max-logit bound rising by exactly 2 nats within the window fires; its minimum is per head
    assert kinds(detect(flat(3, edit=lse(lambda s: 4.0 if s == 0 else 6.0)), r)) == [("logit_growth", 1, 0, 1)]
    low = lse(lambda s: 1.0 if s == 0 else 2.0 if s < W else 3.5)          # the low of step 0 has left
    assert kinds(detect(flat(W + 1, edit=low), r)) == []
    other_low = lambda s, e, x, k: (x.__setitem__((0, 0), 0.5), x.__setitem__((0, 1), 3.0))   # noqa: E731
    assert kinds(detect(flat(3, edit=other_low), r)) == []                 # head 0's low is not head 1's
    nan_head = lambda s, e, x, k: (e.__setitem__((0, 1), np.nan), x.__setitem__((0, 1), np.nan))  # noqa: E731
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="invalid value")         # NaN heads compare quietly
        assert kinds(detect(flat(4, edit=nan_head), r)) == []


def test_layer_means_and_falls_with_unmeasured_heads():
    nan = np.nan
    s = StepSignals(0, np.array([[nan, nan], [0.25, nan], [0.25, 2.0]]), np.zeros((3, 2)),
                    np.array([[nan, nan], [0.4, nan], [0.2, 0.6]]), 16)
    np.testing.assert_array_equal(s.layer_sink_mass(), [nan, 0.4, 0.4])   # only the measured heads count
    np.testing.assert_array_equal(s.collapsed_share(0.5), [0.0, 1.0, 0.5])
    fall = entropy_fall_bits([s], 10)                                      # one observation: no fall yet
    np.testing.assert_array_equal(fall, [[nan, nan], [0.0, nan], [0.0, 0.0]])
    later = StepSignals(1, np.array([[nan, nan], [0.0, nan], [0.0, 2.25]]), np.zeros((3, 2)), s.sink_mass, 16)
    np.testing.assert_array_equal(entropy_fall_bits([s, later], 10), [[nan, nan], [0.25, nan], [0.25, 0.0]])


def test_a_table_step_without_light_entropy_is_not_an_observation():
    import pandas as pd

    rows = [dict(step=st, split="train", layer=0, head_index=0, layer_b=-1, metric=m, value=v, stderr=np.nan)
            for st, m, v in ((0, "light_entropy_bits", 2.0), (0, "light_lse_max_nats", 3.0), (0, "light_sink_mass", 0.1),
                             (5, "light_lse_max_nats", 9.0), (10, "light_entropy_bits", 1.0),
                             (10, "light_sink_mass", 0.2))]
    rows.append(dict(step=10, split="val", layer=0, head_index=0, layer_b=-1, metric="light_entropy_bits", value=7.0,
                     stderr=np.nan))
    got = list(signals_from_table(pd.DataFrame(rows), 16))
    assert [g.step for g in got] == [0, 10]
    assert got[1].entropy_bits.tolist() == [[1.0]] and np.isnan(got[1].lse_max_nats[0, 0])
    assert got[0].lse_max_nats.tolist() == [[3.0]] and got[1].sink_mass.tolist() == [[0.2]]


def test_conditions_called_alone_compute_the_values_they_need():
    detector = HealthDetector(HealthConfig(patience=1, collapse_fall_bits=100.0))
    for s in flat(3, edit=lambda s, e, x, k: e.__setitem__((0, 1), 0.1) if s == 2 else None):
        detector.observe(s)
    alone, given = detector.conditions(), detector.conditions(detector.values())
    assert alone.keys() == given.keys() and all(np.array_equal(alone[k], given[k]) for k in alone)
    assert alone["entropy_collapse"].tolist() == [[False, True]]


def test_the_logit_window_is_its_own_when_history_is_kept_longer():
    """collapse_window 10 keeps 10 steps of history; the logit rule still reads only its 5."""
    W = 5
    r = HealthConfig(patience=1, collapse_floor_bits=0.0, collapse_fall_bits=100.0, collapse_window=2 * W,
                     logit_ceiling_nats=1000.0, logit_rise_nats=2.0, logit_window=W)
    low = lambda s, e, x, k: x.__setitem__((0, 1), 1.0 if s == 0 else 2.0 if s < W else 3.5)   # noqa: E731
    assert kinds(detect(flat(W + 1, edit=low), r)) == []
    assert kinds(detect(flat(W + 1, edit=low), HealthConfig(**{**r.to_dict(), "logit_window": W + 1}))) == \
        [("logit_growth", W, 0, 1)]


def test_signal_limits_and_messages():
    assert uniform_sink_mass(2) == 0.5 and math.isnan(uniform_sink_mass(1))      # (H_2 - 1) / 1
    with pytest.raises(ValueError, match=r"^seq_len=0 must be >= 1$"):
        uniform_entropy_bits(0)
    s = StepSignals(0, np.array([[0.5, 0.75]]), np.zeros((1, 2)), np.zeros((1, 2)), 16)
    assert s.collapsed_share(0.5).tolist() == [0.5]                              # at the floor counts
    only_entropy = [r for r in light_rows({0: {"entropy_bits": torch.tensor([[1.0, 2.0]])}})]
    assert signals_from_rows(3, only_entropy, 16).entropy_bits.tolist() == [[1.0, 2.0]]
    detector = HealthDetector(HealthConfig())
    detector.observe(s)
    with pytest.raises(ValueError, match=r"^step 0 is not after the last observed step 0$"):
        detector.observe(s)


def test_a_head_unmeasured_over_the_whole_window_has_no_fall_quietly():
    import warnings

    nan = np.nan
    hist = [StepSignals(t, np.array([[nan, v]]), np.zeros((1, 2)), np.zeros((1, 2)), 16)
            for t, v in ((0, 3.0), (1, 2.5), (2, 1.0))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # no "All-NaN slice encountered"
        fall = entropy_fall_bits(hist, 10)
    assert np.isnan(fall[0, 0]) and fall[0, 1] == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # nor through the detectors
        assert kinds(detect(hist, HealthConfig(patience=1, collapse_floor_bits=0.0, collapse_fall_bits=2.0))) == \
            [("entropy_collapse", 2, 0, 1)]


def test_an_infinite_max_logit_bound_is_logit_growth_quietly():
    import warnings

    signals = flat(3, edit=lambda s, e, x, k: x.__setitem__((0, 1), math.inf))
    with warnings.catch_warnings():
        warnings.simplefilter("error")                               # inf - inf in the rise: quiet
        assert kinds(detect(signals, HealthConfig(patience=1))) == [("logit_growth", 0, 0, 1)]


def test_table_rows_after_the_last_entropy_step_are_not_an_observation():
    import pandas as pd

    rows = [dict(step=st, split="train", layer=0, head_index=0, layer_b=-1, metric=m, value=v, stderr=np.nan)
            for st, m, v in ((0, "light_entropy_bits", 2.0), (0, "light_sink_mass", 0.1), (4, "light_entropy_bits", 1.5),
                             (4, "light_sink_mass", 0.2), (9, "light_sink_mass", 0.7), (9, "light_lse_max_nats", 5.0))]
    got = list(signals_from_table(pd.DataFrame(rows), 16))
    assert [g.step for g in got] == [0, 4]
    assert [g.sink_mass.tolist() for g in got] == [[[0.1]], [[0.2]]]
    assert all(np.isnan(g.lse_max_nats[0, 0]) for g in got)
