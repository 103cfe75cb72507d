"""The health monitor driven directly with light-tier rows (no training run): what it echoes, logs on
disk and to sinks, hands to hooks and asks of the trainer, once per head and kind; rank, resume and
the light tier it is attached to."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

import attnlife
from attnlife.config import HealthConfig
from attnlife.events import CheckpointDue, TrainControl, TrainStart
from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.track.health_monitor import HealthMonitor, console_line
from attnlife.track.health_rules import Alert
from attnlife.track.light_tracker import light_rows

T = 16


class Control(TrainControl):
    """A TrainControl that keeps every request, not only the first."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def request_checkpoint(self, reason: str) -> None:
        self.requests.append(("checkpoint", reason))
        super().request_checkpoint(reason)

    def request_stop(self, reason: str) -> None:
        self.requests.append(("stop", reason))
        super().request_stop(reason)


class Sink:
    def __init__(self) -> None:
        self.rows: list[tuple[int, list[MetricRow]]] = []
        self.flushed = 0

    def log_rows(self, step, rows) -> None:
        self.rows.append((step, list(rows)))

    def flush(self) -> None:
        self.flushed += 1

    def close(self) -> None:
        pass


def rows(entropy: np.ndarray, sink: float = 0.05, lse: float = 3.0) -> list[MetricRow]:
    """Light rows of one step: per-head entropy [L, H] (one sequence), sink mass and lse."""
    L, H = entropy.shape
    means = {layer: {"entropy_bits": torch.tensor(entropy[layer:layer + 1], dtype=torch.float64),
                     "sink_mass": torch.full((1, H), sink, dtype=torch.float64),
                     "lse_max_nats": torch.full((1, H), lse, dtype=torch.float64)} for layer in range(L)}
    return light_rows(means) + [MetricRow(-1, -1, "light_ms", 1.0)]


def healthy() -> np.ndarray:
    return np.full((2, 2), 2.0)


def collapsed(*heads) -> np.ndarray:
    e = healthy()
    for layer, head in heads:
        e[layer, head] = 0.125
    return e


def test_alerts_are_echoed_once_logged_on_disk_sent_to_sinks_and_hooks_and_acted_on(tmp_path: Path) -> None:
    rules = HealthConfig(patience=1, rearm_after=1, on_alert="checkpoint", collapse_fall_bits=100.0)
    lines, hooked, sink, control = [], [], Sink(), Control()
    writer = MetricWriter(tmp_path)
    monitor = HealthMonitor(rules, hooks=[lambda a, m: hooked.append((a, m))], writer=writer, sinks=[sink],
                            echo=lines.append, control=control)
    assert monitor.on_light_rows(0, rows(healthy()), T) == []
    got = monitor.on_light_rows(1, rows(collapsed((0, 1))), T)
    alert = Alert(1, "entropy_collapse", 0, 1, 0.125)
    assert got == [alert] and monitor.alerts == [alert] and hooked == [(alert, monitor)]
    from attnlife.track.health_signals import signals_from_rows

    assert lines == [console_line([alert], rules, signals_from_rows(1, rows(collapsed((0, 1))), T))]
    assert lines[0] == ("attention health: step 1: entropy collapse at L0 H1 (0.12 bits); heads <= 0.5 bits "
                        "per layer 1/2 0/2; rule: entropy <= 0.5 bits, or a fall of >= 100 bits within 20 steps")
    row = MetricRow(0, 1, "alert_entropy_collapse", 0.125)
    assert sink.rows == [(1, [row])]
    assert control.requests == [("checkpoint", "first entropy_collapse alert at step 1")]
    monitor.on_light_rows(2, rows(healthy()), T)                         # re-armed after one clear read
    again = monitor.on_light_rows(3, rows(collapsed((0, 1), (1, 0))), T)
    assert [(a.layer, a.head) for a in again] == [(0, 1), (1, 0)]
    assert len(lines) == 2 and lines[1].startswith("attention health: step 3: entropy collapse at L1 H0 (0.12 bits);")
    assert control.requests == [("checkpoint", "first entropy_collapse alert at step 1")]   # once per kind
    monitor.on_checkpoint_due(CheckpointDue(step=4, model=None))
    assert sink.flushed == 1
    writer.close()
    m = attnlife.load_run(tmp_path).metrics()
    m = m[m.metric == "alert_entropy_collapse"].sort_values(["step", "layer"])
    assert m[["step", "split", "layer", "head_index", "value"]].values.tolist() == [
        [1, "train", 0, 1, 0.125], [3, "train", 0, 1, 0.125], [3, "train", 1, 0, 0.125]]


def test_stop_asks_to_stop_with_the_rule_and_other_ranks_and_empty_rows_do_nothing() -> None:
    rules = HealthConfig(patience=1, on_alert="stop", collapse_fall_bits=100.0)
    control = Control()
    monitor = HealthMonitor(rules, echo=None, control=control)
    monitor.on_light_rows(0, rows(collapsed((1, 1))), T)
    assert control.requests == [("stop", "on an attention-health alert (step 0: entropy collapse at layer 1 "
                                         "head 1: 0.12 bits (entropy <= 0.5 bits, or a fall of >= 100 bits within "
                                         "20 steps); set --on-alert warn to train on)")]
    warn = HealthMonitor(HealthConfig(patience=1, collapse_fall_bits=100.0), echo=None, control=Control())
    warn.on_light_rows(0, rows(collapsed((1, 1))), T)
    assert warn.control.requests == [] and len(warn.alerts) == 1           # warn: nothing asked
    other = HealthMonitor(rules, echo=None, control=Control())
    other.on_train_start(TrainStart(run_dir=Path("."), config={}, model="m", start_step=0, device="cpu", rank=1,
                                    control=other.control))
    assert other.rank == 1 and other.model == "m"
    assert other.on_light_rows(0, rows(collapsed((1, 1))), T) == []        # only rank 0 alerts
    assert monitor.on_light_rows(1, rows(collapsed((1, 1))), 0) == []     # no sequence length
    assert monitor.on_light_rows(2, [MetricRow(-1, -1, "light_ms", 1.0)], T) == []   # no per-head rows
    HealthMonitor(rules, echo=None).request_stop("x")                     # without a trainer: a no-op
    HealthMonitor(rules, echo=None).request_checkpoint("x")


def test_attach_takes_the_light_tiers_writer_sinks_and_a_control_of_its_own(tmp_path: Path) -> None:
    from attnlife.track.light_tracker import LightTracker

    sink = Sink()
    light = LightTracker(run_dir=tmp_path, sinks=[sink])
    monitor = HealthMonitor(HealthConfig(), echo=None).attach(light)
    assert monitor.writer is light.writer and monitor.sinks == [sink] and isinstance(monitor.control, TrainControl)
    assert light.listeners == [monitor.on_light_rows]
    own = Sink()
    kept = HealthMonitor(HealthConfig(), echo=None, sinks=[own], writer="w").attach(light)
    assert kept.sinks == [own] and kept.writer == "w"
    shared = MetricWriter(tmp_path / "s")
    started = HealthMonitor(HealthConfig(), echo=None)
    control = TrainControl()
    started.on_train_start(TrainStart(run_dir=tmp_path, config={}, model=None, start_step=0, device="cpu",
                                      metric_writer=shared, control=control))
    assert started.writer is shared and started.control is control and started.rank == 0
    light.close()
    shared.close()


def test_a_resumed_monitor_does_not_announce_or_act_on_what_fired_before(tmp_path: Path) -> None:
    rules = HealthConfig(patience=1, on_alert="checkpoint", collapse_fall_bits=100.0)
    writer = MetricWriter(tmp_path)
    for step, e in enumerate([healthy(), collapsed((0, 0)), collapsed((0, 0))]):
        writer.log_rows(step, rows(e), split="train")
    writer.close()
    lines, control = [], Control()
    monitor = HealthMonitor(rules, echo=lines.append, control=control)
    monitor.on_train_start(TrainStart(run_dir=tmp_path, config={"model": {"block_size": T}}, model=None,
                                      start_step=3, device="cpu", control=control))
    assert [(a.step, a.layer, a.head) for a in monitor.alerts] == [(1, 0, 0)]   # replayed quietly
    assert monitor.on_light_rows(3, rows(collapsed((0, 0))), T) == []           # still active: no new alert
    assert lines == [] and control.requests == []
    fresh = monitor.on_light_rows(4, rows(collapsed((0, 0), (1, 1))), T)
    assert [(a.layer, a.head) for a in fresh] == [(1, 1)] and len(lines) == 1 and control.requests == []


def test_console_lines_go_to_stderr_and_are_the_default_echo(capsys) -> None:
    from attnlife.track.health_monitor import _console

    _console("attention health: step 3: a line")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "attention health: step 3: a line\n")
    assert HealthMonitor().echo is _console and HealthMonitor().model is None


def test_from_config_keeps_the_rules_and_the_hooks() -> None:
    rules, hook = HealthConfig(patience=2, on_alert="checkpoint"), (lambda a, m: None)
    monitor = HealthMonitor.from_config(rules, hooks=[hook])
    assert monitor.rules is rules and monitor.hooks == [hook]
    assert HealthMonitor.from_config(rules).hooks == []


def test_console_line_lists_every_unit_and_the_share_only_for_entropy_collapse() -> None:
    from attnlife.track.health_signals import signals_from_rows

    rules = HealthConfig()
    signals = signals_from_rows(5, rows(collapsed((0, 1), (1, 0)), sink=0.9), T)
    sinks = [Alert(5, "sink_takeover", 0, -1, 0.9), Alert(5, "sink_takeover", 1, -1, 0.7)]
    want = "attention health: step 5: sink takeover at L0 (0.90), L1 (0.70); rule: mean attention of the layer on token 0 >= 0.5"
    assert console_line(sinks, rules, signals) == console_line(sinks, rules) == want
    heads = [Alert(5, "entropy_collapse", 0, 1, 0.125), Alert(5, "entropy_collapse", 1, 0, 0.25)]
    assert console_line(heads, rules) == ("attention health: step 5: entropy collapse at L0 H1 (0.12 bits), L1 H0 "
                                          "(0.25 bits); rule: entropy <= 0.5 bits, or a fall of >= 2 bits within 20 steps")
    assert console_line(heads, rules, signals) == ("attention health: step 5: entropy collapse at L0 H1 (0.12 bits), "
                                                   "L1 H0 (0.25 bits); heads <= 0.5 bits per layer 1/2 1/2; rule: "
                                                   "entropy <= 0.5 bits, or a fall of >= 2 bits within 20 steps")


def test_kinds_firing_at_one_step_get_one_line_each() -> None:
    lines = []
    monitor = HealthMonitor(HealthConfig(patience=1, collapse_fall_bits=100.0), echo=lines.append)
    got = monitor.on_light_rows(0, rows(collapsed((0, 1)), sink=0.9), T)
    assert [(a.kind, a.layer, a.head) for a in got] == [("entropy_collapse", 0, 1), ("sink_takeover", 0, -1),
                                                        ("sink_takeover", 1, -1)]
    assert lines == [
        "attention health: step 0: entropy collapse at L0 H1 (0.12 bits); heads <= 0.5 bits per layer 1/2 0/2; "
        "rule: entropy <= 0.5 bits, or a fall of >= 100 bits within 20 steps",
        "attention health: step 0: sink takeover at L0 (0.90), L1 (0.90); rule: mean attention of the layer on token 0 "
        ">= 0.5"]


def test_alert_rows_are_written_to_split_train_whatever_the_writers_default() -> None:
    class Writer:
        def __init__(self) -> None:
            self.calls = []

        def log_rows(self, step, rows, split="val"):
            self.calls.append((step, list(rows), split))

    writer = Writer()
    HealthMonitor(HealthConfig(patience=1, collapse_fall_bits=100.0), echo=None, writer=writer).on_light_rows(
        4, rows(collapsed((1, 0))), T)
    assert writer.calls == [(4, [MetricRow(1, 0, "alert_entropy_collapse", 0.125)], "train")]


def test_attach_to_a_light_tier_without_sinks() -> None:
    class Light:
        def __init__(self) -> None:
            self.listeners, self.writer = [], "w"

    monitor = HealthMonitor(HealthConfig(), echo=None).attach(Light())
    assert monitor.sinks == [] and monitor.writer == "w" and isinstance(monitor.control, TrainControl)


def test_one_token_sequences_are_read() -> None:
    monitor = HealthMonitor(HealthConfig(patience=1, collapse_fall_bits=100.0), echo=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # U(1) = 0: the dead-head share is NaN, quietly
        got = monitor.on_light_rows(0, rows(np.zeros((2, 2))), 1)
    assert [(a.kind, a.layer, a.head) for a in got] == [("entropy_collapse", l, h) for l in (0, 1) for h in (0, 1)]


def collapsed_run(tmp_path: Path) -> Path:
    """A run directory whose light rows show head (0, 0) collapsed from step 0."""
    writer = MetricWriter(tmp_path)
    for step in range(3):
        writer.log_rows(step, rows(collapsed((0, 0))), split="train")
    writer.close()
    return tmp_path


def start(monitor: HealthMonitor, run_dir: Path, start_step: int, config: dict, rank: int = 0) -> list:
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # a 1-token replay: H / U(1) is NaN, quietly
        monitor.on_train_start(TrainStart(run_dir=run_dir, config=config, model=None, start_step=start_step,
                                          device="cpu", rank=rank))
    return [(a.step, a.kind, a.layer, a.head) for a in monitor.alerts]


def test_which_train_starts_replay_the_run(tmp_path: Path) -> None:
    rules = HealthConfig(patience=1, collapse_fall_bits=100.0)
    run = collapsed_run(tmp_path)
    model = {"model": {"block_size": T}}
    assert start(HealthMonitor(rules, echo=None), run, 1, model) == [(0, "entropy_collapse", 0, 0)]   # from step 1
    assert start(HealthMonitor(rules, echo=None), run, 3, model, rank=1) == []          # other ranks never replay
    assert start(HealthMonitor(rules, echo=None), tmp_path / "absent", 0, model) == []  # a fresh run reads nothing
    for config in ({}, {"model": {}}, {"model": {"block_size": 0}}):                    # no sequence length: no replay
        assert start(HealthMonitor(rules, echo=None), run, 3, config) == []
    assert start(HealthMonitor(rules, echo=None), run, 3, {"model": {"block_size": 1}}) == [(0, "entropy_collapse", 0, 0)]


def test_lead_time_of_a_planted_collapse_before_a_planted_spike(tmp_path: Path) -> None:
    """Head (1, 0) collapses at step 10 (patience 3: the alert is dated 12); the loss spikes at 40:
    written alerts read back from disk give a lead of 28 steps, one unit."""
    from attnlife.analysis.health import health_note, health_tables

    writer = MetricWriter(tmp_path)
    monitor = HealthMonitor(HealthConfig(patience=3, collapse_fall_bits=100.0), echo=None, writer=writer)
    for step in range(50):
        monitor.on_light_rows(step, rows(collapsed((1, 0)) if step >= 10 else healthy()), T)
        writer.log(step, "loss", 4.0 - step / 100 + (1.0 if step == 40 else 0.0), split="train")
    writer.close()
    m = attnlife.load_run(tmp_path).metrics()
    tables = health_tables(m)
    assert tables["health_alerts"].values.tolist() == [["entropy_collapse", 1, 0, 12, 12, 1, 0.125]]
    assert tables["health_events"][["step", "event"]].values.tolist() == [[40, "spike"]]
    assert tables["health_leads"].values.tolist() == [[40, "spike", "entropy_collapse", 12.0, 28.0, 1]]
    assert health_note(tables)["earliest_alert_before"] == [
        {"event": "spike", "event_step": 40, "alert_kind": "entropy_collapse", "lead_steps": 28}]
