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

Training loss and learning rate go into the same table (split `train`, like `attnlife train`):
`lr` at step s = the optimizer's learning rate when update s starts (first micro-batch), `loss`
at step s = the mean of the losses `training_step` returned for the micro-batches of update s
(all computed on the weights of step s), written once the update's last micro-batch ended.
Under DDP these are rank zero's own values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import lightning.pytorch as pl

from attnlife.track.health_monitor import HealthMonitor
from attnlife.track.light_tracker import LightTracker
from attnlife.track.tracker import Tracker


class AttnlifeLightningCallback(pl.Callback):
    """Tracks attention at the tracker's steps of a Lightning Trainer (labels = global_step)."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker
        self._last_step = -1
        self._last_batch: Any = None
        self._losses: list[float] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._last_batch = batch
        step = int(trainer.global_step)
        if step == self._last_step or not trainer.is_global_zero:
            return  # a later micro-batch of the same optimizer step
        self._flush_loss()
        self._last_step = step
        if trainer.optimizers:
            self.tracker.log(step, "lr", float(trainer.optimizers[0].param_groups[0]["lr"]))
        self.tracker.maybe_track(step, pl_module, batch)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not trainer.is_global_zero:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        # automatic optimization hands over training_step's loss divided by accumulate_grad_batches
        scale = trainer.accumulate_grad_batches if getattr(pl_module, "automatic_optimization", True) else 1
        self._losses.append(float(loss.detach() if hasattr(loss, "detach") else loss) * scale)

    def _flush_loss(self) -> None:
        """Write the mean loss of the micro-batches of update `_last_step` (all on its weights)."""
        if self._losses and self._last_step >= 0:
            self.tracker.log(self._last_step, "loss", sum(self._losses) / len(self._losses))
        self._losses = []

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
        if trainer.is_global_zero:
            self._flush_loss()
        step = int(trainer.global_step)
        if trainer.is_global_zero and step != self._last_step and self._last_batch is not None:
            self._last_step = step
            self.tracker.maybe_track(step, pl_module, self._last_batch)
        self.tracker.close()


class LightningHealthCallback(pl.Callback):
    """Lightning callback: the light tier read at every optimizer step (a `LightTracker` for our
    GPT inside the module, or `attnlife.track.hf_light.HFLightStats` for a HF model) plus
    attention-health alerts (`HealthMonitor`, rows in the light tier's run directory). Requests:
    checkpoint -> `trainer.save_checkpoint(<checkpoint_dir>/attnlife-alert-step<N>.ckpt)`
    (default dir: the trainer's `default_root_dir`); stop -> that checkpoint, then
    `trainer.should_stop = True`, and `callback.stopped` says why.

        light = LightTracker(run_dir="runs/pl")
        trainer = L.Trainer(..., callbacks=[LightningHealthCallback(light, HealthMonitor())])
    """

    def __init__(self, light: Union[LightTracker, Any], monitor: Optional[HealthMonitor] = None,
                 checkpoint_dir: Optional[Union[str, Path]] = None) -> None:
        super().__init__()
        self.light = light
        self.monitor = (monitor if monitor is not None else HealthMonitor()).attach(light)
        self.checkpoint_dir = checkpoint_dir
        self.stopped: Optional[str] = None
        self._armed_step = -1

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.monitor.model = pl_module
        self.monitor.rank = 0 if trainer.is_global_zero else 1

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        step = int(trainer.global_step)
        if step == self._armed_step or not trainer.is_global_zero:
            return                          # a later micro-batch of the same optimizer step
        self._armed_step = step
        if isinstance(self.light, LightTracker):
            self.light.arm(pl_module, step)
        else:
            self.light.arm(step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.light.collect()                # rows -> monitor (nothing when not armed)
        if isinstance(self.light, LightTracker):
            self.light.compute_pending()
        asked = self.monitor.control
        if asked.stop_reason is not None and self.stopped is None:
            self.stopped = f"at step {trainer.global_step} {asked.stop_reason}"
            self._save(trainer)
            trainer.should_stop = True
        elif asked.checkpoint_reason is not None:
            asked.checkpoint_reason = None
            self._save(trainer)

    def _save(self, trainer: Any) -> None:
        folder = Path(self.checkpoint_dir or trainer.default_root_dir)
        trainer.save_checkpoint(str(folder / f"attnlife-alert-step{int(trainer.global_step)}.ckpt"))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if isinstance(self.light, LightTracker):
            self.light.flush()
        else:
            self.light.close()
