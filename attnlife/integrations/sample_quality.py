"""Generation quality tracked during training: a callback that samples checkpoints as they are written.

At each checkpoint whose step is a multiple of `every` (and at the last step), `SampleQuality`
samples that checkpoint with the generation-quality sampler (`attnlife.track.sample_quality`:
N sequences from fixed prompts with a fixed seed, KV cache, then the attention metrics of the model
reading its own samples) and logs split `sample` rows at that step: distinct_1..4, repetition_4
(`attnlife.analysis.generation`), mean_logprob_nats, sample_tokens_per_s, and per-head attention.
Sampling reads the checkpoint from disk with its own seeded generator, so the training random
streams, and therefore the losses, are unchanged. `attnlife train --sample-every N` turns it on
(`track.sample_every`); the reproduce protocol's run 3 uses it at the tracking cadence.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from attnlife.events import Callback, CheckpointRecord, TrainStart
from attnlife.store.metrics_table import MetricRow


class SampleQuality(Callback):
    """Generation quality at each checkpoint step that is a multiple of `every` (and the last),
    split `sample` (module doc)."""

    def __init__(self, every: int, max_iters: int, n_samples: int, seed: int) -> None:
        self.every, self.max_iters = int(every), int(max_iters)
        self.n_samples, self.seed = int(n_samples), int(seed)
        import attnlife.analysis.generation  # noqa: F401 - imported now, not inside the timed loop
        import attnlife.track.sample_quality  # noqa: F401
        self.writer: Optional[Any] = None
        self.run_dir: Optional[Path] = None
        self.rank = 0

    def on_train_start(self, rec: TrainStart) -> None:
        self.writer, self.run_dir, self.rank = rec.metric_writer, Path(rec.run_dir), rec.rank

    def on_checkpoint(self, rec: CheckpointRecord) -> None:
        due = rec.step % self.every == 0 or rec.step == self.max_iters
        if rec.rank != 0 or self.writer is None or not due:
            return
        import torch

        # building the sampled copy of the model draws its initial weights from the global RNG
        # before the checkpoint is loaded: fork it so the training streams (dropout) stay intact
        with torch.random.fork_rng(devices=[]):
            rows = self.rows(Path(rec.path), rec.step)
        self.writer.log_rows(rec.step, rows, split="sample")

    def rows(self, ckpt: Path, step: int) -> list[MetricRow]:
        """Generation-quality rows of checkpoint `ckpt` (model level, plus attention per head)."""
        from attnlife.analysis.generation import corpus_quality
        from attnlife.track.sample_quality import SampleSpec, sample_checkpoint

        got = sample_checkpoint(ckpt, SampleSpec(n_samples=self.n_samples, seed=self.seed))
        quality = corpus_quality(got.sequences)
        quality.update(mean_logprob_nats=got.mean_logprob_nats, sample_tokens_per_s=got.tokens_per_s)
        return [MetricRow(-1, -1, k, float(v)) for k, v in quality.items()] + list(got.attention)
