"""The trainer on real tiny-shakespeare: metrics, events, checkpoint series, retention, errors."""
from __future__ import annotations

import json
import math

import pytest
import torch

from attnlife.errors import ConfigError, RunDirError
from attnlife.events import Callback
from attnlife.run import default_callbacks, run_training
from attnlife.store.checkpoints import TRAINER_STATE_FILE, load_meta
from attnlife.store.run_dir import load_run
from attnlife.train.schedule import lr_at
from tests.train.conftest import tiny_config


class Recorder(Callback):
    """Keeps every event it receives, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_train_start(self, rec): self.events.append(("start", rec))
    def on_step_end(self, rec): self.events.append(("step", rec))
    def on_eval(self, rec): self.events.append(("eval", rec))
    def on_checkpoint(self, rec): self.events.append(("ckpt", rec))
    def on_train_end(self, rec): self.events.append(("end", rec))


@pytest.fixture(scope="module")
def trained(prepared_dir, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "r"
    config = tiny_config(prepared_dir, out, 12, "train.ckpt_every=10")
    rec = Recorder()
    assert [type(c).__name__ for c in default_callbacks(config)] == ["Tracker", "LightTracker", "HealthMonitor"]
    config.health.enabled = False
    assert [type(c).__name__ for c in default_callbacks(config)] == ["Tracker", "LightTracker"]
    config.track.enabled = False
    assert default_callbacks(config) == []
    run_dir = run_training(config, [rec], quiet=True)
    return config, run_dir, rec


def test_metrics_table(trained) -> None:
    config, run_dir, _ = trained
    m = load_run(run_dir).metrics()
    loss = m[m.metric == "loss"]
    assert loss["step"].tolist() == list(range(12)) and set(loss["split"]) == {"train"}
    assert (loss[["layer", "head_index"]] == -1).all().all()
    # untrained model on 65 symbols: cross-entropy near ln(65) nats
    assert loss["value"].iloc[0] == pytest.approx(math.log(65), abs=0.15)
    tc = config.train
    lrs = m[m.metric == "lr"].set_index("step")["value"]
    for step, lr in lrs.items():
        assert lr == pytest.approx(lr_at(step, tc.learning_rate, tc.min_lr, tc.warmup_iters, tc.lr_decay_iters))
    assert (m[m.metric == "tokens_per_s"]["value"] > 0).all()
    ev = m[m.metric == "eval_loss"]
    assert sorted(set(ev["step"])) == [0, 5, 10, 12]
    assert sorted(set(ev["split"])) == ["train", "val"]


def test_checkpoint_series_and_meta(trained) -> None:
    _, run_dir, _ = trained
    ckpts = load_run(run_dir).checkpoints()
    assert [s for s, _ in ckpts] == [0, 1, 2, 4, 8, 10, 12]
    with_state = [s for s, p in ckpts if (p / TRAINER_STATE_FILE).exists()]
    assert with_state == [12]  # trainer state only in the newest
    meta = load_meta(ckpts[-1][1])
    assert meta["step"] == 12 and meta["tokens_seen"] == 12 * 4 * 16
    assert meta["model_config"]["vocab_size"] == 65 and meta["dataset"] == "shakespeare_char"
    m = load_run(run_dir).metrics()
    val12 = m[(m.metric == "eval_loss") & (m.step == 12) & (m.split == "val")]["value"].item()
    assert meta["val_loss"] == pytest.approx(val12)
    assert "val_loss" not in load_meta(ckpts[1][1])  # step 1 was not an eval step
    record = json.loads((run_dir / "run.json").read_text())
    assert record["seed"] == 1337 and record["dataset"]["vocab_size"] == 65
    assert record["dataset"]["split_tokens"]["train"] > 1_000_000
    assert record["config"]["train"]["max_iters"] == 12 and record["world_size"] == 1


def test_events(trained) -> None:
    _, run_dir, rec = trained
    kinds = [k for k, _ in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 12 and kinds.count("eval") == 4 and kinds.count("ckpt") == 7
    steps = [r for k, r in rec.events if k == "step"]
    assert [r.step for r in steps] == list(range(12))
    x, y = steps[0].batch
    assert x.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    assert steps[0].model is rec.events[0][1].model and steps[0].rank == 0
    assert rec.events[0][1].metric_writer.directory == run_dir / "metrics"   # the run's own table
    # step 0's update comes after eval 0 and checkpoint 0
    assert kinds[1:4] == ["eval", "ckpt", "step"]
    end = rec.events[-1][1]
    assert end.step == 12 and end.summary["checkpoints"] == 7
    assert set(end.summary["eval_losses"]) == {"train", "val"}


def test_retention_and_no_resume(prepared_dir, tmp_path) -> None:
    torch.set_num_threads(1)
    config = tiny_config(prepared_dir, tmp_path / "r", 9, "train.ckpt_keep=3", "train.eval_interval=100",
                         "train.gradient_accumulation_steps=2")
    run_training(config, quiet=True)
    ckpts = load_run(tmp_path / "r").checkpoints()
    assert [s for s, _ in ckpts] == [0, 1, 9]  # thinned as it went: 2 at 4, 4 at 8, 8 at 9
    assert (ckpts[-1][1] / TRAINER_STATE_FILE).exists()
    with pytest.raises(RunDirError, match="already holds checkpoints up to step 9"):
        run_training(config, quiet=True, resume=False)
    # resuming a finished run does nothing and keeps the series
    run_training(config, quiet=True)
    assert [s for s, _ in load_run(tmp_path / "r").checkpoints()] == [0, 1, 9]


def test_bad_values_fail_before_writing(prepared_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match="train.batch_size = 0 must be >= 1"):
        run_training(tiny_config(prepared_dir, tmp_path / "a", 3, "train.batch_size=0"))
    with pytest.raises(ConfigError, match="not divisible"):
        run_training(tiny_config(prepared_dir, tmp_path / "b", 3, "model.n_head=3"))
    with pytest.raises(ConfigError, match="unknown device"):
        run_training(tiny_config(prepared_dir, tmp_path / "c", 3, "train.device=tpu"))
    assert not any(tmp_path.iterdir())


def test_bfloat16_autocast_on_cpu(prepared_dir, tmp_path) -> None:
    torch.set_num_threads(1)
    config = tiny_config(prepared_dir, tmp_path / "bf16", 3, "train.dtype=bfloat16", "train.eval_interval=3")
    run_dir = run_training(config, quiet=True)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["dtype"] == "bfloat16"
    m = load_run(run_dir).metrics()
    losses = m[m.metric == "loss"]["value"]
    assert len(losses) == 3 and losses.between(math.log(65) - 0.3, math.log(65) + 0.3).all()
    from attnlife.store.checkpoints import load_state_dict
    assert all(v.dtype == torch.float32 for v in load_state_dict(run_dir / "checkpoints" / "step_0000003").values())
