"""Attention health after the fact: alerts per head, loss events, and which alerts preceded which.

Pure: DataFrames in (the run's metric table), DataFrames out. The alerts are the `alert_<kind>`
rows the live monitor wrote (`attnlife.track.health_monitor`; rules in
`attnlife.track.health_rules`). Loss events come from the per-step training loss (metric `loss`,
split train, model level), with L~_s = the median of the last `smooth` losses up to s and
L0 = the first loss (the untrained model's, about ln V):

  spike       loss_s >= L~_{s-1} + spike_nats  (L~_{s-1} over >= 3 earlier losses): one update
              made the loss jump
  divergence  loss_s is NaN or inf, or L~_s >= L0 + spike_nats: the loss went back above where
              it started
  plateau     s >= plateau_window, |L~_{s-W} - L~_s| < plateau_drop_nats and L~_s >= plateau_level
              x L0 (W = plateau_window): the loss stopped moving at a level a healthy run
              passes through (0.75 x ln 65 = 3.13 nats on tiny-shakespeare, whose unigram
              entropy is 3.31 nats; the demo configuration passes below it by step ~50)

Every spike onset is an event (a spike step whose previous step was not one); plateau and
divergence are reported at their first step. Lead time = event step - first alert step, in steps
(positive: the alert came first).

  alert_table(metrics)                      step, kind, layer, head_index, value
  alert_summary(alerts)                     per kind and unit: first_step, last_step, alerts, first_value
  loss_events(metrics, rules)               step, event, loss
  alerts_before_events(alerts, events)      per event and alert kind: first_alert_step, lead_steps,
                                            units (heads / layers alerted by the event)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALERT_PREFIX = "alert_"
ALERT_COLUMNS = ["step", "kind", "layer", "head_index", "value"]
SUMMARY_COLUMNS = ["kind", "layer", "head_index", "first_step", "last_step", "alerts", "first_value"]
EVENT_COLUMNS = ["step", "event", "loss"]
RELATION_COLUMNS = ["event_step", "event", "alert_kind", "first_alert_step", "lead_steps", "units"]


@dataclass(frozen=True)
class LossEventRules:
    """Loss-event thresholds (module docstring)."""

    smooth: int = 10
    spike_nats: float = 0.5
    plateau_window: int = 50
    plateau_drop_nats: float = 0.15
    plateau_level: float = 0.75

    def __post_init__(self) -> None:
        if self.smooth < 3:
            raise ValueError(f"LossEventRules.smooth={self.smooth} must be >= 3 (a spike is judged against "
                             f"the median of >= 3 earlier losses)")
        if self.plateau_window < 1:
            raise ValueError(f"LossEventRules.plateau_window={self.plateau_window} must be >= 1 (steps)")


def alert_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """The alert rows of a metric table: step, kind (metric without `alert_`), layer, head_index,
    value, sorted by step, kind, layer, head."""
    m = metrics[metrics["metric"].str.startswith(ALERT_PREFIX)]
    out = pd.DataFrame({"step": m["step"].astype("int64"),
                        "kind": m["metric"].str.slice(len(ALERT_PREFIX)),
                        "layer": m["layer"].astype("int64"), "head_index": m["head_index"].astype("int64"),
                        "value": m["value"].astype("float64")}, columns=ALERT_COLUMNS)
    return out.sort_values(["step", "kind", "layer", "head_index"]).reset_index(drop=True)


def alert_summary(alerts: pd.DataFrame) -> pd.DataFrame:
    """Per kind and unit (layer, head; head -1 = layer): first and last alert step, count, the
    signal's value at the first alert."""
    if alerts.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    a = alerts.sort_values("step")
    g = a.groupby(["kind", "layer", "head_index"], sort=True)
    out = g.agg(first_step=("step", "min"), last_step=("step", "max"), alerts=("step", "size"),
                first_value=("value", "first")).reset_index()
    return out[SUMMARY_COLUMNS]


def training_loss(metrics: pd.DataFrame) -> pd.Series:
    """Per-step training loss (metric `loss`, model level, split train) indexed by step."""
    m = metrics[(metrics["metric"] == "loss") & (metrics["layer"] < 0) & (metrics["split"] == "train")]
    return m.groupby("step")["value"].last().sort_index()


def loss_events(loss: pd.Series, rules: LossEventRules = LossEventRules()) -> pd.DataFrame:
    """Spike onsets, the first divergence and the first plateau of a loss series (index = step)."""
    if loss.empty:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    loss = loss.sort_index()
    steps = loss.index.to_numpy()
    values = loss.to_numpy(dtype=float)
    finite = np.where(np.isfinite(values), values, np.nan)
    smooth = pd.Series(finite).rolling(rules.smooth, min_periods=1).median().to_numpy()
    before = pd.Series(finite).shift(1).rolling(rules.smooth, min_periods=3).median().to_numpy()
    l0 = float(finite[0])
    with np.errstate(invalid="ignore"):
        spike = values >= before + rules.spike_nats
    onset = spike & ~np.concatenate([[False], spike[:-1]])
    events = [(int(steps[i]), "spike", values[i]) for i in np.nonzero(onset)[0]]
    with np.errstate(invalid="ignore"):
        diverged = ~np.isfinite(values) | (smooth >= l0 + rules.spike_nats)
    if diverged.any():
        i = int(np.argmax(diverged))
        events.append((int(steps[i]), "divergence", values[i]))
    # index of step s - W (W >= 1: at most s's own index); judged only where s - W was logged
    lag = np.searchsorted(steps, steps - rules.plateau_window)
    ok = steps[lag] == steps - rules.plateau_window
    with np.errstate(invalid="ignore"):
        stalled = ok & (np.abs(smooth[lag] - smooth) < rules.plateau_drop_nats) & (smooth >= rules.plateau_level * l0)
    if stalled.any():
        i = int(np.argmax(stalled))
        events.append((int(steps[i]), "plateau", values[i]))
    out = pd.DataFrame(events, columns=EVENT_COLUMNS)
    return out.sort_values(["step", "event"]).reset_index(drop=True)


def alerts_before_events(alerts: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """For every loss event and every alert kind seen in the run: the first alert of that kind at
    or before the event (NaN if none), the lead in steps (event - alert), and how many units
    (heads, or layers for a layer-level kind) had alerted by then."""
    rows = []
    for ev in events.itertuples(index=False):
        for kind in sorted(alerts["kind"].unique()) if not alerts.empty else []:
            a = alerts[(alerts["kind"] == kind) & (alerts["step"] <= ev.step)]
            first = float(a["step"].min()) if len(a) else math.nan
            units = int(a[["layer", "head_index"]].drop_duplicates().shape[0])
            rows.append((int(ev.step), ev.event, kind, first, ev.step - first, units))
    return pd.DataFrame(rows, columns=RELATION_COLUMNS)


def health_tables(metrics: pd.DataFrame, rules: LossEventRules = LossEventRules()) -> dict[str, pd.DataFrame]:
    """The analysis tables `health_alerts` (alert_summary), `health_events` (loss_events) and
    `health_leads` (alerts_before_events) of a run's metric table."""
    alerts = alert_table(metrics)
    events = loss_events(training_loss(metrics), rules)
    return {"health_alerts": alert_summary(alerts), "health_events": events,
            "health_leads": alerts_before_events(alerts, events)}


def health_note(tables: dict[str, pd.DataFrame]) -> dict:
    """JSON-ready summary of `health_tables`: alert counts per kind, the first alert, the loss
    events and, per event, the earliest alert before it."""
    alerts, events, leads = tables["health_alerts"], tables["health_events"], tables["health_leads"]
    first = alerts.sort_values("first_step").iloc[0] if len(alerts) else None
    before = leads[leads["first_alert_step"].notna()]
    return {
        "alerts": {k: int(v) for k, v in alerts.groupby("kind")["alerts"].sum().items()} if len(alerts) else {},
        "units": {k: int(v) for k, v in alerts.groupby("kind").size().items()} if len(alerts) else {},
        "first_alert": None if first is None else {"kind": first.kind, "step": int(first.first_step),
                                                   "layer": int(first.layer), "head_index": int(first.head_index)},
        "loss_events": [{"step": int(e.step), "event": e.event} for e in events.itertuples()],
        "earliest_alert_before": [
            {"event": g.event.iloc[0], "event_step": int(step), "alert_kind": g.loc[g.first_alert_step.idxmin(), "alert_kind"],
             "lead_steps": int(g.lead_steps.max())}
            for step, g in before.groupby("event_step")],
    }


def health_lines(note: dict) -> list[str]:
    """Human lines for `attnlife analyze`: alerts per kind and which loss events they preceded."""
    if not note or not note.get("alerts"):
        events = ", ".join(f"{e['event']} at {e['step']}" for e in (note or {}).get("loss_events", []))
        return ["  attention health: no alerts" + (f" (loss events: {events})" if events else "")]
    kinds = ", ".join(f"{k.replace('_', ' ')} {n} ({note['units'][k]} units)" for k, n in note["alerts"].items())
    first = note["first_alert"]
    lines = [f"  attention health: {kinds}; first: {first['kind'].replace('_', ' ')} at step {first['step']} "
             f"(L{first['layer']}" + (f" H{first['head_index']})" if first["head_index"] >= 0 else ")")]
    for e in note["earliest_alert_before"]:
        lines.append(f"    {e['event']} at step {e['event_step']}: preceded by {e['alert_kind'].replace('_', ' ')} "
                     f"{e['lead_steps']} steps earlier")
    missed = [e for e in note["loss_events"]
              if e["step"] not in {x["event_step"] for x in note["earliest_alert_before"]}]
    for e in missed:
        lines.append(f"    {e['event']} at step {e['step']}: no alert before it")
    return lines
