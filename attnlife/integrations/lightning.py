"""Lightning callback that drives an attnlife `Tracker`.

    from attnlife.integrations.lightning import AttnlifeLightningCallback
    trainer = L.Trainer(..., callbacks=[AttnlifeLightningCallback(Tracker(every=500, run_dir="runs/pl"))])

The step is `trainer.global_step - 1` after each optimizer step (0-based, like `attnlife train`);
the batch is the step's own batch (ids, (x, y) or a dict with input_ids). The capturable model
(our GPT, a HF causal LM or a TransformerLens model) is found inside the LightningModule.
Validation `val_loss` / `eval_loss` from `trainer.callback_metrics` is logged with split `val`.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from attnlife.track.tracker import Tracker


class AttnlifeLightningCallback(pl.Callback):
    """Tracks attention every `tracker.every` optimizer steps of a Lightning Trainer."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.is_global_zero:
            self.tracker.maybe_track(trainer.global_step - 1, pl_module, batch)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        for key in ("val_loss", "eval_loss"):
            if key in trainer.callback_metrics:
                self.tracker.log_eval(max(trainer.global_step - 1, 0),
                                      {"val": float(trainer.callback_metrics[key])})
                break

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self.tracker.flush()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.close()
