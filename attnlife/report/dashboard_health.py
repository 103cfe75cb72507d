"""The dashboard's attention-health data: alerts and the light-tier signals they were read from.

  health = {steps [S], signals: {name: {unit, values: f32 [S * L * H]}},      (step-major)
            alerts: [{step, kind, layer, head_index, value}],                 (head -1 = layer)
            events: [{step, event, loss}] | None}    (from `attnlife analyze`; None: not analysed)

Signals are the light tier's per-head rows (split train): entropy (bits), max-logit bound (nats)
and sink mass. A run with more light steps than `max_steps(heads)` (MAX_STEPS, and at most
MAX_SIGNAL_VALUES values per signal: 666 steps for Pythia-1.4B's 384 heads) is thinned to that
many evenly spaced steps plus every step that has an alert, so the page stays a few MB. Drawn by the package-data script
`dashboard_health.js` (sections `health` and `healthhead`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from attnlife.report.dashboard_data import b64_f32
from attnlife.report.data import ReportRun, cube

MAX_STEPS = 2000
MAX_SIGNAL_VALUES = 256_000   # steps x heads per signal: 1 MB of float32, 1.4 MB of base64
SIGNALS = {"light_entropy_bits": "bits", "light_lse_max_nats": "nats", "light_sink_mass": "probability"}
ALERT_PREFIX = "alert_"


def max_steps(heads: int) -> int:
    """The light steps a page keeps (alert steps come on top): MAX_STEPS, fewer for many heads."""
    return max(2, min(MAX_STEPS, MAX_SIGNAL_VALUES // max(1, heads)))


def health_payload(run: ReportRun, shape: tuple[int, int]) -> dict | None:
    """The `health` entry of the payload (module docstring), None without light-tier rows."""
    m = run.metrics
    train = m[(m.split == "train") & (m.layer_b < 0)]
    light = train[train.metric.isin(list(SIGNALS)) & (train.layer >= 0) & (train.head_index >= 0)]
    if light.empty:
        return None
    alerts = train[train.metric.str.startswith(ALERT_PREFIX)]
    steps = np.sort(light.step.unique())
    most = max_steps(shape[0] * shape[1])
    if len(steps) > most:
        keep = set(np.linspace(0, len(steps) - 1, most).round().astype(int).tolist())
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
           "events": None}
    events = run.analysis.get("health_events")
    if isinstance(events, pd.DataFrame):  # analysed: the loss events it found, maybe none
        out["events"] = [{"step": int(e.step), "event": str(e.event), "loss": float(e.loss)}
                         for e in events.itertuples()]
    return out
