"""Attention-health alerts reach TensorBoard (under `attnlife train --tensorboard`) and W&B (offline)."""
from __future__ import annotations

import pytest

import attnlife
from attnlife.store.metrics_table import MetricRow
from attnlife.store.sinks import WandbSink
from attnlife.track.health_monitor import HealthMonitor
from tests.support.wandb_offline import offline_run_log, offline_wandb


def test_attnlife_train_tensorboard_gets_the_alerts(unstable_health_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, result = unstable_health_run                     # --tensorboard, lr 0.03 (tests/conftest.py)
    assert result.exit_code == 0, result.output
    m = attnlife.load_run(out).metrics()
    rows = m[m.metric == "alert_entropy_collapse"]
    assert len(rows)
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    for (layer, head), group in rows.groupby(["layer", "head_index"]):
        events = acc.Scalars(f"alert_entropy_collapse/L{layer}/H{head}")
        assert [e.step for e in events] == group.step.tolist()
        assert [e.value for e in events] == pytest.approx(group.value.tolist(), abs=1e-6)


def test_alerts_reach_a_wandb_offline_run(tmp_path, monkeypatch):
    offline_wandb(monkeypatch)
    sink = WandbSink(tmp_path, project="attnlife-test")
    monitor = HealthMonitor(sinks=[sink], echo=None)
    for step in range(4):                  # layer 1's heads put 0.95 of their attention on token 0
        rows = [MetricRow(layer, h, name, value) for layer in (0, 1) for h in (0, 1) for name, value in
                (("light_entropy_bits", 3.0), ("light_lse_max_nats", 6.0),
                 ("light_sink_mass", 0.95 if layer == 1 else 0.06))]
        monitor.on_light_rows(step, rows, 64)
    sink.close()
    data = offline_run_log(tmp_path)
    assert [a.step for a in monitor.alerts] == [2] and monitor.alerts[0].kind == "sink_takeover"
    assert b"alert_sink_takeover/L1" in data and b"0.95" in data
