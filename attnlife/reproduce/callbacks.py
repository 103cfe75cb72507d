"""The callbacks a protocol cell adds to `attnlife.run.default_callbacks`.

- `TrainClock`: wall time of the training loop (TrainStart -> TrainEnd, tracking and run 3's
  sampling included, as the published `total_train_time` is), kept per checkpoint step in
  `RUN/reproduce/train_time.json` so a killed and resumed cell adds the time of the updates that
  count: seconds(step) = seconds(resume step) + time since the resumed TrainStart.
- `WithoutCrossLayer`: wraps a callback (the tracker) for run 1; its metric writer drops the
  cross-layer rows (`xlayer_*`), which runs 2 and 3 keep. The accumulator still computes them with
  the per-layer rows (they share one capture forward); only what the run stores differs.
- run 3's tracked generation quality is `attnlife.track.generation.SampleQuality` at the
  tracking cadence; it samples checkpoints from disk with its own seeded generator, so the training
  random streams, and therefore the losses, are those of runs 0-2.
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

CLOCK_FILE = Path("reproduce") / "train_time.json"


def read_clock(run_dir: str | Path) -> dict[int, float]:
    """Training seconds at each checkpoint step written so far ({} when none)."""
    path = Path(run_dir) / CLOCK_FILE
    if not path.is_file():
        return {}
    try:
        return {int(k): float(v) for k, v in json.loads(path.read_text())["seconds_at_step"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as err:
        from attnlife.store.damage import first_line, warn_damaged

        warn_damaged(path, first_line(err), "the training time restarts from this segment "
                     "(the file is rewritten at the next checkpoint)")
        return {}


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
