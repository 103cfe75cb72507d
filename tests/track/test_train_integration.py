"""The tracker plugged into the real trainer (`attnlife.run.run_training`) on tiny-shakespeare."""
from __future__ import annotations

from pathlib import Path

import pytest

import attnlife
from attnlife.config import build_config
from attnlife.track.summary import attention_summary
from attnlife.track.tracker import Tracker

TINY = ["model.n_layer=2", "model.n_head=2", "model.n_embd=16", "model.block_size=16", "model.dropout=0.1",
        "train.batch_size=4", "train.eval_iters=2", "train.eval_interval=4", "train.warmup_iters=2",
        "train.device=cpu", "train.max_iters=8", "train.lr_decay_iters=8", "track.every=3",
        "track.batch_fraction=0.5"]


def test_trainer_with_tracker_writes_metrics_and_keeps_losses(tmp_path, prepared):
    from attnlife.run import run_training

    def train(out: Path, tracked: bool):
        cfg = build_config("cpu", "shakespeare_char", overrides=TINY + [f"data.data_dir={prepared}"],
                           out_dir=str(out))
        callbacks = [Tracker.from_config(cfg.track)] if tracked else []
        run_training(cfg, callbacks, quiet=True)
        return attnlife.load_run(out).metrics()

    on, off = train(tmp_path / "on", True), train(tmp_path / "off", False)
    loss_on = on[on.metric == "loss"].set_index("step")["value"]
    loss_off = off[off.metric == "loss"].set_index("step")["value"]
    assert len(loss_on) == 8 and loss_on.equals(loss_off)  # dropout on, still bit-identical
    ent = on[on.metric == "entropy_bits"]
    # every 3 steps plus every checkpoint step (0, 1, 2, 4, 8 for 8 updates)
    assert sorted(ent["step"].unique()) == [0, 1, 2, 3, 4, 6, 8] and len(ent) == 7 * 2 * 2
    assert ent["stderr"].gt(0).all()  # 4 sequences: min_sequences=8 capped at the batch
    assert not off["metric"].str.startswith("entropy").any()
    assert set(on[on.metric == "eval_loss"]["split"]) == {"train", "val"}
    summary = attention_summary(on)
    assert list(summary["layer"]) == [0, 1] and summary["last_step"].iloc[0] == 8
