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


# ------------------------------------------------------------------------------- schema, order, references
def table(*rows) -> pd.DataFrame:
    """A metric table of (step, metric, layer, head_index, value[, split]) rows."""
    return pd.DataFrame([dict(step=r[0], split=r[5] if len(r) > 5 else "train", layer=r[2], head_index=r[3], layer_b=-1,
                              metric=r[1], value=r[4], stderr=np.nan) for r in rows])


ALERTS = table((3, "alert_entropy_collapse", 1, 2, 0.25), (3, "alert_entropy_collapse", 0, 2, 0.5),
               (1, "alert_logit_growth", 1, 0, 30.0), (5, "alert_dead_head", 0, 0, 0.97),
               (9, "alert_entropy_collapse", 1, 2, 0.125), (2, "alert_sink_takeover", 0, -1, 0.8),
               (4, "loss", -1, -1, 3.0))


def test_alert_table_columns_dtypes_and_order():
    got = alert_table(ALERTS)
    assert got.columns.tolist() == ["step", "kind", "layer", "head_index", "value"]
    assert got.index.tolist() == list(range(6))
    assert [str(got[c].dtype) for c in ("step", "layer", "head_index", "value")] == ["int64"] * 3 + ["float64"]
    assert got.values.tolist() == [[1, "logit_growth", 1, 0, 30.0], [2, "sink_takeover", 0, -1, 0.8],
                                   [3, "entropy_collapse", 0, 2, 0.5], [3, "entropy_collapse", 1, 2, 0.25],
                                   [5, "dead_head", 0, 0, 0.97], [9, "entropy_collapse", 1, 2, 0.125]]
    floats = ALERTS.astype({"step": "float64", "layer": "float64", "head_index": "float64"})
    assert [str(alert_table(floats)[c].dtype) for c in ("step", "layer", "head_index")] == ["int64"] * 3


def test_alert_summary_is_sorted_by_kind_and_unit_with_the_first_value():
    got = alert_summary(alert_table(ALERTS))
    assert got.columns.tolist() == ["kind", "layer", "head_index", "first_step", "last_step", "alerts", "first_value"]
    assert got.values.tolist() == [["dead_head", 0, 0, 5, 5, 1, 0.97], ["entropy_collapse", 0, 2, 3, 3, 1, 0.5],
                                   ["entropy_collapse", 1, 2, 3, 9, 2, 0.25], ["logit_growth", 1, 0, 1, 1, 1, 30.0],
                                   ["sink_takeover", 0, -1, 2, 2, 1, 0.8]]


def test_empty_health_tables_keep_their_columns_and_round_trip_on_disk(tmp_path):
    from attnlife.store.analysis_tables import read_analysis_table, write_analysis_table

    empty = alert_summary(alert_table(ALERTS[ALERTS.metric == "loss"]))
    assert empty.empty and empty.columns.tolist() == ["kind", "layer", "head_index", "first_step", "last_step",
                                                      "alerts", "first_value"]
    none = loss_events(pd.Series([], dtype=float))
    assert none.empty and none.columns.tolist() == ["step", "event", "loss"]
    tables = health_tables(metric_table())
    for name, frame in {**tables, "health_alerts": empty, "health_events": none}.items():
        write_analysis_table(tmp_path, name, frame)
        back = read_analysis_table(tmp_path, name)
        assert back.columns.tolist() == frame.columns.tolist() and len(back) == len(frame)
    back = read_analysis_table(tmp_path, "health_leads")
    pd.testing.assert_frame_equal(back, tables["health_leads"], check_dtype=False)


def test_loss_events_columns_index_and_float_losses():
    r = LossEventRules(smooth=3, spike_nats=0.5, plateau_window=50)
    got = loss_events(pd.Series([4, 4, 4, 5, 4, 4, 4, 5], index=np.arange(10, 18)), r)
    assert got.columns.tolist() == ["step", "event", "loss"] and got.index.tolist() == [0, 1]
    assert got.values.tolist() == [[13, "spike", 5.0], [17, "spike", 5.0]]
    assert str(got["loss"].dtype) == "float64"                 # integer losses come out as float64
    shuffled = pd.Series([4.0, 4.0, 5.0, 4.0], index=[2, 0, 1, 3])            # read in step order
    assert loss_events(shuffled, r).values.tolist() == [[1, "divergence", 5.0]]  # median(4, 5) = L0 + 0.5


def test_a_non_finite_first_loss_is_a_divergence_at_step_0():
    assert _events([math.inf, 4.0, 4.0, 4.0], LossEventRules(smooth=3)) == [[0, "divergence"]]
    assert _events([math.nan, 4.0, 4.0, 4.0], LossEventRules(smooth=3)) == [[0, "divergence"]]


def test_a_spike_needs_three_earlier_losses_not_a_full_smoothing_window():
    r = LossEventRules(smooth=5, spike_nats=0.5)
    assert _events([4.0, 4.0, 4.0, 4.5], r) == [[3, "spike"]]
    assert _events([4.0, 4.0, 4.5], r) == []


def test_the_plateau_compares_with_step_s_minus_w_only_where_it_was_logged():
    r = LossEventRules(smooth=3, plateau_window=1, plateau_drop_nats=0.25, plateau_level=0.5)
    # steps 0, 2, 3: at 2, step 1 was not logged: the first judged step is 3 (against 2)
    assert loss_events(pd.Series([4.0, 4.0, 4.0], index=[0, 2, 3]), r)[["step", "event"]].values.tolist() == \
        [[3, "plateau"]]
    assert loss_events(pd.Series([4.0, 4.0], index=[0, 1]), r)[["step", "event"]].values.tolist() == [[1, "plateau"]]


def test_loss_event_rules_refuse_windows_too_short_to_judge():
    assert (LossEventRules(smooth=3, plateau_window=1).smooth, LossEventRules(plateau_window=1).plateau_window) == (3, 1)
    with pytest.raises(ValueError, match=r"^LossEventRules.smooth=2 must be >= 3 \(a spike is judged against the "
                                         r"median of >= 3 earlier losses\)$"):
        LossEventRules(smooth=2)
    with pytest.raises(ValueError, match=r"^LossEventRules.plateau_window=0 must be >= 1 \(steps\)$"):
        LossEventRules(plateau_window=0)


def test_loss_events_are_quiet_whatever_the_thresholds():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _events([0.0, 0.0, 0.0], LossEventRules(plateau_window=1, plateau_level=np.float64(np.inf))) == []
        assert _events([4.0, math.nan, math.inf, 4.0, 4.0], LossEventRules(smooth=3)) == [[1, "divergence"]]


def test_training_loss_is_the_model_level_train_loss_only():
    m = table((0, "loss", -1, -1, 4.0), (1, "loss", -1, -1, 3.5), (0, "loss", -1, -1, 9.0, "val"),
              (1, "loss", 0, -1, 7.0), (0, "lr", -1, -1, 0.001), (1, "loss", -1, 0, 6.0, "val"))
    got = training_loss(m)
    assert got.index.tolist() == [0, 1] and got.tolist() == [4.0, 3.5]


def test_health_tables_use_the_rules_they_are_given():
    m = metric_table()
    assert health_tables(m)["health_events"][["step", "event"]].values.tolist() == [[100, "spike"]]
    assert health_tables(m, LossEventRules(spike_nats=3.0))["health_events"].empty     # the 2-nat spike is below 3


def lead_case():
    alerts = alert_table(table((10, "alert_entropy_collapse", 0, 1, 0.2), (12, "alert_entropy_collapse", 1, 0, 0.1),
                               (20, "alert_entropy_collapse", 1, 1, 0.3), (20, "alert_sink_takeover", 2, -1, 0.9)))
    events = pd.DataFrame([(15, "plateau", 3.0), (20, "spike", 5.0)], columns=["step", "event", "loss"])
    return alerts, events


def test_leads_count_alerts_at_the_event_step_and_every_unit():
    alerts, events = lead_case()
    got = alerts_before_events(alerts, events)
    want = pd.DataFrame([(15, "plateau", "entropy_collapse", 10.0, 5.0, 2), (15, "plateau", "sink_takeover", math.nan,
                                                                             math.nan, 0),
                         (20, "spike", "entropy_collapse", 10.0, 10.0, 3), (20, "spike", "sink_takeover", 20.0, 0.0, 1)],
                        columns=["event_step", "event", "alert_kind", "first_alert_step", "lead_steps", "units"])
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    nothing = alerts_before_events(pd.DataFrame(), events)               # no alerts at all, not even columns
    assert nothing.empty and nothing.columns.tolist() == want.columns.tolist()


def test_note_and_lines_with_one_alert_kind_before_an_event_and_a_head_0_first():
    alerts, events = lead_case()
    tables = {"health_alerts": alert_summary(alerts), "health_events": events,
              "health_leads": alerts_before_events(alerts, events)}
    note = health_note(tables)
    assert note["earliest_alert_before"] == [
        {"event": "plateau", "event_step": 15, "alert_kind": "entropy_collapse", "lead_steps": 5},
        {"event": "spike", "event_step": 20, "alert_kind": "entropy_collapse", "lead_steps": 10}]
    assert health_lines(note)[0] == ("  attention health: entropy collapse 3 (3 units), sink takeover 1 (1 units); "
                                     "first: entropy collapse at step 10 (L0 H1)")
    head0 = alert_table(table((4, "alert_logit_growth", 3, 0, 40.0)))
    one = {"health_alerts": alert_summary(head0), "health_events": events,
           "health_leads": alerts_before_events(head0, events)}
    assert health_note(one)["earliest_alert_before"] == [
        {"event": "plateau", "event_step": 15, "alert_kind": "logit_growth", "lead_steps": 11},
        {"event": "spike", "event_step": 20, "alert_kind": "logit_growth", "lead_steps": 16}]
    assert health_lines(health_note(one))[0] == ("  attention health: logit growth 1 (1 units); first: logit growth "
                                                 "at step 4 (L3 H0)")


def test_note_and_lines_without_alerts():
    _, events = lead_case()
    note = health_note({"health_alerts": pd.DataFrame(), "health_events": events,
                        "health_leads": alerts_before_events(pd.DataFrame(), events)})
    assert note == {"alerts": {}, "units": {}, "first_alert": None,
                    "loss_events": [{"step": 15, "event": "plateau"}, {"step": 20, "event": "spike"}],
                    "earliest_alert_before": []}
    assert health_lines(note) == ["  attention health: no alerts (loss events: plateau at 15, spike at 20)"]
    assert health_lines({}) == health_lines(None) == health_lines({"alerts": {}}) == ["  attention health: no alerts"]
