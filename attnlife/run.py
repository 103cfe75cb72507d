"""Where a training run and its callbacks meet: the only place that wires trainer + tracker.

`run_training(config, callbacks)` trains; `default_callbacks(config)` is the list the CLI plugs
in (the attention tracker goes here, reading `config.track`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from attnlife.config import RunConfig
from attnlife.events import Callback
from attnlife.train.trainer import train


def default_callbacks(config: RunConfig) -> list[Callback]:
    """Callbacks a CLI `train` run gets for `config`: the attention tracker unless disabled.

    The tracker reads `config.track` (every, batch_fraction, snapshot_every, span_threshold,
    query_chunk) and logs through the run's own metric writer (handed over in TrainStart).
    """
    if not config.track.enabled:
        return []
    from attnlife.track.tracker import Tracker

    return [Tracker.from_config(config.track)]


def run_training(config: RunConfig, callbacks: Optional[list[Callback]] = None, quiet: bool = False,
                 resume: bool = True) -> Path:
    """Train `config` (resuming from the newest checkpoint when `resume`); return the run dir.

    Callbacks get TrainStart / StepRecord / EvalRecord / CheckpointRecord / TrainEnd events
    (`attnlife.events`); `quiet` silences the progress bar.
    """
    return train(config, callbacks=callbacks or [], quiet=quiet, resume=resume)
