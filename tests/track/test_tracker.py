"""The tracker in a real training loop: identical losses, metric rows, eval rows, summary, CLI."""
from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

import attnlife
from attnlife.config import TrackConfig
from attnlife.events import EvalRecord, StepRecord, TrainStart
from attnlife.store.metrics_table import MetricWriter
from attnlife.track.summary import attention_summary
from attnlife.track.tracker import Tracker, TrackerConfigError
from tests.track.loop import train_loop


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    tracker = Tracker(every=5, batch_fraction=0.25, run_dir=run, snapshot_every=5, at_steps=())
    losses = train_loop(run, 11, tracker)
    tracker.log_eval(10, {"val": 2.5})
    tracker.close()
    return run, losses, tracker


def test_tracking_leaves_training_losses_identical(tracked_run):
    _, tracked, _ = tracked_run
    assert train_loop(None, 11, None) == tracked


def test_metrics_table_has_per_head_layer_and_model_rows(tracked_run):
    run, _, tracker = tracked_run
    m = attnlife.load_run(run).metrics()
    att = m[m["metric"] == "entropy_bits"]
    assert sorted(att["step"].unique()) == [0, 5, 10] and tracker.events == 3
    assert set(zip(att["layer"], att["head_index"])) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert (att["value"] > 0).all() and (att["value"] <= math.log2(32)).all()
    names = set(m["metric"])
    assert {"span_tokens", "mean_distance_tokens", "sink_mass", "entropy_norm", "head_jsd_mean",
            "head_entropy_var", "xlayer_jsd", "xlayer_cos", "track_ms"} <= names
    xl = m[m["metric"] == "xlayer_jsd"]
    assert set(zip(xl["layer"], xl["layer_b"])) == {(0, 1)} and (xl["value"] > 0).all()  # two layers: not self
    ev = m[m["metric"] == "eval_loss"]
    assert list(ev["split"]) == ["val"] and ev["value"].iloc[0] == 2.5
    assert not m.duplicated(["step", "split", "layer", "head_index", "layer_b", "metric"]).any()


def test_snapshots_written_at_snapshot_steps(tracked_run):
    run, _, _ = tracked_run
    store = attnlife.load_run(run).snapshots()
    assert store.names() == ["layer0", "layer1"] and store.steps("layer0") == [0, 5, 10]
    snap = store.read("layer1", 10).float()  # [H, R, T] at R = 32 rows (T <= 64)
    assert snap.shape == (2, 32, 32)
    torch.testing.assert_close(snap.sum(-1), torch.ones(2, 32), atol=2e-2, rtol=0)


def test_summary_frame_and_cli(tracked_run):
    run, _, _ = tracked_run
    s = attention_summary(attnlife.load_run(run).metrics())
    assert list(s["layer"]) == [0, 1] and (s["first_step"] == 0).all() and (s["last_step"] == 10).all()
    m = attnlife.load_run(run).metrics()
    want = m[(m.metric == "span_tokens") & (m.step == 10) & (m.layer == 1)]["value"].mean()
    assert s.loc[1, "span_tokens_last"] == pytest.approx(want)
    from attnlife.cli import app

    res = CliRunner().invoke(app, ["summary", str(run)])
    assert res.exit_code == 0, res.output
    assert "entropy bits @0" in res.output and f"{s.loc[0, 'entropy_bits_last']:.3f}" in res.output


def test_callback_uses_run_writer_and_logs_eval(tmp_path):
    from attnlife.model.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(block_size=8, vocab_size=10, n_layer=1, n_head=2, n_embd=8))
    writer = MetricWriter(tmp_path)
    tr = Tracker.from_config(TrackConfig(every=2, batch_fraction=0.5))
    x = torch.randint(0, 10, (4, 8))
    tr.on_train_start(TrainStart(run_dir=tmp_path, config={"train": {"ckpt_every": 250}}, model=model,
                                 start_step=0, device="cpu", metric_writer=writer,
                                 batch=(x, x)))
    for step in range(3):
        tr.on_step_end(StepRecord(step=step, loss=1.0, lr=1e-3, tokens_per_s=1.0, model=model, batch=(x, x)))
    tr.on_eval(EvalRecord(step=2, losses={"train": 1.5, "val": 1.7}))
    tr.flush()
    m = attnlife.load_run(tmp_path).metrics()
    # step 0 from the TrainStart batch; StepRecord(step=s) measures the weights after s + 1 updates;
    # without a checkpoint series in TrainStart the log-spaced 0, 1, 2 (<= every) are tracked
    assert sorted(m[m.metric == "entropy_bits"]["step"].unique()) == [0, 1, 2]
    assert dict(zip(m[m.metric == "eval_loss"]["split"], m[m.metric == "eval_loss"]["value"])) == {"train": 1.5, "val": 1.7}
    assert model.training  # train mode restored


def test_bad_settings_are_one_line_errors():
    with pytest.raises(TrackerConfigError, match="must be >= 1"):
        Tracker(every=0)
    with pytest.raises(TrackerConfigError, match=r"in \(0, 1\]"):
        Tracker(batch_fraction=1.5)


def test_summary_of_missing_run_is_one_line_error(tmp_path, capsys):
    from attnlife.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["summary", str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: run directory") and "does not exist" in err[0]
