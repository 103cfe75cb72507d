"""Optional metric sinks: TensorBoard scalars and Weights & Biases (offline mode).

A sink takes the tracker's `MetricRow`s at a step. Tags group by metric,
then layer, then head, so TensorBoard shows one section per metric:
  attn/<metric>/L<l>/H<h>   per head
  attn/<metric>/L<l>        layer level (head = -1)
  attn/<metric>/L<a>-L<b>   cross-layer pair, e.g. attn/xlayer_jsd/L0-L1
  attn/<metric>             model level (layer = -1), e.g. attn/track_ms
Both libraries are optional extras, imported only when a sink is built.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

from attnlife.errors import AttnlifeError
from attnlife.store.metrics_table import MetricRow


class SinkUnavailableError(AttnlifeError):
    """An optional sink's library is not installed."""


def scalar_tag(metric: str, layer: int, head: int, layer_b: int = -1) -> str:
    """TensorBoard/W&B tag of a metric row (see module doc)."""
    if layer_b >= 0:
        return f"attn/{metric}/L{layer}-L{layer_b}"
    if layer < 0:
        return f"attn/{metric}"
    if head < 0:
        return f"attn/{metric}/L{layer}"
    return f"attn/{metric}/L{layer}/H{head}"


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

    def log_rows(self, step: int, rows: Iterable[MetricRow]) -> None:
        for r in rows:
            self._writer.add_scalar(scalar_tag(r.metric, r.layer, r.head_index, r.layer_b),
                                    float(r.value), global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
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
        self._run.finish()
