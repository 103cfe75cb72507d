"""The live attention-health monitor: light-tier rows in, alerts out (rows, console, sinks, actions).

    monitor = HealthMonitor(HealthConfig(on_alert="stop"), hooks=[my_intervention])
    monitor.watch(light)               # a LightTracker or HFLightStats: rows arrive as computed
    run_training(config, [light, monitor])       # `attnlife train` wires this itself (attnlife.run)

Each step's light rows (`light_entropy_bits`, `light_lse_max_nats`, `light_sink_mass` per head)
become `StepSignals` and go through `HealthDetector` (`attnlife.track.health_rules`, where the
rules are stated). For every alert:
  - a row in the run's metric table: metric `alert_<kind>`, split `train`, at the step of the
    signal, the layer and the head (-1 for a layer-level sink takeover), value = the signal;
  - the same row to the sinks (TensorBoard / W&B tag `alert_<kind>/L<l>/H<h>`);
  - a console line (stderr) the first time a kind fires for a head (heads that fire one kind
    at the same step share one line);
  - each hook is called as `hook(alert, monitor)`: a user's own intervention (the hook sees
    `monitor.model`, `monitor.alerts`, and may call `monitor.request_checkpoint(reason)` or
    `monitor.request_stop(reason)`);
  - the configured action (`on_alert`): `warn` nothing more; `checkpoint` asks the trainer for a
    checkpoint of the current weights at the first alert of each kind; `stop` asks it to write one
    and stop at the first alert (exit code 3 under `attnlife train`).
Requests go through `attnlife.events.TrainControl` (handed over in TrainStart); the HF Trainer and
Lightning callbacks in `attnlife.integrations.health` turn them into their trainers' own save and
stop. Under `attnlife train` the light tier computes 8 steps per fused call, so an alert is raised
(and acted on) up to 7 steps after the step it is dated; rows are dated by the signal's step.
Only rank 0 reads the light tier, so only rank 0 alerts; the trainer reduces a stop over ranks.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Optional

import numpy as np

from attnlife.config import HealthConfig
from attnlife.events import Callback, CheckpointDue, TrainControl, TrainStart
from attnlife.store.metrics_table import MetricRow
from attnlife.track.health_rules import Alert, HealthDetector, checked_rules, rule_text
from attnlife.track.health_signals import StepSignals, signals_from_rows

Hook = Callable[[Alert, "HealthMonitor"], Any]


def _console(line: str) -> None:
    """One line on stderr, above a tqdm progress bar if one is shown."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def console_line(alerts: list[Alert], rules: HealthConfig, signals: Optional[StepSignals] = None) -> str:
    """One line for alerts of one kind at one step: `attention health: step 12: entropy collapse
    at L0 H1 (0.21 bits), L3 H2 (0.05 bits); heads <= 0.5 bits per layer 2/4 0/4 0/4 1/4; rule: ...`
    (for entropy collapse: each layer's heads at or below the floor, the collapsed share, from `signals`)."""
    first = alerts[0]
    where = ", ".join(f"L{a.layer}" + (f" H{a.head}" if a.head >= 0 else "") + f" ({a.value_text()})"
                      for a in alerts)
    share = ""
    if first.kind == "entropy_collapse" and signals is not None:
        heads = signals.shape[1]
        counts = np.rint(signals.collapsed_share(rules.collapse_floor_bits) * heads).astype(int)
        share = (f"; heads <= {rules.collapse_floor_bits:g} bits per layer "
                 + " ".join(f"{c}/{heads}" for c in counts))
    return (f"attention health: step {first.step}: {first.kind.replace('_', ' ')} at {where}{share}; "
            f"rule: {rule_text(first.kind, rules)}")


class HealthMonitor(Callback):
    """Alerts from light-tier rows; see the module docstring."""

    def __init__(self, rules: Optional[HealthConfig] = None, hooks: Iterable[Hook] = (),
                 writer: Any = None, sinks: Iterable[Any] = (),
                 echo: Optional[Callable[[str], Any]] = _console,
                 control: Optional[TrainControl] = None) -> None:
        self.rules = checked_rules(rules)
        self.detector = HealthDetector(self.rules)
        self.hooks = list(hooks)
        self.writer, self.sinks = writer, list(sinks)
        self.echo = echo
        self.control = control
        self.model: Any = None
        self.rank = 0
        self.alerts: list[Alert] = []
        self._announced: set[tuple[str, int, int]] = set()
        self._acted: set[str] = set()

    @classmethod
    def from_config(cls, health_config: HealthConfig, hooks: Iterable[Hook] = ()) -> "HealthMonitor":
        return cls(health_config, hooks=hooks)

    def watch(self, light: Any) -> "HealthMonitor":
        """Receive `light`'s rows (a LightTracker or HFLightStats) as they are computed."""
        light.listeners.append(self.on_light_rows)
        return self

    def attach(self, light: Any) -> "HealthMonitor":
        """`watch(light)` outside `attnlife train` (HF Trainer, Lightning, a user's loop): alert
        rows go to the light tier's writer and sinks (TensorBoard, W&B) unless the monitor was
        given its own, requests to a `TrainControl` of the monitor's own (`monitor.control`) that
        the caller turns into its trainer's save and stop."""
        self.watch(light)
        if self.writer is None:
            self.writer = light.writer
        if not self.sinks:
            self.sinks = list(getattr(light, "sinks", ()))
        if self.control is None:
            self.control = TrainControl()
        return self

    # ---------------------------------------------------------------- Callback API
    def on_train_start(self, rec: TrainStart) -> None:
        self.rank, self.model = rec.rank, rec.model
        if self.writer is None:
            self.writer = rec.metric_writer
        if rec.control is not None:
            self.control = rec.control
        if rec.start_step > 0 and self.rank == 0:     # a resumed run: the detectors where they were
            from attnlife.store.run_dir import load_run

            block = int(dict(rec.config.get("model", {})).get("block_size", 0))
            if block > 0:
                self.resume(load_run(rec.run_dir).metrics(), rec.start_step, block)

    def on_checkpoint_due(self, rec: CheckpointDue) -> None:
        self.flush()        # the run's writer is flushed by its owner after every callback

    def resume(self, metrics: Any, start_step: int, seq_len: int) -> list[Alert]:
        """Replay the run's light rows before `start_step` (sequence length `seq_len`) through the
        detectors, quietly: a resumed run's streaks, windows and fired heads are those of the run
        that never stopped, so a head that collapsed before the stop does not alert again (and an
        `--on-alert stop` run resumed with the same command trains on until something new fires).
        Returns the replayed alerts (their rows are on disk already)."""
        from attnlife.track.health_signals import signals_from_table

        before = metrics[metrics.step < start_step]
        replayed = [a for s in signals_from_table(before, seq_len) for a in self.detector.observe(s)]
        self._announced.update((a.kind, a.layer, a.head) for a in replayed)
        self._acted.update(a.kind for a in replayed)
        self.alerts.extend(replayed)
        return replayed

    # ---------------------------------------------------------------- rows in
    def on_light_rows(self, step: int, rows: list[MetricRow], seq_len: int) -> list[Alert]:
        """Detect on one step's light rows (T = `seq_len`); log and act on what fires."""
        if self.rank != 0 or seq_len < 1:
            return []
        signals = signals_from_rows(step, rows, seq_len)
        if signals is None:
            return []
        alerts = self.detector.observe(signals)
        fresh: dict[str, list[Alert]] = {}
        for alert in alerts:
            key = (alert.kind, alert.layer, alert.head)
            if key not in self._announced:
                self._announced.add(key)
                fresh.setdefault(alert.kind, []).append(alert)
        if self.echo is not None:
            for group in fresh.values():
                self.echo(console_line(group, self.rules, signals))
        for alert in alerts:
            self._handle(alert)
        return alerts

    # ---------------------------------------------------------------- actions
    def request_checkpoint(self, reason: str) -> None:
        """Ask the trainer for a checkpoint of the current weights (no-op without a trainer)."""
        if self.control is not None:
            self.control.request_checkpoint(reason)

    def request_stop(self, reason: str) -> None:
        """Ask the trainer to checkpoint and stop (no-op without a trainer)."""
        if self.control is not None:
            self.control.request_stop(reason)

    def _handle(self, alert: Alert) -> None:
        self.alerts.append(alert)
        row = MetricRow(alert.layer, alert.head, alert.metric, alert.value)
        if self.writer is not None:
            self.writer.log_rows(alert.step, [row], split="train")
        for sink in self.sinks:
            sink.log_rows(alert.step, [row])
        for hook in self.hooks:
            hook(alert, self)
        action = self.rules.on_alert
        if action == "stop":
            self.request_stop(f"on an attention-health alert ({alert.describe(self.rules).split(': ', 1)[1]}; "
                              f"set --on-alert warn to train on)")
        elif action == "checkpoint" and alert.kind not in self._acted:
            self._acted.add(alert.kind)
            self.request_checkpoint(f"first {alert.kind} alert at step {alert.step}")

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Nothing to release: the writer and the sinks belong to the run."""
