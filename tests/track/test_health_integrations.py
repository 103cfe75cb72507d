"""Attention-health alerts and actions under the HF Trainer and Lightning (tiny real models).

The rules are set so that a freshly initialised model (near-uniform attention) is a "dead head"
from step 0: every head alerts at the first read step, which exercises rows, hooks and actions.
"""
from __future__ import annotations

import pytest
import torch

import attnlife
from attnlife.config import HealthConfig
from attnlife.track.health_monitor import HealthMonitor
from tests.track.test_integrations import TokenDataset

DEAD_AT_ONCE = dict(dead_after_steps=0, dead_uniform_fraction=0.5, patience=1)


def hf_trainer(tmp_path, callback, max_steps: int = 3):
    import transformers as tf

    torch.manual_seed(0)
    model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    args = tf.TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=max_steps, per_device_train_batch_size=4,
                                logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                                disable_tqdm=True)
    return model, lambda cb: tf.Trainer(model=model, args=args, train_dataset=TokenDataset(32, 16, 32, 0),
                                        callbacks=[cb])


@pytest.mark.parametrize("action", ["stop", "checkpoint"])
def test_hf_trainer_alerts_and_acts(tmp_path, action):
    from attnlife.integrations.hf import HFHealthCallback
    from attnlife.track.hf_light import HFLightStats

    model, make = hf_trainer(tmp_path, None)
    seen = []
    monitor = HealthMonitor(HealthConfig(on_alert=action, **DEAD_AT_ONCE), hooks=[lambda a, m: seen.append(a)],
                            echo=None)
    callback = HFHealthCallback(HFLightStats(model, batch_fraction=0.5, run_dir=tmp_path / "run"), monitor)
    trainer = make(callback)
    trainer.train()
    m = attnlife.load_run(tmp_path / "run").metrics()
    dead = m[m.metric == "alert_dead_head"]
    assert sorted(zip(dead.layer, dead.head_index)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert set(dead.step) == {0} and (dead.split == "train").all() and (dead.value > 0.5).all()
    assert len(seen) == 4 and monitor.model is model
    assert (tmp_path / "hf" / "checkpoint-1").is_dir()             # saved after the first update
    if action == "stop":
        assert trainer.state.global_step == 1
        assert callback.stopped.startswith("at step 1 on an attention-health alert")
    else:
        assert trainer.state.global_step == 3 and callback.stopped is None
        assert not (tmp_path / "hf" / "checkpoint-2").exists()      # one checkpoint per kind


def test_lightning_alerts_and_stops(tmp_path):
    import lightning.pytorch as pl

    from attnlife.integrations.lightning import LightningHealthCallback
    from attnlife.track.light_tracker import LightTracker
    from tests.track.helpers import gpt_lightning_module

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from attnlife.store.sinks import TensorBoardSink

    torch.manual_seed(0)
    light = LightTracker(every=1, batch_fraction=0.5, run_dir=tmp_path / "run", sinks=[TensorBoardSink(tmp_path / "tb")])
    callback = LightningHealthCallback(light, HealthMonitor(HealthConfig(on_alert="stop", **DEAD_AT_ONCE), echo=None))
    loader = torch.utils.data.DataLoader(TokenDataset(24, 16, 32, 0), batch_size=4)
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[callback], default_root_dir=str(tmp_path))
    trainer.fit(gpt_lightning_module(), loader)
    assert trainer.global_step == 1 and callback.stopped.startswith("at step 1 on an attention-health alert")
    assert (tmp_path / "attnlife-alert-step1.ckpt").is_file()
    m = attnlife.load_run(tmp_path / "run").metrics()
    dead = m[m.metric == "alert_dead_head"]
    assert len(dead) == 4 and set(dead.step) == {0}
    assert set(m[m.metric == "light_entropy_bits"].step) == {0}
    light.close()                                                  # the alerts reached the tracker's sink
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    for r in dead.itertuples():
        (event,) = acc.Scalars(f"alert_dead_head/L{r.layer}/H{r.head_index}")
        assert event.step == 0 and event.value == pytest.approx(r.value, abs=1e-6)
