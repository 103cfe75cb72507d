"""Generation quality, its one home: n-gram statistics, the checkpoint sampler, the training callback.

**N-gram statistics** (pure). For one sequence w_1..w_L and n >= 1, let G_n be its L - n + 1
n-grams (as a multiset):
  distinct_n   = |set(G_n)| / |G_n|               (unique n-grams over total; 1 = no repeats)
  repetition_n = 1 - distinct_n                    (fraction of n-grams that repeat an earlier one)
Both are NaN when L < n. `corpus_quality` averages them over sequences (the mean of per-sequence
values, so every sample counts once).

**Sampler** (`sample_checkpoint`). For one checkpoint: N sequences are generated
(`attnlife.model.generate.timed_generate`, KV cache) from fixed prompts (token id `prompt_id`
repeated as a one-token prompt, the newline of the char datasets) with a fixed seed, temperature
and top-k, up to `block_size` tokens in all. Then one forward pass over the generated sequences
runs inside `capture_attention` with an `AttentionAccumulator`, so the attention metrics are those
of the model reading its own samples, and gives the mean token log-probability of the generated
tokens under the model (temperature 1, no top-k), in nats.

**Training callback** (`SampleQuality`). At each checkpoint whose step is a multiple of `every`
(and at the last step), the weights that checkpoint is about to store are sampled (a CPU float32
copy of the model, identical to loading the checkpoint) and split `sample` rows are logged at
that step: distinct_1..4, repetition_4, mean_logprob_nats, sample_tokens_per_s, and per-head
attention. The rows are flushed before the checkpoint is renamed into place (CheckpointDue), so
a checkpoint on disk implies its sample rows are. Sampling uses its own seeded generator and
builds the copy under a forked RNG, so the training random streams, and therefore the losses,
are unchanged. `attnlife train --sample-every N` turns it on
(`track.sample_every`); the reproduce protocol's run 3 uses it at the tracking cadence.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from attnlife.events import Callback, CheckpointDue, TrainStart
from attnlife.model.generate import timed_generate
from attnlife.model.gpt import GPT
from attnlife.series.models import load_model
from attnlife.store.metrics_table import MetricRow
from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention


# ---------------------------------------------------------------- n-gram statistics (pure)
def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The L - n + 1 contiguous n-grams of `tokens` (empty when L < n)."""
    t = list(tokens)
    return [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]


def distinct_n(tokens: Sequence[int], n: int) -> float:
    """|unique n-grams| / |n-grams| of one sequence (NaN when shorter than n)."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_n(tokens: Sequence[int], n: int) -> float:
    """Fraction of n-grams that repeat an earlier n-gram: 1 - distinct_n (NaN when shorter than n)."""
    return 1.0 - distinct_n(tokens, n)


def corpus_quality(sequences: Sequence[Sequence[int]], max_n: int = 4) -> dict[str, float]:
    """Mean over sequences of distinct_1..distinct_{max_n} and repetition_{max_n}."""
    out = {f"distinct_{n}": float(np.nanmean([distinct_n(s, n) for s in sequences])) for n in range(1, max_n + 1)}
    out[f"repetition_{max_n}"] = float(np.nanmean([repetition_n(s, max_n) for s in sequences]))
    return out


# ---------------------------------------------------------------- the checkpoint sampler
@dataclass(frozen=True)
class SampleSpec:
    """How checkpoints are sampled: n_samples sequences of up to `tokens` new tokens each."""

    n_samples: int = 8
    tokens: int = 0            # 0: block_size - 1 (fill one block)
    temperature: float = 0.8
    top_k: int | None = 200
    seed: int = 1337
    prompt_id: int = 0


@dataclass(frozen=True)
class CheckpointSample:
    """Generated token ids (prompt excluded) per sequence, mean log-prob (nats), speed, attention rows."""

    sequences: list[list[int]]
    mean_logprob_nats: float
    tokens_per_s: float
    attention: list[MetricRow]


def sample_checkpoint(ckpt_dir: str | os.PathLike, spec: SampleSpec = SampleSpec()) -> CheckpointSample:
    """Generate from checkpoint `ckpt_dir` per `spec` (CPU, float32) and measure it (module docstring)."""
    return sample_model(load_model(ckpt_dir), spec)


def cpu_copy(model: GPT) -> GPT:
    """A CPU float32 GPT in eval mode holding `model`'s weights: what `load_model` gives for the
    checkpoint of those weights (same config, same values), without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):   # GPT() draws initial weights, then overwritten
        copy = GPT(model.config)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return copy.eval()


@torch.no_grad()
def sample_model(model: GPT, spec: SampleSpec = SampleSpec()) -> CheckpointSample:
    """Generate from `model` (an attnlife GPT in eval mode, CPU float32) per `spec` and measure it."""
    block = model.config.block_size
    new = spec.tokens if spec.tokens > 0 else block - 1
    new = max(1, min(new, block - 1))
    prompt = torch.full((spec.n_samples, 1), spec.prompt_id, dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    out, seconds = timed_generate(model, prompt, new, temperature=spec.temperature, top_k=spec.top_k,
                                  generator=gen)
    acc = AttentionAccumulator()
    with capture_attention(model, sink=acc) as cap:
        logits, _ = cap.forward(out)                                    # [B, T, V]
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    token_logp = logp.gather(-1, out[:, 1:, None]).squeeze(-1)          # [B, T-1] nats
    return CheckpointSample(sequences=out[:, 1:].tolist(), mean_logprob_nats=float(token_logp.mean()),
                            tokens_per_s=spec.n_samples * new / max(seconds, 1e-9),
                            attention=acc.results())


def quality_rows(sample: CheckpointSample) -> list[MetricRow]:
    """Split-`sample` rows of one sampled checkpoint: distinct_1..4, repetition_4,
    mean_logprob_nats, sample_tokens_per_s (model level), then the attention rows per head."""
    quality = corpus_quality(sample.sequences)
    quality.update(mean_logprob_nats=sample.mean_logprob_nats, sample_tokens_per_s=sample.tokens_per_s)
    return [MetricRow(-1, -1, k, float(v)) for k, v in quality.items()] + list(sample.attention)


# ---------------------------------------------------------------- the training callback
class SampleQuality(Callback):
    """Generation quality at each checkpoint step that is a multiple of `every` (and the last),
    split `sample` (module doc)."""

    def __init__(self, every: int, max_iters: int, n_samples: int, seed: int) -> None:
        self.every, self.max_iters = int(every), int(max_iters)
        self.n_samples, self.seed = int(n_samples), int(seed)
        self.writer: Optional[Any] = None
        self.run_dir: Optional[Path] = None
        self.rank = 0

    def on_train_start(self, rec: TrainStart) -> None:
        self.writer, self.run_dir, self.rank = rec.metric_writer, Path(rec.run_dir), rec.rank

    def on_checkpoint_due(self, rec: CheckpointDue) -> None:
        due = rec.step % self.every == 0 or rec.step == self.max_iters
        if rec.rank != 0 or self.writer is None or not due or rec.resume_only:
            return
        # the model in memory holds exactly the weights the checkpoint is about to store: sample a
        # CPU copy now, so the rows are flushed with the checkpoint, before it is renamed into place
        spec = SampleSpec(n_samples=self.n_samples, seed=self.seed)
        self.writer.log_rows(rec.step, quality_rows(sample_model(cpu_copy(rec.model), spec)),
                             split="sample")
