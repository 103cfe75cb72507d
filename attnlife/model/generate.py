"""Autoregressive sampling with a KV cache, temperature and top-k.

Within one block (prompt + new tokens <= block_size) cached decoding is exact: greedy decoding
with and without the cache yields identical tokens.

Past block_size the model's learned absolute positions mean a cache cannot reproduce nanoGPT's
sliding window (every step would shift every position). attnlife's documented choice is the
**re-prefill window**: when the cache is full, it is rebuilt from the last
`block_size - refill_stride` tokens (positions restart at 0) and decoding continues with the
cache. Each token is therefore conditioned on between `block_size - refill_stride` and
`block_size` previous tokens, always at correct positions; one re-prefill costs one forward
over the kept window every `refill_stride` tokens. The no-cache path (`use_cache=False`)
recomputes the last `block_size` tokens for every token, exactly like nanoGPT.

`timed_generate` is the one timed call (wall seconds, CUDA synchronised) that `attnlife sample`,
the reproduce protocol's inference speed and the generation-quality sampler share.
"""
from __future__ import annotations

import time
from typing import Optional

import torch

from attnlife.model.kv_cache import KVCache


def sample_next(logits: torch.Tensor, temperature: float, top_k: Optional[int],
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample token ids [B, 1] from last-position logits [B, V].

    temperature == 0 means greedy (argmax); top_k keeps the k largest logits before softmax.
    """
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits / temperature
    if not bool(torch.isfinite(scaled).all()) and bool(torch.isfinite(logits).all()):
        # a tiny temperature overflows: shift the maximum to 0 first (softmax is shift-invariant),
        # so the largest logit stays finite and the others fall to -inf: greedy in the limit
        scaled = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    logits = scaled
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: Optional[int] = None, use_cache: bool = True,
             generator: Optional[torch.Generator] = None, refill_stride: Optional[int] = None) -> torch.Tensor:
    """Append `max_new_tokens` tokens to idx [B, T0]; returns [B, T0 + max_new_tokens].

    `refill_stride` (default block_size // 4) sets how many tokens are decoded between
    re-prefills once the context exceeds block_size (see the module docstring).
    """
    was_training = model.training
    model.eval()
    try:
        if use_cache:
            return _generate_cached(model, idx, max_new_tokens, temperature, top_k, generator, refill_stride)
        return _generate_recompute(model, idx, max_new_tokens, temperature, top_k, generator)
    finally:
        model.train(was_training)


def timed_generate(model, idx: torch.Tensor, max_new_tokens: int, **kwargs) -> tuple[torch.Tensor, float]:
    """(`generate(model, idx, max_new_tokens, **kwargs)`, wall seconds it took); on CUDA the device
    is synchronised before and after, so the seconds cover the whole generation."""
    def sync() -> None:
        if idx.device.type == "cuda":
            torch.cuda.synchronize(idx.device)

    sync()
    t0 = time.perf_counter()
    out = generate(model, idx, max_new_tokens, **kwargs)
    sync()
    return out, time.perf_counter() - t0


def _generate_recompute(model, idx, max_new_tokens, temperature, top_k, generator):
    block = model.config.block_size
    for _ in range(max_new_tokens):
        logits, _ = model(idx[:, -block:])
        idx = torch.cat([idx, sample_next(logits[:, -1], temperature, top_k, generator)], dim=1)
    return idx


def _new_cache(model, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
    cfg = model.config
    return KVCache(cfg.n_layer, batch, cfg.n_head, cfg.block_size, cfg.head_dim, device, dtype)


def _generate_cached(model, idx, max_new_tokens, temperature, top_k, generator, refill_stride):
    block = model.config.block_size
    stride = max(1, min(refill_stride or block // 4, block - 1))
    keep = max(1, block - stride)   # tokens kept at a re-prefill (1 when block_size is 1)
    dtype = next(model.parameters()).dtype
    out = idx
    cache = _new_cache(model, out.size(0), out.device, dtype)
    logits, _ = model(out[:, -block:], kv_cache=cache)  # prefill with the prompt
    for i in range(max_new_tokens):
        nxt = sample_next(logits[:, -1], temperature, top_k, generator)
        out = torch.cat([out, nxt], dim=1)
        if i == max_new_tokens - 1:
            break
        if cache.length < block:
            logits, _ = model(nxt, kv_cache=cache)
        else:  # cache full: rebuild it from the most recent block - stride tokens
            cache = _new_cache(model, out.size(0), out.device, dtype)
            logits, _ = model(out[:, -keep:], kv_cache=cache)
    return out
