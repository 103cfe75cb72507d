"""The attention tracker: every `every` steps, one extra no-grad forward on a slice of the batch.

    tracker = Tracker(every=500, batch_fraction=0.1, run_dir="runs/mine")
    for step, (x, y) in enumerate(loader):
        ...; optimizer.step()
        tracker.maybe_track(step, model, (x, y))
    tracker.close()

Untracked steps cost one modulo: no hook is installed, our GPT runs SDPA. A tracked step runs the
model in eval mode under `torch.no_grad()` on the first ceil(batch_fraction * B) sequences (no
random draw, so the trainer's RNG streams are untouched), streams the probabilities through an
`AttentionAccumulator`, restores train mode, and logs per-head / per-layer / cross-layer rows
plus `track_ms` (wall time of the event, ms) into the run's metric table (split `train`).
It is also an `attnlife.events.Callback`, so `attnlife train` plugs it in via `attnlife.run`.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

import torch

from attnlife.errors import AttnlifeError
from attnlife.model.gpt import GPT
from attnlife.events import Callback, CheckpointRecord, EvalRecord, StepRecord, TrainEnd, TrainStart
from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention
from attnlife.track.metrics import DEFAULT_METRICS


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
    """Tracks attention metrics every `every` steps on `batch_fraction` of the batch."""

    def __init__(self, every: int = 500, batch_fraction: float = 0.1,
                 metrics: Sequence[str] = DEFAULT_METRICS, snapshot_every: int = 0,
                 run_dir: Optional[str | os.PathLike] = None, span_threshold: float = 0.01,
                 query_chunk: int = 256, sinks: Iterable[Any] = ()) -> None:
        if every < 1:
            raise TrackerConfigError(f"track every={every} must be >= 1 (use --no-track to disable)")
        if not 0.0 < batch_fraction <= 1.0:
            raise TrackerConfigError(f"batch_fraction={batch_fraction} must be in (0, 1]")
        self.every, self.batch_fraction = int(every), float(batch_fraction)
        self.metrics = tuple(metrics)
        AttentionAccumulator(self.metrics)  # validates names early
        self.snapshot_every, self.span_threshold = int(snapshot_every), float(span_threshold)
        self.query_chunk = int(query_chunk)
        self.sinks = list(sinks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer: Optional[MetricWriter] = MetricWriter(self.run_dir) if self.run_dir else None
        self._own_writer = self.writer is not None
        self._ckpt_every = 0
        self.events = 0
        self.last_ms = 0.0
        self.rank = 0

    @classmethod
    def from_config(cls, track_config: Any, run_dir: Optional[str | os.PathLike] = None) -> "Tracker":
        """Build from an `attnlife.config.TrackConfig` (every, batch_fraction, snapshot_every, ...)."""
        return cls(every=track_config.every, batch_fraction=track_config.batch_fraction,
                   snapshot_every=track_config.snapshot_every,
                   span_threshold=track_config.span_threshold,
                   query_chunk=track_config.query_chunk, run_dir=run_dir)

    # ---------------------------------------------------------------- user loop API
    def should_track(self, step: int) -> bool:
        """True when `step` is a tracked step (step % every == 0)."""
        return step % self.every == 0

    def maybe_track(self, step: int, model: Any, batch: Any) -> bool:
        """Track at `step` if it is due; returns whether it did. Costs one modulo otherwise."""
        if step % self.every != 0 or self.rank != 0:
            return False
        self.track(step, model, batch)
        return True

    def track(self, step: int, model: Any, batch: Any, split: str = "train") -> list[MetricRow]:
        """Run one tracking event now; log and return its `MetricRow`s."""
        t0 = time.perf_counter()
        idx = batch_inputs(batch)
        n = max(1, math.ceil(self.batch_fraction * idx.size(0)))
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

    def log_eval(self, step: int, losses: dict) -> None:
        """Log `eval_loss` (nats/token) per split at `step`, lining loss up with attention."""
        if self.writer is None:
            return
        for split, value in losses.items():
            self.writer.log(step, "eval_loss", float(value), split=split)
        for sink in self.sinks:
            sink.log_rows(step, [MetricRow(-1, -1, f"eval_loss_{s}", float(v))
                                 for s, v in losses.items()])

    def flush(self) -> None:
        """Write buffered rows as a Parquet part now."""
        if self.writer is not None:
            self.writer.flush()
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Flush everything and close the sinks."""
        self.flush()
        for sink in self.sinks:
            sink.close()

    # ---------------------------------------------------------------- Callback API
    def on_train_start(self, rec: TrainStart) -> None:
        self.rank = rec.rank
        self._ckpt_every = int(rec.config.get("train", {}).get("ckpt_every", 0) or 0)
        if rec.metric_writer is not None and not self._own_writer:
            self.writer = rec.metric_writer
            self.run_dir = Path(rec.run_dir)
        if rec.batch is not None:  # the weights at start_step (initialisation on a fresh run)
            self.maybe_track(rec.start_step, rec.model, rec.batch)

    def on_step_end(self, rec: StepRecord) -> None:
        # after update `rec.step` the model holds the weights of checkpoint step_{rec.step + 1};
        # label the measurement with that step so attention, eval loss and spectra line up
        if rec.batch is not None:
            self.maybe_track(rec.step + 1, rec.model, rec.batch)

    def on_eval(self, rec: EvalRecord) -> None:
        if rec.rank == 0:
            self.log_eval(rec.step, dict(rec.losses))

    def on_checkpoint(self, rec: CheckpointRecord) -> None:
        self.flush()

    def on_train_end(self, rec: TrainEnd) -> None:
        self.close()

    # ---------------------------------------------------------------- internals
    def _snapshot_due(self, step: int) -> bool:
        if self.snapshot_every > 0:
            return step % self.snapshot_every == 0
        return self._ckpt_every <= 0 or step % self._ckpt_every == 0

    def _log(self, step: int, rows: list[MetricRow], split: str) -> None:
        if self.writer is not None:
            self.writer.log_rows(step, rows, split=split)
        for sink in self.sinks:
            sink.log_rows(step, rows)
