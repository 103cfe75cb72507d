"""Hugging Face `Trainer` callback that drives an attnlife `Tracker`.

    from attnlife.integrations.hf import AttnlifeHFCallback
    tracker = Tracker(every=500, run_dir="runs/hf")
    trainer = Trainer(..., callbacks=[AttnlifeHFCallback(tracker)])

Step convention (the same as `attnlife train`): step s = the weights after s optimizer updates,
i.e. `state.global_step`. The weights at step 0 (or a resumed start) are measured in
`on_train_begin`, every later step in `on_step_end` (once per optimizer step, also under
gradient accumulation); `eval_loss` from `on_evaluate` is logged at `state.global_step` with split
`val`, so attention, eval loss and HF's `checkpoint-{global_step}` describe the same weights.

Training loss and learning rate go into the same table (split `train`, like `attnlife train`):
- `lr` at step s = the learning rate of the update that starts from the weights of step s, read
  from the optimizer in `on_train_begin` / `on_step_end` (after the scheduler stepped), so it does
  not depend on which value a transformers version puts into its logs.
- `loss` from HF's logs (`logging_steps`): the mean training loss of the updates since the last
  log, i.e. of the forwards on the weights of steps g - n .. g - 1 when HF logs at global step g
  after n updates; it is written at step g - 1, the last weights it includes (a trailing mean;
  exact per step with `logging_steps=1`). Under DDP it is HF's loss averaged over processes.

HF callbacks never see the step's batch, so the tracker probes a fixed batch: `probe_batch`
(token ids [B, T]) if given, else the first `per_device_train_batch_size` examples of the train
dataloader's dataset, collated by its collate_fn (indexing, not iterating: no RNG is consumed).
Rows are flushed in `on_step_end` of a step HF is about to save (`control.should_save`), so a
`checkpoint-N` folder on disk implies the rows up to step N are on disk.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from transformers import TrainerCallback

from attnlife.errors import AttnlifeError
from attnlife.track.health_monitor import HealthMonitor
from attnlife.track.hf_light import HFLightCallback, HFLightStats
from attnlife.track.tracker import Tracker, batch_inputs


class ProbeBatchError(AttnlifeError):
    """The HF callback has no batch to probe attention with."""


class AttnlifeHFCallback(TrainerCallback):
    """Tracks attention at the tracker's steps of a transformers Trainer (labels = global_step)."""

    def __init__(self, tracker: Tracker, probe_batch: Optional[torch.Tensor] = None) -> None:
        self.tracker = tracker
        self.probe_batch = probe_batch

    def _probe_from(self, args: Any, loader: Any) -> torch.Tensor:
        dataset = getattr(loader, "dataset", None)
        if dataset is None or not hasattr(dataset, "__getitem__"):
            raise ProbeBatchError("AttnlifeHFCallback needs token ids to probe: pass probe_batch=[B, T] "
                                  "ids (the train dataset is not indexable)")
        n = min(len(dataset), args.per_device_train_batch_size)
        return batch_inputs(loader.collate_fn([dataset[i] for i in range(n)]))

    def _track(self, args: Any, state: Any, model: Any, loader: Any) -> None:
        step = int(state.global_step)
        if model is None or not state.is_world_process_zero or not self.tracker.should_track(step):
            return
        if self.probe_batch is None:
            self.probe_batch = self._probe_from(args, loader)
        self.tracker.maybe_track(step, model, self.probe_batch.to(next(model.parameters()).device))

    def _log_lr(self, state: Any, optimizer: Any) -> None:
        step = int(state.global_step)
        if optimizer is None or not state.is_world_process_zero or (state.max_steps and step >= state.max_steps):
            return  # no update starts from the final weights
        self.tracker.log(step, "lr", float(optimizer.param_groups[0]["lr"]))

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._track(args, state, model, kwargs.get("train_dataloader"))
        self._log_lr(state, kwargs.get("optimizer"))

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._track(args, state, model, kwargs.get("train_dataloader"))
        if getattr(control, "should_save", False):  # HF saves right after this event: rows first
            self.tracker.flush()
        self._log_lr(state, kwargs.get("optimizer"))

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        step = int(state.global_step)
        if not logs or "loss" not in logs or not state.is_world_process_zero or step <= 0:
            return
        self.tracker.log(step - 1, "loss", float(logs["loss"]))

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> None:
        if metrics and "eval_loss" in metrics and state.is_world_process_zero:
            self.tracker.log_eval(int(state.global_step), {"val": metrics["eval_loss"]})

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tracker.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.tracker.close()


class HFHealthCallback(HFLightCallback):
    """transformers `Trainer` callback: the light tier (`HFLightStats`) at every `stats.every`-th
    optimizer step plus attention-health alerts (`HealthMonitor`, rows in the light tier's run
    directory). The monitor's requests become the Trainer's own: checkpoint -> `should_save`
    (the Trainer writes `checkpoint-<global_step>`), stop -> `should_save` and
    `should_training_stop`; `callback.stopped` then says why (the script picks its exit code).

        stats = HFLightStats(model, run_dir="runs/hf")
        trainer = Trainer(..., callbacks=[HFHealthCallback(stats, HealthMonitor(HealthConfig(on_alert="stop")))])
    """

    def __init__(self, stats: HFLightStats, monitor: Optional[HealthMonitor] = None) -> None:
        super().__init__(stats)
        self.monitor = (monitor if monitor is not None else HealthMonitor()).attach(stats)
        self.stopped: Optional[str] = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.monitor.model = model
        self.monitor.rank = 0 if state.is_world_process_zero else 1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_step_end(args, state, control, **kwargs)        # rows -> monitor -> requests
        asked = self.monitor.control
        if asked.stop_reason is not None:
            if self.stopped is None:
                self.stopped = f"at step {state.global_step} {asked.stop_reason}"
            control.should_save = True
            control.should_training_stop = True
        elif asked.checkpoint_reason is not None:
            asked.checkpoint_reason = None
            control.should_save = True
