"""Sample a checkpoint for generation quality, measuring attention on what it generated.

For one checkpoint: N sequences are generated (`attnlife.model.generate`, KV cache) from fixed
prompts (token id `prompt_id` repeated as a one-token prompt, the newline of the char datasets)
with a fixed seed, temperature and top-k, up to `block_size` tokens in all. Then one forward pass
over the generated sequences runs inside `capture_attention` with an `AttentionAccumulator`, so
the attention metrics are those of the model reading its own samples, and gives the mean token
log-probability of the generated tokens under the model (temperature 1, no top-k), in nats.

The n-gram statistics (distinct-n, repetition) are pure math in `attnlife.analysis.generation`;
this module only returns the tokens, the log-probability, the speed and the attention rows.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from attnlife.model.generate import generate
from attnlife.model.loading import load_model
from attnlife.store.metrics_table import MetricRow
from attnlife.track.accumulate import AttentionAccumulator
from attnlife.track.capture import capture_attention


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


@torch.no_grad()
def sample_checkpoint(ckpt_dir: str | os.PathLike, spec: SampleSpec = SampleSpec()) -> CheckpointSample:
    """Generate from checkpoint `ckpt_dir` per `spec` (CPU, float32) and measure it (module docstring)."""
    model = load_model(ckpt_dir)
    block = model.config.block_size
    new = spec.tokens if spec.tokens > 0 else block - 1
    new = max(1, min(new, block - 1))
    prompt = torch.full((spec.n_samples, 1), spec.prompt_id, dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    t0 = time.perf_counter()
    out = generate(model, prompt, new, temperature=spec.temperature, top_k=spec.top_k, generator=gen)
    seconds = time.perf_counter() - t0
    acc = AttentionAccumulator()
    with capture_attention(model, sink=acc) as cap:
        logits, _ = cap.forward(out)                                    # [B, T, V]
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    token_logp = logp.gather(-1, out[:, 1:, None]).squeeze(-1)          # [B, T-1] nats
    return CheckpointSample(sequences=out[:, 1:].tolist(), mean_logprob_nats=float(token_logp.mean()),
                            tokens_per_s=spec.n_samples * new / max(seconds, 1e-9),
                            attention=acc.results())
