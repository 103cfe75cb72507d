"""TensorBoard scalars read back from event files; W&B offline run files written."""
from __future__ import annotations

from attnlife.store.metrics_table import MetricRow
from attnlife.store.sinks import TensorBoardSink, WandbSink, scalar_tag

ROWS = [MetricRow(0, 1, "entropy_bits", 1.25), MetricRow(1, -1, "head_jsd_mean", 0.5),
        MetricRow(0, -1, "xlayer_jsd", 0.125, layer_b=1)]


def test_scalar_tags_group_by_metric_then_layer_then_head():
    assert [scalar_tag(r.metric, r.layer, r.head_index, r.layer_b) for r in ROWS] == [
        "attn/entropy_bits/L0/H1", "attn/head_jsd_mean/L1", "attn/xlayer_jsd/L0-L1"]


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path / "tb")
    sink.log_rows(0, ROWS)
    sink.log_rows(5, [MetricRow(0, 1, "entropy_bits", 2.5)])
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"attn/entropy_bits/L0/H1", "attn/head_jsd_mean/L1", "attn/xlayer_jsd/L0-L1"}
    ev = acc.Scalars("attn/entropy_bits/L0/H1")
    assert [(e.step, e.value) for e in ev] == [(0, 1.25), (5, 2.5)]


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    sink = WandbSink(tmp_path, project="attnlife-test")
    sink.log_rows(3, ROWS)
    sink.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].glob("*.wandb")  # protobuf transaction log: history rows are JSON-encoded
    data = log.read_bytes()
    for tag, value in (("attn/entropy_bits/L0/H1", "1.25"), ("attn/xlayer_jsd/L0-L1", "0.125")):
        assert tag.encode() in data and value.encode() in data


def test_tracker_feeds_tensorboard_sink(tmp_path):
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from attnlife.model.gpt import GPT, GPTConfig
    from attnlife.track.tracker import Tracker

    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=2, n_head=2, n_embd=8))
    tr = Tracker(every=1, batch_fraction=1.0, sinks=[TensorBoardSink(tmp_path / "tb")])
    rows = tr.track(0, model, torch.randint(0, 10, (2, 8)))
    tr.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    want = {r.value for r in rows if (r.layer, r.head_index, r.metric) == (1, 0, "span_tokens")}
    (ev,) = acc.Scalars("attn/span_tokens/L1/H0")
    assert {"attn/xlayer_cos/L0-L1", "attn/head_jsd_mean/L0", "attn/track_ms"} <= set(acc.Tags()["scalars"])
    assert abs(ev.value - want.pop()) < 1e-6
