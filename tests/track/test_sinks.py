"""TensorBoard scalars read back from event files; W&B offline run files written."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import attnlife
from attnlife.cli import app
from attnlife.store.metrics_table import MetricRow
from attnlife.store.sinks import TensorBoardSink, WandbSink, scalar_tag
from tests.support.wandb_offline import offline_run_log, offline_wandb

ROWS = [MetricRow(0, 1, "entropy_bits", 1.25), MetricRow(1, -1, "head_jsd_mean", 0.5),
        MetricRow(0, -1, "xlayer_jsd", 0.125, layer_b=1)]


def test_scalar_tags_group_by_metric_then_layer_then_head():
    assert [scalar_tag(r.metric, r.layer, r.head_index, r.layer_b) for r in ROWS] == [
        "entropy_bits/L0/H1", "head_jsd_mean/L1", "xlayer_jsd/L0-L1"]


def test_tensorboard_event_files_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = TensorBoardSink(tmp_path / "tb")
    sink.log_rows(0, ROWS)
    sink.log_rows(5, [MetricRow(0, 1, "entropy_bits", 2.5)])
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"entropy_bits/L0/H1", "head_jsd_mean/L1", "xlayer_jsd/L0-L1"}
    ev = acc.Scalars("entropy_bits/L0/H1")
    assert [(e.step, e.value) for e in ev] == [(0, 1.25), (5, 2.5)]


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    offline_wandb(monkeypatch)
    sink = WandbSink(tmp_path, project="attnlife-test")
    assert sink.run.settings.init_timeout == 600.0  # the limits reached wandb
    sink.log_rows(3, ROWS)
    sink.log_config({"model": {"n_embd_probe_value": 16}})
    sink.close()
    data = offline_run_log(tmp_path)
    for row, value in ((ROWS[0], "1.25"), (ROWS[2], "0.125")):
        tag = scalar_tag(row.metric, row.layer, row.head_index, row.layer_b)
        assert tag.encode() in data and value.encode() in data
    assert b"n_embd_probe_value" in data  # the run config went into the run's record


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
    (ev,) = acc.Scalars("span_tokens/L1/H0")
    assert {"xlayer_cos/L0-L1", "head_jsd_mean/L0", "track_ms"} <= set(acc.Tags()["scalars"])
    assert abs(ev.value - want.pop()) < 1e-6


def test_attnlife_train_tensorboard_gets_loss_lr_config_and_one_section_per_metric(tmp_path, prepared):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    sets = ["model.n_layer=2", "model.n_head=2", "model.n_embd=16", "model.block_size=16",
            "train.batch_size=4", "train.eval_iters=1", "train.eval_interval=2", "train.max_iters=3",
            "train.lr_decay_iters=3", "track.light_every=0"]
    args = ["train", "--quiet", "--device", "cpu", "--dataset", "shakespeare_char", "--data-dir", str(prepared),
            "--out", str(out), "--tensorboard"] + [a for s in sets for a in ("--set", s)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "lr", "tokens_per_s", "eval_loss/val", "entropy_bits/L0/H0", "xlayer_jsd/L0-L1"} <= tags
    assert [e.step for e in acc.Scalars("loss")] == [0, 1, 2]
    m = attnlife.load_run(out).metrics()
    want = m[(m.metric == "loss")].sort_values("step")["value"].tolist()
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx(want, rel=1e-6)
    sections = {t.split("/")[0] for t in tags}
    assert {"entropy_bits", "sink_mass", "loss", "lr", "eval_loss"} <= sections
    (config_tag,) = [t for t in acc.Tags()["tensors"] if t.startswith("config")]
    text = acc.Tensors(config_tag)[0].tensor_proto.string_val[0].decode()
    assert '"n_embd": 16' in text
