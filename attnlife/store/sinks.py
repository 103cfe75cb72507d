"""Optional metric sinks: TensorBoard scalars and Weights & Biases (offline mode).

A sink takes `MetricRow`s at a step. Tags start with the metric, then layer, then head, so
TensorBoard (which groups tags by their first path part) shows one section per metric:
  <metric>/L<l>/H<h>   per head, e.g. entropy_bits/L0/H1
  <metric>/L<l>        layer level (head = -1), e.g. head_jsd_mean/L0
  <metric>/L<a>-L<b>   cross-layer pair, e.g. xlayer_jsd/L0-L1
  <metric>             model level (layer = -1), e.g. loss, lr, track_ms, eval_loss/val
`log_config(dict)` records the run's config (TensorBoard text `config`, W&B run config).
`SinkCallback(sinks)` feeds loss, lr, tokens/s, eval loss and the config of `attnlife train`
to sinks; the tracker feeds them its attention rows. Both libraries are optional extras,
imported only when a sink is built.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from attnlife.errors import AttnlifeError
from attnlife.events import Callback, CheckpointRecord, EvalRecord, StepRecord, TrainEnd, TrainStart
from attnlife.store.metrics_table import MetricRow


class SinkUnavailableError(AttnlifeError):
    """An optional sink's library is not installed."""


def scalar_tag(metric: str, layer: int, head: int, layer_b: int = -1) -> str:
    """TensorBoard/W&B tag of a metric row (see module doc)."""
    if layer_b >= 0:
        return f"{metric}/L{layer}-L{layer_b}"
    if layer < 0:
        return metric
    if head < 0:
        return f"{metric}/L{layer}"
    return f"{metric}/L{layer}/H{head}"


class TensorBoardSink:
    """Writes rows as TensorBoard scalars into `log_dir` (e.g. RUN/tensorboard)."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise SinkUnavailableError("TensorBoard sink needs tensorboard; pip install "
                                       "'attnlife[tensorboard]'") from err
        self.log_dir = Path(log_dir)
        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._closed = False

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The run's config as a JSON text summary named `config`."""
        self._writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```")

    def log_rows(self, step: int, rows: Iterable[MetricRow]) -> None:
        for r in rows:
            self._writer.add_scalar(scalar_tag(r.metric, r.layer, r.head_index, r.layer_b),
                                    float(r.value), global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()


class WandbSink:
    """Logs rows to a Weights & Biases run in offline mode (files under `directory`/wandb)."""

    def __init__(self, directory: str | os.PathLike, project: str = "attnlife",
                 name: Optional[str] = None, mode: str = "offline") -> None:
        try:
            import wandb
        except ImportError as err:  # pragma: no cover
            raise SinkUnavailableError("W&B sink needs wandb; pip install 'attnlife[wandb]'") from err
        Path(directory).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=project, name=name, dir=str(directory), mode=mode,
                               reinit="create_new")
        self._closed = False

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The run's config as the W&B run config."""
        self._run.config.update(dict(config), allow_val_change=True)

    @property
    def run(self):  # noqa: ANN201 - the wandb Run
        return self._run

    def log_rows(self, step: int, rows: Iterable[MetricRow]) -> None:
        payload = {scalar_tag(r.metric, r.layer, r.head_index, r.layer_b): float(r.value)
                   for r in rows}
        if payload:
            self._run.log(payload, step=int(step))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._run.finish()


class SinkCallback(Callback):
    """Feeds a training run's config, loss, lr, tokens_per_s and eval losses to sinks (rank 0).

    Tags: `loss`, `lr`, `tokens_per_s` at the step of the update (as in the metric table),
    `eval_loss/<split>` at the eval step. Flushes at checkpoints, closes at the end.
    """

    def __init__(self, sinks: Iterable[Any]) -> None:
        self.sinks = list(sinks)

    def _rows(self, step: int, rows: list[MetricRow], rank: int) -> None:
        if rank == 0:
            for sink in self.sinks:
                sink.log_rows(step, rows)

    def on_train_start(self, rec: TrainStart) -> None:
        if rec.rank == 0:
            for sink in self.sinks:
                sink.log_config(dict(rec.config))

    def on_step_end(self, rec: StepRecord) -> None:
        self._rows(rec.step, [MetricRow(-1, -1, "loss", rec.loss), MetricRow(-1, -1, "lr", rec.lr),
                              MetricRow(-1, -1, "tokens_per_s", rec.tokens_per_s)], rec.rank)

    def on_eval(self, rec: EvalRecord) -> None:
        self._rows(rec.step, [MetricRow(-1, -1, f"eval_loss/{s}", float(v))
                              for s, v in rec.losses.items()], rec.rank)

    def on_checkpoint(self, rec: CheckpointRecord) -> None:
        for sink in self.sinks:
            sink.flush()

    def on_train_end(self, rec: TrainEnd) -> None:
        for sink in self.sinks:
            sink.close()
