"""Where a training run and its callbacks meet: the only place that wires trainer + tracker.

`run_training(config, callbacks)` trains; `default_callbacks(config)` is the list the CLI plugs
in (the attention tracker goes here, reading `config.track`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from attnlife.config import RunConfig
from attnlife.events import Callback
from attnlife.train.trainer import train


def default_callbacks(config: RunConfig, health_hooks: Iterable[Any] = ()) -> list[Callback]:
    """Callbacks a CLI `train` run gets for `config`: the attention tracker unless disabled.

    The tracker reads `config.track` (every, batch_fraction, snapshot_every, span_threshold,
    query_chunk) and logs through the run's own metric writer (handed over in TrainStart). The
    light tier (`track.light_every` > 0, `track.light_fraction`) reads q and k from the training
    forward itself and logs `light_*` rows through the same writer. With `track.sample_every` > 0,
    checkpoints at multiples of it are sampled for generation quality (split `sample`).
    With `health.enabled` (and the light tier on), a `HealthMonitor` watches the light rows and
    writes `alert_<kind>` rows, console lines and the `health.on_alert` action; `health_hooks`
    are called as `hook(alert, monitor)` for every alert (a user's own intervention).
    """
    if not config.track.enabled:
        return []
    from attnlife.track.tracker import Tracker

    callbacks: list[Callback] = [Tracker.from_config(config.track)]
    if config.track.light_every > 0:
        from attnlife.track.light_tracker import LightTracker

        light = LightTracker.from_config(config.track)
        callbacks.append(light)
        if config.health.enabled:
            from attnlife.track.health_monitor import HealthMonitor

            callbacks.append(HealthMonitor.from_config(config.health, health_hooks).watch(light))
    if config.track.sample_every > 0:
        from attnlife.track.generation import SampleQuality

        callbacks.append(SampleQuality(config.track.sample_every, config.train.max_iters,
                                       config.track.sample_count, config.train.seed))
    return callbacks


def run_training(config: RunConfig, callbacks: Optional[list[Callback]] = None, quiet: bool = False,
                 resume: bool = True, allow_data_change: bool = False) -> Path:
    """Train `config` (resuming from the newest checkpoint when `resume`); return the run dir.

    Callbacks get TrainStart / StepRecord / EvalRecord / CheckpointRecord / TrainEnd events
    (`attnlife.events`); `quiet` silences the progress bar; `allow_data_change` resumes even
    when the dataset differs from the one recorded in run.json.
    """
    return train(config, callbacks=callbacks or [], quiet=quiet, resume=resume,
                 allow_data_change=allow_data_change)
