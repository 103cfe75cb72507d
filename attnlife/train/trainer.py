"""The training loop: AdamW, warmup + cosine LR, clipping, accumulation, eval, checkpoints, DDP.

One iteration at `step` (= updates done so far, the weights of checkpoint `step_s`):
  1. eval (mean loss over `eval_iters` batches of train and val) if step % eval_interval == 0
     or step == max_iters;
  2. checkpoint if step is in the series (`checkpoint_series.is_checkpoint_step`): callbacks get
     CheckpointDue and flush, the metric writer flushes, then the checkpoint is renamed into
     place (so a checkpoint on disk implies every row up to its step is on disk), then
     CheckpointRecord;
  3. stop if step == max_iters, else one optimizer update with lr = lr_at(step) on
     `gradient_accumulation_steps` micro-batches, clipped to `grad_clip`, then log `loss`, `lr`,
     `tokens_per_s` at `step` and emit StepRecord(step).
Eval batches are fixed for the whole run (their own seeded samplers, rebuilt at every eval), so
eval curves compare like with like and evaluation never touches the training RNG streams.

Files are written by rank 0 only; callbacks are called on every rank with `rank` set and
`metric_writer=None` on ranks > 0. The trainer never imports the tracker (see attnlife.run).
Rank 0 holds the run directory's lock (`attnlife.store.lock`) for the whole run. Early stops
(`attnlife.train.guards`): SIGTERM/SIGINT finish the update, checkpoint, raise TrainingInterrupted;
a non-finite loss (or a spike, train.loss_spike_factor) or non-finite weights at a checkpoint
raise DivergenceError, leaving the newest finite checkpoint as the last one. A callback may ask
(through `TrainStart.control`, an `attnlife.events.TrainControl`) for a checkpoint of the current
weights or for a stop: honoured at the next step boundary, a stop writes that checkpoint and
raises TrainingStopped (exit code 3).
"""
from __future__ import annotations

import contextlib
import gc
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from tqdm import tqdm

from attnlife.config import RunConfig
from attnlife.data import BatchSampler, SplitTooShortError, load_prepared
from attnlife.errors import (CheckpointError, DivergenceError, RunDirError, TrainingInterrupted,
                             TrainingStopped)
from attnlife.events import (Callback, CheckpointDue, CheckpointRecord, EvalRecord, StepRecord, TrainControl,
                             TrainEnd, TrainStart)
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.store.checkpoints import load_state_dict
from attnlife.store.metrics_table import MetricWriter
from attnlife.store.lock import run_lock
from attnlife.store.layout import RunPaths, list_checkpoints
from attnlife.store.run_dir import Run, write_run_json
from attnlife.train.checkpoint_series import checkpoint_steps, is_checkpoint_step
from attnlife.train.checkpointing import (capture_rng_state, restore_rng_state, resume_point,
                                          write_series_checkpoint)
from attnlife.train.guards import LossGuard, SignalCatcher, weights_finite
from attnlife.train.run_record import (check_same_dataset, dataset_record, run_record,
                                       validate_config)
from attnlife.train.runtime import (autocast_context, destroy_process_group, dist_info_from_env,
                                    init_process_group, resolve_device, resolve_dtype)
from attnlife.train.schedule import lr_at

EVAL_SEED_OFFSET = {"train": 1_000_003, "val": 2_000_003}


class Trainer:
    """Trains `config` into `config.out_dir`, emitting events to `callbacks`; see module docs."""

    def __init__(self, config: RunConfig, callbacks: Optional[Iterable[Callback]] = None,
                 quiet: bool = False, resume: bool = True, allow_data_change: bool = False) -> None:
        validate_config(config)
        self.config = config
        self.callbacks = list(callbacks or [])
        self.quiet = quiet
        self.resume = resume
        self.allow_data_change = allow_data_change
        self.loss_guard = LossGuard(config.train.loss_spike_factor)
        self.last_checkpoint_step = -1
        self.info = dist_info_from_env()
        self.run_dir = Path(config.out_dir)
        self.writer: Optional[MetricWriter] = None
        self.last_eval: dict[str, float] = {}
        self.last_eval_step = -1
        self.start_step = 0
        self.resumed = False
        self.control = TrainControl()

    # ----------------------------------------------------------------- public
    def run(self) -> Path:
        """Train to `max_iters` (resuming from the newest checkpoint if allowed); return run dir.

        Rank 0 holds the run directory's writer lock throughout (RunLockedError if another
        process writes it). SIGTERM/SIGINT finish the current update, write a checkpoint and
        raise TrainingInterrupted (exit code 128 + signum); a non-finite loss or weights raise
        DivergenceError without writing a checkpoint of them.
        """
        self.device = resolve_device(self.config.train.device, self.info)
        init_process_group(self.info, self.device)
        lock = run_lock(self.run_dir, "train") if self.info.is_main else contextlib.nullcontext()
        try:
            with lock, SignalCatcher() as self.signals:
                try:
                    self._setup()
                    self._loop()
                    if self.info.enabled:   # every rank done with its collectives before teardown
                        import torch.distributed as dist

                        dist.barrier()
                finally:
                    if self.writer is not None:
                        self.writer.close()
        finally:
            # DDP's reducer holds the process group: free it while the peers are still there, or
            # its destructor later waits on a gloo peer that has exited (a hang seen under load)
            self.ddp = self.forward_model = None
            gc.collect()
            destroy_process_group(self.info)
        return self.run_dir

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg, tc = self.config, self.config.train
        existing = list_checkpoints(self.run_dir)
        if existing and not self.resume:
            raise RunDirError(f"{self.run_dir} already holds checkpoints up to step "
                              f"{existing[-1][0]}; drop --no-resume to continue it, or pass a "
                              f"new --out directory")
        if existing and existing[-1][0] > tc.max_iters:
            raise RunDirError(f"{self.run_dir} already holds checkpoints up to step "
                              f"{existing[-1][0]}, beyond --max-iters {tc.max_iters}; pass "
                              f"--max-iters >= {existing[-1][0]} to continue it, or a new --out")
        self.data = load_prepared(cfg.data.data_dir, cfg.data.dataset)
        for split in ("train", "val"):  # before anything is written: eval draws from val later
            n = len(self.data.splits[split])
            if n < cfg.model.block_size + 1:
                raise SplitTooShortError(
                    f"the {split} split of {cfg.data.dataset} has {n:,} tokens, fewer than "
                    f"model.block_size + 1 = {cfg.model.block_size + 1:,}; lower model.block_size "
                    f"or prepare a longer text")
        if existing and self.info.is_main:
            recorded = Run(self.run_dir).record.get("dataset")
            if isinstance(recorded, dict):
                check_same_dataset(recorded, dataset_record(cfg, self.data), self.allow_data_change)
        m = cfg.model
        self.gpt_config = GPTConfig(**m.to_dict(), vocab_size=self.data.vocab_size)
        torch.manual_seed(tc.seed)  # identical initialisation on every rank
        self.model = GPT(self.gpt_config).to(self.device)
        self.optimizer = self.model.configure_optimizer(tc.weight_decay, tc.learning_rate,
                                                        (tc.beta1, tc.beta2))
        self.dtype = resolve_dtype(tc.dtype, self.device)
        self.scaler = torch.amp.GradScaler(self.device.split(":")[0],
                                           enabled=self.dtype == torch.float16)
        self.sampler = BatchSampler(self.data.train, m.block_size, tc.batch_size,
                                    seed=tc.seed + self.info.rank, device=self.device)
        _seed_all(tc.seed + self.info.rank)  # dropout and any host-side randomness
        if existing:
            self._restore()
        self.forward_model = self._wrap_model()
        if self.info.is_main:
            write_run_json(self.run_dir, run_record(cfg, self.data, self.info, self.device,
                                                    self.dtype, self.model))
            self.writer = MetricWriter(self.run_dir)

    def _wrap_model(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        self.ddp = None
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [torch.device(self.device).index] if self.device.startswith("cuda") else None
            self.ddp = model = DistributedDataParallel(self.model, device_ids=ids)
        if self.config.train.compile:
            model = torch.compile(model)
        return model

    def _restore(self) -> None:
        step, path, state = resume_point(self.run_dir)  # type: ignore[misc]
        try:
            self.model.load_state_dict(load_state_dict(path))
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"cannot resume from {path}: it does not match this config "
                                  f"({first}); use the run's original settings or a new --out") from None
        self.scaler.load_state_dict(state.get("scaler", {}) or self.scaler.state_dict())
        ranks = state.get("ranks", [])
        if self.info.rank < len(ranks):
            restore_rng_state(ranks[self.info.rank]["rng"], self.device)
            self.sampler.load_state_dict(ranks[self.info.rank]["sampler"])
        else:  # world size grew: a fresh, step-dependent stream for the new rank
            _seed_all(self.config.train.seed + self.info.rank + 7919 * step)
        self.last_eval = dict(state.get("eval_losses", {}))
        self.last_eval_step = int(state.get("eval_step", -1))
        self.start_step, self.resumed = step, True
        self.last_checkpoint_step = step

    # ------------------------------------------------------------------- loop
    def _loop(self) -> None:
        tc = self.config.train
        tokens_per_step = (tc.batch_size * self.config.model.block_size
                           * tc.gradient_accumulation_steps * self.info.world_size)
        self._emit("on_train_start", TrainStart(
            run_dir=self.run_dir, config=self.config.to_dict(), model=self.model,
            start_step=self.start_step, device=self.device, metric_writer=self.writer,
            rank=self.info.rank, batch=self._peek_batch(),
            checkpoint_steps=tuple(checkpoint_steps(tc.max_iters, tc.ckpt_log_max, tc.ckpt_every)),
            control=self.control))
        bar = tqdm(total=tc.max_iters, initial=self.start_step, desc="train", unit="it",
                   disable=self.quiet or not self.info.is_main, dynamic_ncols=True)
        step = self.start_step
        while True:
            if step > self.start_step or not self.resumed:  # a resumed start step is done
                if step % tc.eval_interval == 0 or step == tc.max_iters:
                    self._evaluate(step)
                if is_checkpoint_step(step, tc.max_iters, tc.ckpt_log_max, tc.ckpt_every):
                    self._checkpoint(step, tokens_per_step)
            if step >= tc.max_iters:
                break
            signalled, checkpoint_asked, stop_asked = self._requests()
            if signalled:
                self._stop_for_signal(step, tokens_per_step)
            if stop_asked or checkpoint_asked:
                self._honour_control(step, tokens_per_step, stop_asked)
            t0 = time.perf_counter()
            loss, lr, batch = self._update(step)
            tokens_per_s = tokens_per_step / max(time.perf_counter() - t0, 1e-9)
            if self.writer is not None:
                self.writer.log(step, "loss", loss)
                self.writer.log(step, "lr", lr)
                self.writer.log(step, "tokens_per_s", tokens_per_s)
            self.loss_guard.check(step, loss, self._divergence_hint)
            self._emit("on_step_end", StepRecord(step=step, loss=loss, lr=lr,
                                                 tokens_per_s=tokens_per_s, model=self.model,
                                                 batch=batch, rank=self.info.rank,
                                                 next_batch=self._peek_batch))
            step += 1
            bar.update(1)
            if step % max(tc.log_interval, 1) == 0 or step == tc.max_iters:
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        bar.close()
        summary = {"step": step, "eval_losses": dict(self.last_eval),
                   "checkpoints": len(list_checkpoints(self.run_dir)),
                   "tokens_seen": step * tokens_per_step}
        self._emit("on_train_end", TrainEnd(step=step, run_dir=self.run_dir, summary=summary,
                                            rank=self.info.rank))
        if self.writer is not None:
            self.writer.flush()

    def _peek_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) the next update will draw, leaving the sampler's generator where it was."""
        state = self.sampler.state_dict()
        batch = self.sampler.next()
        self.sampler.load_state_dict(state)
        return batch

    def _update(self, step: int) -> tuple[float, float, tuple[torch.Tensor, torch.Tensor]]:
        """One optimizer update; returns (mean micro-batch loss in nats, lr, last (x, y))."""
        tc = self.config.train
        lr = lr_at(step, tc.learning_rate, tc.min_lr, tc.warmup_iters, tc.lr_decay_iters)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = tc.gradient_accumulation_steps
        total = torch.zeros((), device=self.device)
        for micro in range(accum):
            x, y = self.sampler.next()
            last = micro == accum - 1
            sync = self.ddp.no_sync() if self.ddp is not None and not last else contextlib.nullcontext()
            with sync:
                with autocast_context(self.device, self.dtype):
                    _, loss = self.forward_model(x, y)
                loss = loss / accum
                self.scaler.scale(loss).backward()
            total += loss.detach().float()
        if tc.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return float(total.item()), lr, (x, y)

    @torch.no_grad()
    def _evaluate(self, step: int) -> None:
        """Mean loss over `eval_iters` fixed batches per split (averaged over ranks under DDP)."""
        tc, block = self.config.train, self.config.model.block_size
        self.model.eval()
        means = []
        for split in ("train", "val"):
            sampler = BatchSampler(self.data.splits[split], block, tc.batch_size,
                                   seed=tc.seed + EVAL_SEED_OFFSET[split] + self.info.rank,
                                   device=self.device)
            total = torch.zeros((), device=self.device, dtype=torch.float64)
            for _ in range(tc.eval_iters):
                x, y = sampler.next()
                with autocast_context(self.device, self.dtype):
                    _, loss = self.model(x, y)
                total += loss.double()
            means.append(total / tc.eval_iters)
        self.model.train()
        stacked = torch.stack(means)
        if self.info.enabled:
            import torch.distributed as dist

            dist.all_reduce(stacked)
            stacked /= self.info.world_size
        self.last_eval = {"train": float(stacked[0]), "val": float(stacked[1])}
        self.last_eval_step = step
        if self.writer is not None:
            for split, value in self.last_eval.items():
                self.writer.log(step, "eval_loss", value, split=split)
        self._emit("on_eval", EvalRecord(step=step, losses=dict(self.last_eval), model=self.model,
                                         rank=self.info.rank))

    def _checkpoint(self, step: int, tokens_per_step: int, resume_only: bool = False) -> None:
        """Write checkpoint `step` (rank 0) after checking the weights are finite; `resume_only`
        marks one written on a signal, outside the series (deleted by the next checkpoint)."""
        tc = self.config.train
        if not weights_finite(self.model.parameters()):
            raise DivergenceError(f"training diverged before step {step}: the weights are no "
                                  f"longer finite; {self._divergence_hint()}")
        local = {"rng": capture_rng_state(self.device), "sampler": self.sampler.state_dict()}
        ranks = [local]
        if self.info.enabled:
            import torch.distributed as dist

            ranks = [None] * self.info.world_size
            dist.all_gather_object(ranks, local)
        # every writer flushes before the rename: a checkpoint on disk implies its rows are on disk
        self._emit("on_checkpoint_due", CheckpointDue(step=step, model=self.model,
                                                      rank=self.info.rank, resume_only=resume_only))
        if self.writer is not None:
            self.writer.flush()
        path = RunPaths(self.run_dir).checkpoint(step)
        if self.info.is_main:
            tc_lr = lr_at(step, tc.learning_rate, tc.min_lr, tc.warmup_iters, tc.lr_decay_iters)
            meta = {"step": step, "lr": tc_lr, "tokens_seen": step * tokens_per_step,
                    "eval_losses": dict(self.last_eval), "eval_step": self.last_eval_step,
                    "model_config": self.gpt_config.to_dict(),
                    "dataset": self.config.data.dataset, "resume_only": resume_only}
            if self.last_eval_step == step:
                meta.update({f"{k}_loss": v for k, v in self.last_eval.items()})
            state = {"step": step, "optimizer": self.optimizer.state_dict(),
                     "scaler": self.scaler.state_dict(), "world_size": self.info.world_size,
                     "ranks": ranks, "eval_losses": dict(self.last_eval),
                     "eval_step": self.last_eval_step}
            retention = {"ckpt_keep": tc.ckpt_keep, "ckpt_log_max": tc.ckpt_log_max,
                         "ckpt_every": tc.ckpt_every}
            path = write_series_checkpoint(self.run_dir, step, self.model.state_dict(), meta,
                                           state, retention)
        self.last_checkpoint_step = step
        if not resume_only:
            self._emit("on_checkpoint", CheckpointRecord(step=step, path=path, rank=self.info.rank))

    def _requests(self) -> tuple[bool, bool, bool]:
        """(a SIGTERM/SIGINT arrived, a callback asked for a checkpoint, a callback asked to
        stop), each true if true on any rank (one max-reduce under DDP)."""
        flags = [self.signals.received is not None, self.control.checkpoint_reason is not None,
                 self.control.stop_reason is not None]
        if self.info.enabled:
            import torch.distributed as dist

            t = torch.tensor([float(f) for f in flags], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flags = [bool(v) for v in t.tolist()]
        return flags[0], flags[1], flags[2]

    def _honour_control(self, step: int, tokens_per_step: int, stop: bool) -> None:
        """A callback's request (`TrainControl`): checkpoint the weights after `step` updates
        (kept, unless that checkpoint is already written); then, for a stop, flush and raise
        TrainingStopped naming the reason."""
        reason = self.control.stop_reason if stop else self.control.checkpoint_reason
        self.control.checkpoint_reason = None
        if self.last_checkpoint_step != step:
            self._checkpoint(step, tokens_per_step)
        if not stop:
            return
        if self.writer is not None:
            self.writer.flush()
        raise TrainingStopped(f"at step {step} {reason or 'on a callback request'}; checkpoint "
                              f"{RunPaths(self.run_dir).checkpoint(step).name} is written, rerun the "
                              f"same command to resume")

    def _stop_for_signal(self, step: int, tokens_per_step: int) -> None:
        """Checkpoint the weights after `step` updates (unless just written), flush, raise."""
        import signal

        if self.last_checkpoint_step != step:  # flushes every writer, then writes the checkpoint
            self._checkpoint(step, tokens_per_step, resume_only=True)
        signum = self.signals.received or signal.SIGTERM
        raise TrainingInterrupted(f"stopped by {signal.Signals(signum).name} at step {step}; "
                                  f"checkpoint {RunPaths(self.run_dir).checkpoint(step).name} is "
                                  f"written, rerun the same command to resume", signum)

    def _divergence_hint(self) -> str:
        found = list_checkpoints(self.run_dir)
        kept = f"the newest finite checkpoint {found[-1][1].name} is kept" if found else \
            "no checkpoint was written"
        return (f"{kept}; lower the learning rate (--lr, now {self.config.train.learning_rate:g}) "
                f"or set train.grad_clip, then rerun (it resumes from there) or use a new --out")

    def _emit(self, event: str, record: Any) -> None:
        for callback in self.callbacks:
            handler = getattr(callback, event, None)  # duck-typed callbacks may lack newer events
            if handler is not None:
                handler(record)


def train(config: RunConfig, callbacks: Optional[Iterable[Callback]] = None, quiet: bool = False,
          resume: bool = True, allow_data_change: bool = False) -> Path:
    """Train `config` into `config.out_dir` and return the run directory (see `Trainer`).

    `allow_data_change`: resume even if the dataset differs from the one in run.json."""
    return Trainer(config, callbacks, quiet=quiet, resume=resume,
                   allow_data_change=allow_data_change).run()


def _seed_all(seed: int) -> None:
    import random

    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)
