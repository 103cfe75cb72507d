"""Attention-health analysis: loss events on planted loss curves, alerts per head, leads."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from attnlife.analysis.health import (LossEventRules, alert_summary, alert_table, alerts_before_events,
                                      health_lines, health_note, health_tables, loss_events, training_loss)


def healthy_loss(n: int = 400, seed: int = 0) -> pd.Series:
    """ln 65 falling smoothly to ~1.8 nats with per-step noise of 0.05 nats."""
    g = np.random.default_rng(seed)
    s = np.arange(n)
    return pd.Series(1.8 + (math.log(65) - 1.8) * np.exp(-s / 60) + g.normal(0, 0.05, n), index=s)


def test_a_healthy_curve_has_no_loss_event():
    for seed in range(5):
        assert loss_events(healthy_loss(seed=seed)).empty


def test_planted_spike_divergence_and_plateau_at_their_steps():
    loss = healthy_loss()
    loss[150] += 1.0                                        # one update jumps by 1 nat
    events = loss_events(loss)
    assert events[["step", "event"]].values.tolist() == [[150, "spike"]]
    loss[200:] = math.log(65) + 1.0                         # back above where it started
    got = loss_events(loss)
    assert got[["step", "event"]].values.tolist()[:3] == [[150, "spike"], [200, "spike"], [205, "divergence"]]
    stall = healthy_loss()
    stall[30:] = 3.4 + np.random.default_rng(1).normal(0, 0.05, len(stall) - 30)   # stuck at the unigram level
    events = loss_events(stall)
    assert events.event.tolist() == ["plateau"]
    # the plateau rule: |L~_{s-50} - L~_s| < 0.15 first holds once the 50-step window starts in the stall
    assert 75 <= int(events.step.iloc[0]) <= 90
    assert loss_events(pd.Series([4.0, float("nan"), 3.0], index=[0, 1, 2])).event.tolist() == ["divergence"]


def test_plateau_level_is_relative_to_the_first_loss():
    flat = pd.Series(np.full(200, 2.0), index=np.arange(200))
    flat[0] = math.log(65)
    assert loss_events(flat).empty                          # stalled, but far below 0.75 x ln 65
    assert loss_events(flat, LossEventRules(plateau_level=0.4)).event.tolist() == ["plateau"]


def metric_table() -> pd.DataFrame:
    rows = [dict(step=s, split="train", layer=-1, head_index=-1, layer_b=-1, metric="loss", value=v, stderr=np.nan)
            for s, v in healthy_loss(120).items()]
    rows[100]["value"] += 2.0                               # spike at 100
    alerts = [(10, "alert_entropy_collapse", 0, 1, 0.2), (12, "alert_entropy_collapse", 1, 0, 0.1),
              (60, "alert_entropy_collapse", 0, 1, 0.3), (20, "alert_sink_takeover", 2, -1, 0.9),
              (110, "alert_logit_growth", 0, 0, 40.0)]
    rows += [dict(step=s, split="train", layer=l, head_index=h, layer_b=-1, metric=m, value=v, stderr=np.nan)
             for s, m, l, h, v in alerts]
    return pd.DataFrame(rows)


def test_alert_summary_and_leads_from_a_metric_table():
    m = metric_table()
    alerts = alert_table(m)
    assert alerts.kind.tolist() == ["entropy_collapse", "entropy_collapse", "sink_takeover",
                                    "entropy_collapse", "logit_growth"]
    summary = alert_summary(alerts)
    row = summary[(summary.kind == "entropy_collapse") & (summary.layer == 0)].iloc[0]
    assert (row.first_step, row.last_step, row.alerts, row.first_value) == (10, 60, 2, 0.2)
    events = loss_events(training_loss(m))
    assert events[["step", "event"]].values.tolist() == [[100, "spike"]]
    leads = alerts_before_events(alerts, events).set_index("alert_kind")
    assert leads.loc["entropy_collapse", "lead_steps"] == 90 and leads.loc["entropy_collapse", "units"] == 2
    assert leads.loc["sink_takeover", "first_alert_step"] == 20
    assert math.isnan(leads.loc["logit_growth", "first_alert_step"])      # came after the spike
    note = health_note(health_tables(m))
    assert note["alerts"] == {"entropy_collapse": 3, "logit_growth": 1, "sink_takeover": 1}
    assert note["earliest_alert_before"] == [{"event": "spike", "event_step": 100,
                                              "alert_kind": "entropy_collapse", "lead_steps": 90}]
    lines = health_lines(note)
    assert lines[1] == "    spike at step 100: preceded by entropy collapse 90 steps earlier"


def test_no_alerts_and_no_loss_give_empty_tables():
    tables = health_tables(pd.DataFrame(columns=["step", "split", "layer", "head_index", "layer_b", "metric",
                                                 "value", "stderr"]))
    assert all(t.empty for t in tables.values())
    assert health_lines(health_note(tables)) == ["  attention health: no alerts"]


@pytest.mark.parametrize("window", [20, 50])
def test_plateau_window_is_in_steps_even_with_gaps(window):
    steps = np.arange(0, 400, 2)                                          # logged every other step
    loss = pd.Series(np.where(steps < 40, 4.17 - steps * 0.02, 3.4), index=steps)
    (step,) = loss_events(loss, LossEventRules(plateau_window=window)).step
    assert step >= 40 + window - 10


def _events(values, rules) -> list:
    return loss_events(pd.Series(values, index=np.arange(len(values))), rules)[["step", "event"]].values.tolist()


def test_loss_event_thresholds_at_and_beside_their_limits():
    """Spike: loss >= median of >= 3 earlier losses + spike_nats; divergence: smoothed loss >= L0 +
    spike_nats; plateau: |L~_{s-W} - L~_s| < drop and L~_s >= level x L0, from s = first step + W."""
    r = LossEventRules(smooth=3, spike_nats=0.5, plateau_window=4, plateau_drop_nats=0.25, plateau_level=0.5)
    assert _events([4.0, 4.0, 4.0, 4.5], r) == [[3, "spike"]]                  # exactly + 0.5: a spike
    assert _events([4.0, 4.0, 4.0, 4.4375], r) == []                            # just below
    assert _events([4.0, 4.0, 4.5], r) == []                                    # 2 earlier losses: too few
    assert _events([4.0, 5.0, 5.0], r) == [[1, "divergence"]]                   # median(4, 5) = 4.5 = L0 + 0.5
    assert _events([4.0, 4.875, 4.875], r) == [[2, "divergence"]]              # 4.4375 < 4.5, then 4.875
    assert _events([4.0] * 5, r) == [[4, "plateau"]]                            # from step 0 + W on
    assert _events([4.0] * 4, r) == []
    drop = [4.0, 4.0, 3.75, 3.75, 3.75, 3.75, 3.75, 3.75]                      # L~ = 4, 4, 4, 3.75, ...
    assert _events(drop, r) == [[7, "plateau"]]                                 # a change of exactly 0.25 still moves
    level = [4.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]                                 # L~ = 4, 3, 2, 2, ...
    assert _events(level, r) == [[6, "plateau"]]                                # 2 = 0.5 x L0: stalled at the level
    assert _events(level, LossEventRules(smooth=3, spike_nats=0.5, plateau_window=4, plateau_drop_nats=0.25,
                                         plateau_level=0.5 + 1 / 64)) == []


def test_health_lines_word_for_word():
    m = metric_table()
    assert health_lines(health_note(health_tables(m))) == [
        "  attention health: entropy collapse 3 (2 units), logit growth 1 (1 units), sink takeover 1 (1 units); "
        "first: entropy collapse at step 10 (L0 H1)",
        "    spike at step 100: preceded by entropy collapse 90 steps earlier"]
    late = m[~m.metric.isin(["alert_entropy_collapse", "alert_logit_growth"])].copy()
    late.loc[late.metric == "alert_sink_takeover", "step"] = 110           # only after the spike, a layer
    assert health_lines(health_note(health_tables(late))) == [
        "  attention health: sink takeover 1 (1 units); first: sink takeover at step 110 (L2)",
        "    spike at step 100: no alert before it"]
    quiet = m[~m.metric.str.startswith("alert_")]
    assert health_lines(health_note(health_tables(quiet))) == ["  attention health: no alerts (loss events: spike at 100)"]
    note = health_note(health_tables(m))
    assert note["units"] == {"entropy_collapse": 2, "logit_growth": 1, "sink_takeover": 1}
    assert note["first_alert"] == {"kind": "entropy_collapse", "step": 10, "layer": 0, "head_index": 1}
    assert note["loss_events"] == [{"step": 100, "event": "spike"}]
