"""The training callback interface: a handful of events, each handed a small frozen record.

The trainer emits these events and never imports the tracker; `attnlife.run` plugs callbacks in.
Anything (the tracker, a sink, a user's code) can implement `TrainCallback` by subclassing
`Callback` and overriding the events it cares about.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional


class TrainControl:
    """What a callback may ask of the trainer; honoured at the next step boundary.

    `request_checkpoint(reason)`: write a checkpoint of the current weights (kept, outside the
    series) unless one of them is already written. `request_stop(reason)`: write that checkpoint,
    then stop with `attnlife.errors.TrainingStopped` (exit code 3 under `attnlife train`). The
    first reason given is kept; requests made at the final step are moot (the run has ended).
    """

    def __init__(self) -> None:
        self.checkpoint_reason: Optional[str] = None
        self.stop_reason: Optional[str] = None

    def request_checkpoint(self, reason: str) -> None:
        self.checkpoint_reason = self.checkpoint_reason or reason

    def request_stop(self, reason: str) -> None:
        """`reason` completes "stopped at step N ...", e.g. "on an attention-health alert (...)"."""
        self.stop_reason = self.stop_reason or reason


@dataclass(frozen=True)
class TrainStart:
    """Emitted once before the first step (also on resume, with start_step > 0)."""

    run_dir: Path
    config: Mapping[str, Any]
    model: Any                      # the torch.nn.Module being trained (unwrapped, not DDP)
    start_step: int
    device: str
    metric_writer: Any = None       # attnlife.store.metrics_table.MetricWriter shared by the run
    rank: int = 0
    batch: Optional[tuple] = None   # the (x, y) the first update will use (peeked, RNG untouched),
                                    # so callbacks can measure the weights at start_step
    checkpoint_steps: tuple = ()    # every step of the run's checkpoint series (log-spaced early)
    control: Optional[TrainControl] = None  # requests to the trainer (checkpoint now, stop)


@dataclass(frozen=True)
class StepRecord:
    """Emitted after each optimizer step. `batch` is the (x, y) [B, T] of that step."""

    step: int                        # index of the update just made; the model now holds the
                                     # weights after step + 1 updates (= checkpoint step_{step+1})
    loss: float                      # training loss of the step, nats/token
    lr: float
    tokens_per_s: float
    model: Any
    batch: Optional[tuple] = None
    rank: int = 0
    next_batch: Optional[Callable[[], tuple]] = None  # peeks the (x, y) update step + 1 will use
                                                      # (RNG untouched): where step + 1 is measured


@dataclass(frozen=True)
class EvalRecord:
    """Emitted at eval steps with mean losses (nats/token) per split, e.g. {"train":.., "val":..}."""

    step: int
    losses: Mapping[str, float]
    model: Any = None
    rank: int = 0


@dataclass(frozen=True)
class CheckpointDue:
    """Emitted before checkpoint `step` is written (on every rank): log and flush everything
    measured up to `step` now, so a checkpoint on disk implies its rows are on disk.

    `model` holds the weights the checkpoint will store; `resume_only` marks a checkpoint written
    on SIGTERM/SIGINT outside the series (no CheckpointRecord follows it)."""

    step: int
    model: Any = None
    rank: int = 0
    resume_only: bool = False


@dataclass(frozen=True)
class CheckpointRecord:
    """Emitted after a checkpoint directory has been renamed into place (series checkpoints only)."""

    step: int
    path: Path
    rank: int = 0


@dataclass(frozen=True)
class TrainEnd:
    """Emitted once after the last step."""

    step: int
    run_dir: Path
    summary: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0


class Callback:
    """No-op base: override the events you need."""

    def on_train_start(self, rec: TrainStart) -> None:  # noqa: D102
        pass

    def on_step_end(self, rec: StepRecord) -> None:  # noqa: D102
        pass

    def on_eval(self, rec: EvalRecord) -> None:  # noqa: D102
        pass

    def on_checkpoint_due(self, rec: CheckpointDue) -> None:  # noqa: D102
        pass

    def on_checkpoint(self, rec: CheckpointRecord) -> None:  # noqa: D102
        pass

    def on_train_end(self, rec: TrainEnd) -> None:  # noqa: D102
        pass
