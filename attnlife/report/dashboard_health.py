"""The dashboard's attention-health data: alerts and the light-tier signals they were read from.

  health = {steps [S], signals: {name: {unit, values: f32 [S * L * H]}},      (step-major)
            alerts: [{step, kind, layer, head_index, value}],                 (head -1 = layer)
            events: [{step, event, loss}]}                                    (from `attnlife analyze`)

Signals are the light tier's per-head rows (split train): entropy (bits), max-logit bound (nats)
and sink mass. A run longer than MAX_STEPS light steps is thinned to MAX_STEPS evenly spaced steps
plus every step that has an alert, so the page stays a few MB. Drawn by the package-data script
`dashboard_health.js` (sections `health` and `healthhead`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.report.dashboard_data import b64_f32
from attnlife.report.data import ReportRun, cube

MAX_STEPS = 2000
SIGNALS = {"light_entropy_bits": "bits", "light_lse_max_nats": "nats", "light_sink_mass": "probability"}
ALERT_PREFIX = "alert_"


def health_payload(run: ReportRun, shape: tuple[int, int]) -> dict | None:
    """The `health` entry of the payload (module docstring), None without light-tier rows."""
    m = run.metrics
    train = m[(m.split == "train") & (m.layer_b < 0)]
    light = train[train.metric.isin(list(SIGNALS)) & (train.layer >= 0) & (train.head_index >= 0)]
    if light.empty:
        return None
    alerts = train[train.metric.str.startswith(ALERT_PREFIX)]
    steps = np.sort(light.step.unique())
    if len(steps) > MAX_STEPS:
        keep = set(np.linspace(0, len(steps) - 1, MAX_STEPS).round().astype(int).tolist())
        keep |= set(np.searchsorted(steps, alerts.step.unique()).clip(0, len(steps) - 1).tolist())
        steps = steps[sorted(keep)]
    signals = {}
    for metric, unit in SIGNALS.items():
        rows = light[(light.metric == metric) & light.step.isin(steps)]
        if rows.empty:
            continue
        got_steps, values = cube(rows)
        full = np.full((len(steps),) + tuple(shape), np.nan)
        idx = np.searchsorted(steps, got_steps)
        full[idx, :values.shape[1], :values.shape[2]] = values[:, :shape[0], :shape[1]]
        signals[metric] = {"unit": unit, "values": b64_f32(full)}
    out = {"steps": [int(s) for s in steps], "signals": signals,
           "alerts": [{"step": int(r.step), "kind": r.metric[len(ALERT_PREFIX):], "layer": int(r.layer),
                       "head_index": int(r.head_index), "value": float(r.value)}
                      for r in alerts.sort_values(["step", "metric", "layer", "head_index"]).itertuples()],
           "events": []}
    events = run.analysis.get("health_events")
    if isinstance(events, pd.DataFrame) and len(events):
        out["events"] = [{"step": int(e.step), "event": str(e.event), "loss": float(e.loss)}
                         for e in events.itertuples()]
    return out
