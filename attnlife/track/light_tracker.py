"""The light tracking tier: fused entropy, mean distance and sink mass of every head, read from the
training forward itself (no second forward), cheap enough for every step.

    light = LightTracker(every=1, batch_fraction=0.1, run_dir="runs/mine")
    for step, (x, y) in enumerate(loader):          # the model holds the weights after `step` updates
        with light.step(model, step):
            _, loss = model(x, y)                    # q, k of the first sequences go to the light stats
        loss.backward(); optimizer.step()
    light.close()

When armed for a step, each attention module of our GPT hands detached views of its q and k
[B, H, T, K] to the tracker, which copies the first n = ceil(batch_fraction * B) sequences straight
into padded float32 buffers (`fused_stats.padded_qk` layout: q | 0 and k | j - c, layers side by
side along the head axis, one copy per layer and nothing else; the buffers are reused across
steps); `attnlife.track.fused_stats.padded_sequence_means` then computes every layer's statistics
under no_grad in one fused attention call with V = [K | j] plus its log-sum-exp (one call instead
of L: tensor op overhead dominates at small T). With `batch_steps` = S > 1 (8 under `attnlife
train`) S read steps fill consecutive batch slots and are computed in one call, then logged at
their own steps; S is capped so the buffers hold at most `BUFFER_ELEMENTS` floats each (at
GPT-2-small shape one step fills them: S = 1). Steps of another shape (a shorter last batch) fill
buffers of their own; each shape is one fused call. `flush()`, every checkpoint (before it is
renamed into place, also the one written on SIGTERM/SIGINT) and the end of training compute what
is queued, so a checkpoint on disk implies every light row before its step is on disk. The training graph, the outputs and the losses
are untouched (tested bit-identical). Only forwards with grad enabled are read, so eval passes in between are
skipped; with gradient accumulation only the first micro-batch counts.

Step label: the forward of update u sees the weights after u updates, so its rows are logged at
step u (the project's step convention; the full tier's rows at step u measure the same weights).
Rows (split `train`, per head, value = mean over the n sequences of each sequence's row mean,
stderr = standard error across the n sequences, NaN when n = 1):

  light_entropy_bits          mean_i H_i over rows i >= 0                    (bits)
  light_mean_distance_tokens  mean_i sum_j a_ij (i - j) over rows i >= 0     (tokens)
  light_sink_mass             mean_i a_i0 over rows i >= 1 (row 0 always puts 1 on token 0)
  light_lse_max_nats          max_i LSE_i, LSE_i = logsumexp_j s_ij (nats): bounds the largest
                              attention logit from above within log T (logit growth)
  light_ms (model level)      wall time the tracker spent in this step, ms

Entropy (clamped at 0) and mean distance have the explicit path's definitions (`entropy_bits`,
`mean_distance_tokens`); the light tier has no thresholded span, head JSD or cross-layer values.
It is an `attnlife.events.Callback`, so `attnlife train` plugs it in beside the full `Tracker`.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from attnlife.errors import AttnlifeError
from attnlife.events import Callback, CheckpointDue, StepRecord, TrainEnd, TrainStart
from attnlife.model.gpt import GPT
from attnlife.store.metrics_table import MetricRow, MetricWriter
from attnlife.track.fused_stats import BACKENDS, STAT_NAMES, lse_backend, padded_qk, padded_sequence_means

LIGHT_PREFIX = "light_"
BUFFER_ELEMENTS = 1 << 24   # floats per step-batch buffer (64 MiB of float32): caps batch_steps


class LightTrackingError(AttnlifeError):
    """A light-tier setting is out of range or the model cannot be read in-forward."""


def light_rows(means: dict[int, dict[str, torch.Tensor]]) -> list[MetricRow]:
    """Per-head `MetricRow`s from layer -> {stat name -> per-sequence means [n, H]}.

    value = mean over the n sequences, stderr = sample std (ddof 1) / sqrt(n), NaN if n < 2 (a
    sequence mean is NaN only when no row is defined, i.e. sink mass at T = 1, and then all are);
    metric names are the stat names prefixed with `light_`.
    """
    keys = [(layer, name) for layer in sorted(means) for name in STAT_NAMES if name in means[layer]]
    if not keys:
        return []
    per_seq = torch.stack([means[layer][name].double() for layer, name in keys])   # [M, n, H]
    n = per_seq.size(1)
    value = per_seq.mean(dim=1)                                                     # [M, H]
    stderr = (per_seq.std(dim=1) / math.sqrt(n)) if n > 1 else torch.full_like(value, math.nan)
    out = []
    for (layer, name), vals, errs in zip(keys, value.tolist(), stderr.tolist()):
        out.extend(MetricRow(layer, h, LIGHT_PREFIX + name, v, stderr=e)
                   for h, (v, e) in enumerate(zip(vals, errs)))
    return out


def find_gpt(model: Any) -> GPT:
    """Our GPT itself or the first GPT inside `model` (e.g. a LightningModule)."""
    if isinstance(model, GPT):
        return model
    if isinstance(model, torch.nn.Module):
        for sub in model.modules():
            if isinstance(sub, GPT):
                return sub
    raise LightTrackingError(f"the light tier reads q and k in-forward from an attnlife GPT, not "
                             f"{type(model).__name__}; for Hugging Face models use "
                             f"attnlife.track.hf_light.HFLightStats")


class LightEvents:
    """What every light-tier reader shares: cadence, the armed step, time spent, logging rows."""

    def __init__(self, every: int, batch_fraction: float, writer: Optional[MetricWriter],
                 sinks: Iterable[Any] = (), backend: str = "auto", training_only: bool = True) -> None:
        if every < 1:
            raise LightTrackingError(f"light tracking every={every} must be >= 1 "
                                     f"(use --no-track to disable tracking)")
        if not 0.0 < batch_fraction <= 1.0:
            raise LightTrackingError(f"light batch_fraction={batch_fraction} must be in (0, 1]")
        if backend not in BACKENDS:
            raise LightTrackingError(f"light backend {backend!r} is not one of {BACKENDS}")
        self.every, self.batch_fraction = int(every), float(batch_fraction)
        self.backend, self.training_only = backend, training_only
        self.writer, self.sinks = writer, list(sinks)
        # called with (step, per-head rows, sequence length T) once a step's rows are computed
        # (e.g. attnlife.track.health_monitor.HealthMonitor.on_light_rows)
        self.listeners: list[Callable[[int, list[MetricRow], int], Any]] = []
        self.events, self.last_ms = 0, 0.0
        self._step: Optional[int] = None
        self._spent_s = 0.0

    def reads_now(self) -> bool:
        """Whether a forward running now is read (grad enabled unless `training_only` is off)."""
        return not self.training_only or torch.is_grad_enabled()

    def _emit(self, step: int, rows: list[MetricRow], ms: float, split: str,
              seq_len: int = 0) -> list[MetricRow]:
        """Log `step`'s per-head `rows` (from `light_rows`) plus `light_ms` = `ms`, then hand
        them to the listeners (T = `seq_len`)."""
        self.last_ms = ms
        for listener in self.listeners:
            listener(step, rows, seq_len)
        rows.append(MetricRow(-1, -1, "light_ms", ms))
        if self.writer is not None:
            self.writer.log_rows(step, rows, split=split)
        for sink in self.sinks:
            sink.log_rows(step, rows)
        self.events += 1
        return rows


class LightTracker(Callback, LightEvents):
    """Logs light statistics every `every` steps from `batch_fraction` of the training batch."""

    def __init__(self, every: int = 1, batch_fraction: float = 0.1,
                 run_dir: Optional[str | os.PathLike] = None, sinks: Iterable[Any] = (),
                 backend: str = "auto", training_only: bool = True, batch_steps: int = 1) -> None:
        writer = MetricWriter(run_dir) if run_dir is not None else None
        LightEvents.__init__(self, every, batch_fraction, writer, sinks, backend, training_only)
        if batch_steps < 1:
            raise LightTrackingError(f"batch_steps={batch_steps} must be >= 1")
        self.batch_steps = int(batch_steps)
        self._own_writer = writer is not None
        self.rank = 0
        self._model: Optional[GPT] = None
        self._offsets: dict[int, tuple[int, int]] = {}   # layer -> (first head column, heads)
        self._seen: set[int] = set()                     # layers read in the armed step
        self._buf: Optional[_StepBuffers] = None         # the buffers the armed step writes to
        self._slot = 0                                   # its slot in them
        # queued steps: (step, layers read, seconds spent, split, buffers, slot)
        self._pending: list[tuple[int, frozenset, float, str, "_StepBuffers", int]] = []
        # one sink object for the tracker's life, run eagerly under torch.compile: the compiled
        # forward guards on its identity (armed / not armed), so arming each step recompiles nothing
        self._sink = torch.compiler.disable(self._on_qk)

    @classmethod
    def from_config(cls, track_config: Any, run_dir: Optional[str | os.PathLike] = None,
                    batch_steps: int = 8) -> "LightTracker":
        """Build from an `attnlife.config.TrackConfig` (light_every, light_fraction); the
        statistics of `batch_steps` read steps are computed together (one fused call)."""
        return cls(every=track_config.light_every, batch_fraction=track_config.light_fraction,
                   run_dir=run_dir, batch_steps=batch_steps)

    # ---------------------------------------------------------------- user loop API
    def arm(self, model: Any, step: int) -> bool:
        """Read the next training forward of `model` if `step` is due; returns whether armed."""
        if step % self.every != 0 or self.rank != 0:
            return False
        self.disarm()
        self._model, self._step, self._seen, self._spent_s = find_gpt(model), int(step), set(), 0.0
        modules = self._model.attention_modules()
        first = 0
        self._offsets = {}
        for module in modules:
            self._offsets[module.layer_index] = (first, module.n_head)
            first += module.n_head
            module.qk_sink = self._sink
        return True

    def disarm(self) -> None:
        """Remove the q/k sink from every attention module (nothing is read afterwards)."""
        if self._model is not None:
            for module in self._model.attention_modules():
                module.qk_sink = None
        self._model = None

    def collect(self, split: str = "train") -> list[MetricRow]:
        """Disarm and queue the armed step's q, k (if a forward was read); once `batch_steps`
        steps are queued, compute, log and return their rows (else return [])."""
        t0 = time.perf_counter()
        self.disarm()
        if self._step is not None and self._seen:
            spent = self._spent_s + time.perf_counter() - t0
            self._pending.append((self._step, frozenset(self._seen), spent, split, self._buf, self._slot))
        self._step, self._seen, self._spent_s = None, set(), 0.0
        full = self._buf is not None and sum(p[4] is self._buf for p in self._pending) >= self._buf.slots
        return self.compute_pending() if full or len(self._pending) >= self.batch_steps else []

    def compute_pending(self) -> list[MetricRow]:
        """Compute and log the rows of every queued step: one fused call over the filled batch
        slots (steps along the batch axis, layers along the head axis). `light_ms` of a step =
        its own copying time + its share of the shared call and of building the rows (the metric
        writer's buffering is not included)."""
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        if not pending:
            return []
        means = {}                                        # one fused call per buffer shape
        for buf in {id(p[4]): p[4] for p in pending}.values():
            used = max(p[5] for p in pending if p[4] is buf) + 1
            means[id(buf)] = buf.means(used)                                  # name -> [S n, L H]
        built = []
        for step, layers, spent, split, buf, slot in pending:
            per_layer = {layer: {name: v[slot * buf.n:(slot + 1) * buf.n, first:first + heads]
                                 for name, v in means[id(buf)].items()}
                         for layer, (first, heads) in sorted(buf.offsets.items()) if layer in layers}
            built.append((step, light_rows(per_layer), spent, split, buf.shape[2]))   # T
        share = (time.perf_counter() - t0) / len(pending)
        out = []
        for step, rows, spent, split, seq_len in built:
            out.extend(self._emit(step, rows, (spent + share) * 1e3, split, seq_len))
        return out

    @contextlib.contextmanager
    def step(self, model: Any, step: int) -> Iterator[bool]:
        """Arm for the forward(s) inside the block, then collect and log; yields whether armed."""
        armed = self.arm(model, step)
        try:
            yield armed
        finally:
            if armed:
                self.collect()

    def flush(self) -> None:
        """Compute queued steps and write buffered rows as a Parquet part now."""
        self.compute_pending()
        if self.writer is not None:
            self.writer.flush()
        for sink in self.sinks:
            sink.flush()

    def close(self) -> None:
        """Disarm, flush everything and close the sinks."""
        self.disarm()
        self.flush()
        for sink in self.sinks:
            sink.close()

    # ---------------------------------------------------------------- Callback API
    def on_train_start(self, rec: TrainStart) -> None:
        self.rank = rec.rank
        if rec.metric_writer is not None and not self._own_writer:
            self.writer = rec.metric_writer
        self.arm(rec.model, rec.start_step)  # the first update's forward sees the start weights

    def on_step_end(self, rec: StepRecord) -> None:
        # the forward of update `rec.step` saw the weights after rec.step updates: label rec.step
        self.collect()
        self.arm(rec.model, rec.step + 1)

    def on_checkpoint_due(self, rec: CheckpointDue) -> None:
        # before the checkpoint (series or written on SIGTERM/SIGINT) is renamed into place: compute
        # the queued steps, so a checkpoint on disk implies every light row before it is (the
        # trainer flushes the shared writer after every callback; an own writer and sinks here)
        self.compute_pending()
        if self._own_writer and self.writer is not None:
            self.writer.flush()
        for sink in self.sinks:
            sink.flush()

    def on_train_end(self, rec: TrainEnd) -> None:
        self.disarm()
        self.compute_pending()
        if self._own_writer:
            self.close()

    # ---------------------------------------------------------------- internals
    def _on_qk(self, layer: int, q: torch.Tensor, k: torch.Tensor) -> None:
        """q, k [B, H, T, K] of one layer's forward: copy the first n sequences into this step's
        slot of the padded buffers of its shape (full buffers compute the queued steps first)."""
        if layer in self._seen or not self.reads_now() or layer not in self._offsets:
            return
        t0 = time.perf_counter()
        n = max(1, math.ceil(self.batch_fraction * q.size(0)))
        shape = (n, tuple(sorted(self._offsets.items())), q.size(2), q.size(3), q.device,
                 torch.float64 if q.dtype == torch.float64 else torch.float32)
        if not self._seen:                               # the step's first layer: pick its slot
            queued = [p for p in self._pending if p[4].shape == shape]
            if queued and len(queued) < queued[0][4].slots:
                self._buf, self._slot = queued[0][4], len(queued)   # next slot of that shape's buffers
            else:
                if queued:                                # that shape's buffers are full
                    self.compute_pending()
                # a buffer of this shape is never pending here (it would be `queued`): reuse it
                if self._buf is None or self._buf.shape != shape:
                    backend = lse_backend(q.device) if self.backend == "auto" else self.backend
                    self._buf = _StepBuffers(shape, self.batch_steps, backend)
                self._slot = 0
        elif self._buf.shape != shape:                   # layers of one forward differ in shape
            return
        first, heads = self._offsets[layer]
        rows = slice(self._slot * n, (self._slot + 1) * n)
        with torch.no_grad():   # copies: the forward's activations are not kept alive
            padded_qk(q[:n], k[:n], self._buf.backend,
                      out=(self._buf.qp[rows, first:first + heads], self._buf.kv[rows, first:first + heads]))
        self._seen.add(layer)
        self._spent_s += time.perf_counter() - t0


class _StepBuffers:
    """Padded q / [k | j] buffers [slots * n, L * H, T, W] for `slots` steps of one shape."""

    def __init__(self, shape: tuple, batch_steps: int, backend: str) -> None:
        n, offsets, T, K, device, dtype = shape
        heads = sum(h for _, (_, h) in offsets)
        self.shape, self.n, self.K, self.backend = shape, n, K, backend
        self.offsets = dict(offsets)
        per_step = n * heads * T * (K + 8)
        self.slots = max(1, min(batch_steps, BUFFER_ELEMENTS // per_step))
        q = torch.zeros(self.slots * n, heads, T, K, device=device, dtype=dtype)
        self.qp, self.kv = padded_qk(q, q, backend)          # pads and positions written once

    def means(self, steps: int) -> dict[str, torch.Tensor]:
        """name -> [steps * n, L * H] per-sequence means of the first `steps` slots."""
        rows = steps * self.n
        return padded_sequence_means(self.qp[:rows], self.kv[:rows], self.K, None, self.backend)
