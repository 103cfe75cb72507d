"""The callbacks a protocol cell adds to `attnlife.run.default_callbacks`.

- `TrainClock`: wall time of the training loop (TrainStart -> TrainEnd, tracking and run 3's
  sampling included, as the published `total_train_time` is), kept per checkpoint step in
  `RUN/reproduce/train_time.json` so a killed and resumed cell adds the time of the updates that
  count: seconds(step) = seconds(resume step) + time since the resumed TrainStart.
- `WithoutCrossLayer`: wraps a callback (the tracker) for run 1; its metric writer drops the
  cross-layer rows (`xlayer_*`), which runs 2 and 3 keep. The accumulator still computes them with
  the per-layer rows (they share one capture forward); only what the run stores differs.
- `SampleQuality`: run 3's tracked generation quality. At each checkpoint on the tracking cadence
  it samples the checkpoint with the generation-quality sampler (`attnlife.track.sample_quality`,
  distinct-n and repetition from `attnlife.analysis.generation`) and logs split `sample` rows at
  that step; where that sampler is absent, `attnlife.train.sampling.sample_run`'s tokens/s alone.
  Sampling reads the checkpoint from disk with its own seeded generator, so the training random
  streams, and therefore the losses, are those of runs 0-2.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from attnlife.events import Callback, CheckpointRecord, TrainEnd, TrainStart
from attnlife.reproduce.protocol import CROSS_LAYER_PREFIX
from attnlife.store.atomic import atomic_path
from attnlife.store.metrics_table import MetricRow

CLOCK_FILE = Path("reproduce") / "train_time.json"


def read_clock(run_dir: str | Path) -> dict[int, float]:
    """Training seconds at each checkpoint step written so far ({} when none)."""
    path = Path(run_dir) / CLOCK_FILE
    if not path.is_file():
        return {}
    return {int(k): float(v) for k, v in json.loads(path.read_text())["seconds_at_step"].items()}


class TrainClock(Callback):
    """Training wall time per checkpoint step, surviving kill and resume (module docstring)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.table: dict[int, float] = {}
        self.base_s = 0.0
        self.t0 = 0.0

    def on_train_start(self, rec: TrainStart) -> None:
        self.table = {s: t for s, t in read_clock(self.run_dir).items() if s <= rec.start_step}
        self.base_s = self.table[max(self.table)] if self.table else 0.0
        self.t0 = time.perf_counter()

    def on_checkpoint(self, rec: CheckpointRecord) -> None:
        if rec.rank == 0:
            self._record(rec.step)

    def on_train_end(self, rec: TrainEnd) -> None:
        if rec.rank == 0:
            self._record(rec.step)

    def _record(self, step: int) -> None:
        self.table[int(step)] = self.base_s + time.perf_counter() - self.t0
        with atomic_path(self.run_dir / CLOCK_FILE) as tmp:
            tmp.write_text(json.dumps({"seconds_at_step": {str(k): v for k, v in
                                                          sorted(self.table.items())}}))


class _DropCrossLayer:
    """A metric writer that forwards everything except cross-layer (`xlayer_*`) rows."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer

    def log_rows(self, step: int, rows: list, *args: Any, **kwargs: Any) -> Any:
        kept = [r for r in rows if not str(r.metric).startswith(CROSS_LAYER_PREFIX)]
        return self._writer.log_rows(step, kept, *args, **kwargs)

    def log(self, step: int, metric: str, *args: Any, **kwargs: Any) -> Any:
        if str(metric).startswith(CROSS_LAYER_PREFIX):
            return None
        return self._writer.log(step, metric, *args, **kwargs)

    def __len__(self) -> int:
        return len(self._writer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class WithoutCrossLayer:
    """Run 1: forwards every event to `inner`, handing it a writer without cross-layer rows."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def on_train_start(self, rec: TrainStart) -> None:
        writer = rec.metric_writer
        self.inner.on_train_start(replace(rec, metric_writer=None if writer is None
                                          else _DropCrossLayer(writer)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SampleQuality(Callback):
    """Run 3: generation quality at each checkpoint on the cadence, split `sample` (module doc)."""

    def __init__(self, every: int, max_iters: int, n_samples: int, seed: int) -> None:
        self.every, self.max_iters = int(every), int(max_iters)
        self.n_samples, self.seed = int(n_samples), int(seed)
        try:  # import the sampler now, so its import time is not counted as training time
            import attnlife.analysis.generation  # noqa: F401
            import attnlife.track.sample_quality  # noqa: F401
        except ImportError:
            pass
        self.writer: Optional[Any] = None
        self.run_dir: Optional[Path] = None
        self.rank = 0

    def on_train_start(self, rec: TrainStart) -> None:
        self.writer, self.run_dir, self.rank = rec.metric_writer, Path(rec.run_dir), rec.rank

    def on_checkpoint(self, rec: CheckpointRecord) -> None:
        due = rec.step % self.every == 0 or rec.step == self.max_iters
        if rec.rank != 0 or self.writer is None or not due:
            return
        self.writer.log_rows(rec.step, self.rows(Path(rec.path), rec.step), split="sample")

    def rows(self, ckpt: Path, step: int) -> list[MetricRow]:
        """Generation-quality rows of checkpoint `ckpt` (model level, plus attention per head)."""
        try:
            from attnlife.analysis.generation import corpus_quality
            from attnlife.track.sample_quality import SampleSpec, sample_checkpoint
        except ImportError:  # no generation-quality sampler in this build: tokens/s only
            from attnlife.train.sampling import sample_run

            res = sample_run(self.run_dir, tokens=32, seed=self.seed, step=step)
            return [MetricRow(-1, -1, "sample_tokens_per_s", res.tokens_per_s)]
        got = sample_checkpoint(ckpt, SampleSpec(n_samples=self.n_samples, seed=self.seed))
        quality = corpus_quality(got.sequences)
        quality.update(mean_logprob_nats=got.mean_logprob_nats, sample_tokens_per_s=got.tokens_per_s)
        return [MetricRow(-1, -1, k, float(v)) for k, v in quality.items()] + list(got.attention)
