"""Attention-health detectors: documented rules over the signals of `health_signals`, streaming.

Each detector evaluates a condition per unit (a head, or a layer for sink takeover) at every
observed step s (every light-tier read). A unit *fires* when its condition has held at
`patience` consecutive observations and it is not already active; the alert is dated s (the
observation that completed the streak) and carries the signal's value at s. An active unit
re-arms once its condition has been false at `rearm_after` consecutive observations, so a head
that recovers and collapses again alerts again, while one hovering at a threshold (the light
tier reads 2 sequences: its signals are noisy) does not alert at every crossing. With the light tier at every step, an alert comes
`patience - 1` steps after the condition first held.

  entropy_collapse  head: H_s <= collapse_floor_bits, or H fell at least collapse_fall_bits below
                    its high of the window (collapse_window steps before the last `patience`
                    observations, up to s)                           value: H_s (bits)
  logit_growth      head: |lse_max_s| >= logit_ceiling_nats, or |lse_max_s| - its minimum over
                    the window (logit_window steps, extended the same way) >= logit_rise_nats
                    value: lse_max_s (nats)
                    (lse_max >= C means a logit >= C - log T; lse_max <= -C means every logit
                    of the sequence <= -C: either way the logit scale has run away)
  sink_takeover     layer: mean over its heads of sink mass >= sink_threshold
                    value: the layer's sink mass (alert row at head -1)
  dead_head         head: s >= dead_after_steps and H_s / U(T) >= dead_uniform_fraction
                    (still attends uniformly: never learned to select)   value: H_s / U(T)

Thresholds are fields of `attnlife.config.HealthConfig` (the run config's `health` section);
their defaults were chosen on the measurements in BENCHMARKS.md ("Attention health"): the `cpu` preset on tiny-shakespeare, unstable (lr and
warm-up sweeps, no clipping) and healthy (the demo configuration) runs, several seeds.
`HealthDetector.observe(signals)` is the streaming form (the live monitor); `detect_table`
replays a run's metric table through the same code (the offline form).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from attnlife.config import HealthConfig, RunConfig, validate_values
from attnlife.track.health_signals import StepSignals, entropy_fall_bits, signals_from_table

KINDS = ("entropy_collapse", "logit_growth", "sink_takeover", "dead_head")
ALERT_PREFIX = "alert_"


def checked_rules(rules: Optional[HealthConfig] = None) -> HealthConfig:
    """`rules` (default `HealthConfig()`) after the config's range checks (ConfigError, one line)."""
    rules = HealthConfig() if rules is None else rules
    validate_values(RunConfig(health=rules))
    return rules


@dataclass(frozen=True)
class Alert:
    """One detector firing: `kind` at (layer, head) (head -1 = the whole layer) at `step`."""

    step: int
    kind: str
    layer: int
    head: int
    value: float

    @property
    def metric(self) -> str:
        return ALERT_PREFIX + self.kind

    def value_text(self) -> str:
        """The signal with its unit, e.g. `0.21 bits`."""
        return {"entropy_collapse": f"{self.value:.2f} bits", "logit_growth": f"{self.value:.1f} nats",
                "sink_takeover": f"{self.value:.2f}", "dead_head": f"{self.value:.1%} of uniform"}[self.kind]

    def describe(self, rules: HealthConfig) -> str:
        """One line: what fired, where, the value and the rule it broke."""
        where = f"layer {self.layer}" + (f" head {self.head}" if self.head >= 0 else "")
        return (f"attention health: step {self.step}: {self.kind.replace('_', ' ')} at {where}: "
                f"{self.value_text()} ({rule_text(self.kind, rules)})")


def rule_text(kind: str, rules: HealthConfig) -> str:
    """The rule of `kind` with its thresholds, in words."""
    return {
        "entropy_collapse": f"entropy <= {rules.collapse_floor_bits:g} bits, or a fall of >= "
                            f"{rules.collapse_fall_bits:g} bits within {rules.collapse_window} steps",
        "logit_growth": f"|max-logit bound| >= {rules.logit_ceiling_nats:g} nats, or a rise of >= "
                        f"{rules.logit_rise_nats:g} nats within {rules.logit_window} steps",
        "sink_takeover": f"mean attention of the layer on token 0 >= {rules.sink_threshold:g}",
        "dead_head": f"entropy >= {rules.dead_uniform_fraction:.0%} of uniform at step >= "
                     f"{rules.dead_after_steps}",
    }[kind]


class HealthDetector:
    """Streaming detectors: feed `observe` each step's `StepSignals` in step order."""

    def __init__(self, rules: Optional[HealthConfig] = None) -> None:
        self.rules = checked_rules(rules)
        self.history: deque[StepSignals] = deque()
        self._held: dict[str, np.ndarray] = {}      # kind -> consecutive observations held
        self._clear: dict[str, np.ndarray] = {}     # kind -> consecutive observations not held
        self._active: dict[str, np.ndarray] = {}    # kind -> fired and not re-armed

    def conditions(self, values: Optional[dict[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
        """kind -> boolean condition at the newest observation ([L, H], [L] for sink takeover);
        `values` = `self.values()` if already computed."""
        r, now = self.rules, self.history[-1]
        values = self.values() if values is None else values
        span = now.step - self._anchor()          # steps covered by the last `patience` reads
        with np.errstate(invalid="ignore"):
            fall = entropy_fall_bits(list(self.history), r.collapse_window + span)
            scale = np.abs(now.lse_max_nats)
            recent = [np.abs(h.lse_max_nats) for h in self.history
                      if h.step > now.step - r.logit_window - span]
            rise = scale - np.fmin.reduce(np.stack(recent), axis=0)
            return {
                "entropy_collapse": (now.entropy_bits <= r.collapse_floor_bits)
                                    | (fall >= r.collapse_fall_bits),
                "logit_growth": (scale >= r.logit_ceiling_nats) | (rise >= r.logit_rise_nats),
                "sink_takeover": values["sink_takeover"] >= r.sink_threshold,
                "dead_head": (values["dead_head"] >= r.dead_uniform_fraction)
                             & (now.step >= r.dead_after_steps),
            }

    def _anchor(self) -> int:
        """Step of the oldest of the last `patience` observations (where a streak ending now began)."""
        return self.history[max(0, len(self.history) - self.rules.patience)].step

    def values(self) -> dict[str, np.ndarray]:
        """kind -> the signal an alert of that kind reports, at the newest observation."""
        now = self.history[-1]
        return {"entropy_collapse": now.entropy_bits, "logit_growth": now.lse_max_nats,
                "sink_takeover": now.layer_sink_mass(), "dead_head": now.uniform_fraction()}

    def observe(self, signals: StepSignals) -> list[Alert]:
        """Take the next observation (step strictly after the last); return the alerts it fires."""
        if self.history and signals.step <= self.history[-1].step:
            raise ValueError(f"step {signals.step} is not after the last observed step "
                             f"{self.history[-1].step}")
        if self.history and self.history[-1].shape != signals.shape:
            self.history.clear()       # a different model: start over
            self._held.clear(), self._clear.clear(), self._active.clear()
        self.history.append(signals)
        keep = max(self.rules.collapse_window, self.rules.logit_window)
        while self.history[0].step <= self._anchor() - keep:
            self.history.popleft()
        alerts = []
        values = self.values()
        for kind, cond in self.conditions(values).items():
            held = self._held.get(kind, np.zeros(cond.shape, dtype=np.int64))
            clear = self._clear.get(kind, np.zeros(cond.shape, dtype=np.int64))
            active = self._active.get(kind, np.zeros(cond.shape, dtype=bool))
            held = np.where(cond, held + 1, 0)
            clear = np.where(cond, 0, clear + 1)
            fire = (held >= self.rules.patience) & ~active
            active = (active | fire) & ~(clear >= self.rules.rearm_after)
            self._held[kind], self._clear[kind], self._active[kind] = held, clear, active
            for index in zip(*np.nonzero(fire)):
                layer, head = (int(index[0]), int(index[1])) if len(index) == 2 else (int(index[0]), -1)
                alerts.append(Alert(signals.step, kind, layer, head, float(values[kind][index])))
        return alerts


def detect(signals: Iterable[StepSignals], rules: Optional[HealthConfig] = None) -> list[Alert]:
    """Every alert of a sequence of observations (ascending steps), through `HealthDetector`."""
    detector = HealthDetector(rules)
    return [a for s in signals for a in detector.observe(s)]


ALERT_COLUMNS = ["step", "kind", "layer", "head_index", "value"]


def alerts_frame(alerts: Iterable[Alert]) -> pd.DataFrame:
    """Alerts as a DataFrame: step, kind, layer, head_index (-1 = layer), value."""
    rows = [(a.step, a.kind, a.layer, a.head, a.value) for a in alerts]
    return pd.DataFrame(rows, columns=ALERT_COLUMNS).astype(
        {"step": "int64", "layer": "int64", "head_index": "int64", "value": "float64"})


def detect_table(metrics: pd.DataFrame, seq_len: int, rules: Optional[HealthConfig] = None) -> pd.DataFrame:
    """Replay a run's metric table (its `light_*` rows, split train) through the detectors."""
    return alerts_frame(detect(signals_from_table(metrics, seq_len), rules))
