"""The attention tracker: at scheduled steps, one extra no-grad forward on a slice of the batch.

    with Tracker(every=500, run_dir="runs/mine") as tracker:
        for step, (x, y) in enumerate(loader):
            tracker.maybe_track(step, model, (x, y))   # before this iteration's update
            ...                                        # forward, backward, optimizer.step()

Step convention: step s = the weights after s optimizer updates. `maybe_track(step, ...)` at the
top of iteration `step` (before its update) measures exactly those weights, on the batch the
update is about to use; `attnlife train`, the HF and the Lightning callbacks do the same.

Schedule: a step is tracked when step % every == 0 or it is a checkpoint step (`attnlife train`
hands the log-spaced checkpoint series over in TrainStart; own loops get 0, 1, 2, 4, ... <= every).
Untracked steps cost a modulo and a set lookup: no hook is installed, our GPT runs SDPA. A
tracked step runs the model in eval mode under `torch.no_grad()` on the first
n = min(B, max(min_sequences, ceil(batch_fraction * B))) sequences (no random draw, so the
trainer's RNG streams are untouched), streams the probabilities through an
`AttentionAccumulator`, restores train mode, and logs per-head values with their standard errors
across the n sequences, layer-level and cross-layer rows, and `track_ms` (wall time of the event,
ms) into the run's metric table (split `train`). It is also an `attnlife.events.Callback`, so
`attnlife train` plugs it in via `attnlife.run`.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import torch

from attnlife.errors import AttnlifeError
from attnlife.measures import log_spaced_steps
from attnlife.model.gpt import GPT
from attnlife.events import Callback, CheckpointDue, EvalRecord, StepRecord, TrainEnd, TrainStart
from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention
from attnlife.track.metrics import DEFAULT_METRICS
from attnlife.track.own_run import claim_run_dir


class TrackerConfigError(AttnlifeError):
    """A tracker setting is out of range."""


def batch_inputs(batch: Any) -> torch.Tensor:
    """Token ids [B, T] from a batch given as ids, (x, y) or a dict with `input_ids`."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, dict) and "input_ids" in batch:
        return batch["input_ids"]
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    raise TrackerConfigError(f"cannot find token ids in a batch of type {type(batch).__name__}; "
                             f"pass a [B, T] tensor, an (x, y) pair or a dict with input_ids")


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the block, then each module's own training flag back.

    For our GPT only the Dropout modules change behaviour between modes, so only those are
    flipped (walking every module twice costs ~1 ms per event on a small model).
    """
    if isinstance(model, GPT):
        modules = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    else:
        modules = list(model.modules()) if isinstance(model, torch.nn.Module) else []
    saved = [m.training for m in modules]
    try:
        for m in modules:
            m.training = False
        yield
    finally:
        for m, flag in zip(modules, saved):
            m.training = flag


class Tracker(Callback):
    """Tracks attention metrics at every `every`-th and every checkpoint step (see module doc)."""

    def __init__(self, every: int = 500, batch_fraction: float = 0.1,
                 metrics: Sequence[str] = DEFAULT_METRICS, snapshot_every: int = 0,
                 run_dir: Optional[str | os.PathLike] = None, span_threshold: float = 0.01,
                 query_chunk: int = 256, sinks: Iterable[Any] = (), min_sequences: int = 8,
                 at_steps: Optional[Iterable[int]] = None) -> None:
        if every < 1:
            raise TrackerConfigError(f"track every={every} must be >= 1 (use --no-track to disable)")
        if not 0.0 < batch_fraction <= 1.0:
            raise TrackerConfigError(f"batch_fraction={batch_fraction} must be in (0, 1]")
        if min_sequences < 1:
            raise TrackerConfigError(f"min_sequences={min_sequences} must be >= 1")
        self.every, self.batch_fraction = int(every), float(batch_fraction)
        self.min_sequences = int(min_sequences)
        self.metrics = tuple(metrics)
        AttentionAccumulator(self.metrics)  # validates names early
        self.snapshot_every, self.span_threshold = int(snapshot_every), float(span_threshold)
        self.query_chunk = int(query_chunk)
        self.sinks = list(sinks)
        self.at_steps = frozenset(at_steps) if at_steps is not None else frozenset(log_spaced_steps(self.every))
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer: Optional[MetricWriter] = MetricWriter(self.run_dir) if self.run_dir else None
        self._own_writer = self.writer is not None
        self._claim_state = 0 if self._own_writer else 2   # 1: run.json without model, 2: done
        self._ckpt_every = 0
        self._closed = False
        self.events = 0
        self.last_ms = 0.0
        self.rank = 0

    @classmethod
    def from_config(cls, track_config: Any, run_dir: Optional[str | os.PathLike] = None) -> "Tracker":
        """Build from an `attnlife.config.TrackConfig` (every, batch_fraction, min_sequences, ...).

        With `at_checkpoints` (default) the checkpoint steps arrive with TrainStart; without it
        only multiples of `every` are tracked.
        """
        return cls(every=track_config.every, batch_fraction=track_config.batch_fraction,
                   snapshot_every=track_config.snapshot_every,
                   span_threshold=track_config.span_threshold,
                   query_chunk=track_config.query_chunk, run_dir=run_dir,
                   min_sequences=getattr(track_config, "min_sequences", 8),
                   at_steps=None if getattr(track_config, "at_checkpoints", True) else ())

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        writer = getattr(self, "writer", None)
        if getattr(self, "_own_writer", False) and not self._closed and writer is not None and len(writer):
            warnings.warn(f"Tracker for {self.run_dir} was garbage-collected holding {len(writer)} "
                          f"unwritten metric rows; use `with Tracker(...)` or call tracker.close()",
                          ResourceWarning, stacklevel=2)

    # ---------------------------------------------------------------- user loop API
    def should_track(self, step: int) -> bool:
        """True when `step` is tracked: step % every == 0 or step is in the checkpoint schedule."""
        return step % self.every == 0 or step in self.at_steps

    def maybe_track(self, step: int, model: Any, batch: Any) -> bool:
        """Track the weights after `step` updates if `step` is due; returns whether it did.

        `batch` may also be a zero-argument callable returning the batch (drawn only when due).
        """
        if self.rank != 0 or not self.should_track(step):
            return False
        self.track(step, model, batch() if callable(batch) else batch)
        return True

    def track(self, step: int, model: Any, batch: Any, split: str = "train") -> list[MetricRow]:
        """Run one tracking event now; log and return its `MetricRow`s."""
        t0 = time.perf_counter()
        self._claim(model)
        idx = batch_inputs(batch)
        n = min(idx.size(0), max(self.min_sequences, math.ceil(self.batch_fraction * idx.size(0))))
        snap = self._snapshot_due(step)
        acc = AttentionAccumulator(self.metrics, self.span_threshold, keep_snapshot=snap)
        with torch.no_grad(), _eval_mode(model), capture_attention(model, acc, self.query_chunk) as cap:
            cap.forward(idx[:n])
        rows = acc.results()
        self.last_ms = (time.perf_counter() - t0) * 1e3
        rows.append(MetricRow(-1, -1, "track_ms", self.last_ms))
        self._log(step, rows, split)
        if snap and self.run_dir is not None:
            from attnlife.store.snapshots import SnapshotStore

            SnapshotStore(self.run_dir).write_many(step, acc.snapshot())
        self.events += 1
        return rows

    def log(self, step: int, name: str, value: float, split: str = "train") -> None:
        """Log any model-level scalar (a loss, a learning rate, ...) at `step` into the same table."""
        self._claim(None)
        self._log(step, [MetricRow(-1, -1, name, float(value))], split)

    def log_eval(self, step: int, losses: dict) -> None:
        """Log `eval_loss` (nats/token) per split at `step`, lining loss up with attention."""
        self._claim(None)
        if self.writer is not None:
            for split, value in losses.items():
                self.writer.log(step, "eval_loss", float(value), split=split)
        for sink in self.sinks:
            sink.log_rows(step, [MetricRow(-1, -1, f"eval_loss/{s}", float(v)) for s, v in losses.items()])

    def flush(self) -> None:
        """Write buffered rows as a Parquet part now."""
        if self.writer is not None:
            self.writer.flush()
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Flush everything and close the sinks (also what leaving a `with` block does)."""
        self.flush()
        self._closed = True
        for sink in self.sinks:
            sink.close()

    # ---------------------------------------------------------------- Callback API
    def on_train_start(self, rec: TrainStart) -> None:
        self.rank = rec.rank
        train_cfg = rec.config.get("train", {})
        self._ckpt_every = int(train_cfg.get("ckpt_every", 0) or 0)
        series = tuple(getattr(rec, "checkpoint_steps", ()) or ())
        if series and self.at_steps:  # at_steps=() switches the checkpoint schedule off
            self.at_steps = frozenset(series)
        if rec.metric_writer is not None and not self._own_writer:
            self.writer = rec.metric_writer
            self.run_dir = Path(rec.run_dir)
        if rec.batch is not None:  # the weights at start_step, on the batch update start_step uses
            self.maybe_track(rec.start_step, rec.model, rec.batch)

    def on_step_end(self, rec: StepRecord) -> None:
        # after update `rec.step` the model holds the weights of step rec.step + 1; measure them on
        # the batch the next update will draw (peeked), as a resumed run does at its start step
        nxt = getattr(rec, "next_batch", None)
        batch = nxt if nxt is not None else rec.batch
        if batch is not None:
            self.maybe_track(rec.step + 1, rec.model, batch)

    def on_eval(self, rec: EvalRecord) -> None:
        if rec.rank == 0 and self.writer is not None:
            for split, value in rec.losses.items():  # sinks get eval loss from attnlife.store.sinks.SinkCallback
                self.writer.log(rec.step, "eval_loss", float(value), split=split)

    def on_checkpoint_due(self, rec: CheckpointDue) -> None:
        # before the checkpoint is renamed into place its rows reach disk: the trainer flushes the
        # run's shared writer once every callback has logged; an own writer and sinks flush here
        if self._own_writer and self.writer is not None:
            self.writer.flush()
        for sink in self.sinks:
            sink.flush()

    def on_train_end(self, rec: TrainEnd) -> None:
        self.close()

    # ---------------------------------------------------------------- internals
    def _claim(self, model: Any) -> None:
        """Write/check run.json once before the first row (again once a model is first seen)."""
        if self._claim_state == 2 or (model is None and self._claim_state == 1) or self.rank != 0:
            return
        settings = {"every": self.every, "batch_fraction": self.batch_fraction,
                    "min_sequences": self.min_sequences, "metrics": list(self.metrics)}
        recorded = claim_run_dir(self.run_dir, model, settings)
        self._claim_state = 2 if recorded or model is not None else 1

    def _snapshot_due(self, step: int) -> bool:
        if self.snapshot_every > 0:
            return step % self.snapshot_every == 0
        return self._ckpt_every <= 0 or step % self._ckpt_every == 0

    def _log(self, step: int, rows: list[MetricRow], split: str) -> None:
        if self.writer is not None:
            self.writer.log_rows(step, rows, split=split)
        for sink in self.sinks:
            sink.log_rows(step, rows)
