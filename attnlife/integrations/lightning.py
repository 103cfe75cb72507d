"""Lightning callback that drives an attnlife `Tracker`.

    from attnlife.integrations.lightning import AttnlifeLightningCallback
    trainer = L.Trainer(..., callbacks=[AttnlifeLightningCallback(Tracker(every=500, run_dir="runs/pl"))])

Step convention (the same as `attnlife train`): step s = the weights after s optimizer updates,
i.e. `trainer.global_step`. Step s is measured in `on_train_batch_start` of the first
micro-batch of update s, on that batch, before the update: once per optimizer step, also with
`accumulate_grad_batches`. The final weights (after the last update) are measured at
`on_train_end` on the last batch seen. Validation `val_loss` / `eval_loss` from
`trainer.callback_metrics` is logged at `trainer.global_step` with split `val`. The batch may be
ids, (x, y) or a dict with input_ids; the capturable model (our GPT, a HF causal LM or a
TransformerLens model) is found inside the LightningModule.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from attnlife.track.tracker import Tracker


class AttnlifeLightningCallback(pl.Callback):
    """Tracks attention at the tracker's steps of a Lightning Trainer (labels = global_step)."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker
        self._last_step = -1
        self._last_batch: Any = None

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._last_batch = batch
        step = int(trainer.global_step)
        if step == self._last_step or not trainer.is_global_zero:
            return  # a later micro-batch of the same optimizer step
        self._last_step = step
        self.tracker.maybe_track(step, pl_module, batch)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        for key in ("val_loss", "eval_loss"):
            if key in trainer.callback_metrics:
                self.tracker.log_eval(int(trainer.global_step),
                                      {"val": float(trainer.callback_metrics[key])})
                break

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self.tracker.flush()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        step = int(trainer.global_step)
        if trainer.is_global_zero and step != self._last_step and self._last_batch is not None:
            self._last_step = step
            self.tracker.maybe_track(step, pl_module, self._last_batch)
        self.tracker.close()
