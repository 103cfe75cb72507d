"""Batch sampling and preparation speed on the real shared data (CPU, 1 thread).

Baseline (same process): nanoGPT's `get_batch`, one `torch.from_numpy(data[i:i+T].astype(int64))`
per row and `torch.stack`. Ours: `BatchSampler.next()`, one fancy-indexed gather of [B, T+1].
Also times `prepare_dataset` on the enwik8/text8 prefixes. Prints a markdown section; ratio last.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attnlife.data import BatchSampler, load_prepared, prepare_dataset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BLOCK, BATCH, ITERS = 256, 64, 300


def nanogpt_get_batch(data: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ix = torch.randint(len(data) - BLOCK, (BATCH,), generator=generator)
    x = torch.stack([torch.from_numpy(data[i:i + BLOCK].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + BLOCK].astype(np.int64)) for i in ix.tolist()])
    return x, y


def best_rate(fn, repeats: int = 3) -> float:
    """Best-of-`repeats` batches per second over ITERS calls."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(ITERS):
            fn()
        best = max(best, ITERS / (time.perf_counter() - t0))
    return best


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        timings = {}
        for name, src in (("enwik8", SHARED / "enwik8" / "enwik8_head_4154400"),
                          ("text8", SHARED / "text8" / "text8_head_3010294.txt"),
                          ("shakespeare_char", SHARED / "shakespeare" / "input.txt")):
            t0 = time.perf_counter()
            prepare_dataset(name, tmp, source=src, quiet=True)
            timings[name] = (time.perf_counter() - t0, src.stat().st_size)
        data = load_prepared(tmp, "enwik8").train
        gen = torch.Generator().manual_seed(0)
        base = best_rate(lambda: nanogpt_get_batch(data, gen))
        sampler = BatchSampler(data, BLOCK, BATCH, seed=0)
        ours = best_rate(sampler.next)
    print("## Batches and prepare (data)")
    print(f"`python benchmarks/bench_batches.py` — enwik8 prefix train split (memmap uint8), "
          f"B={BATCH}, T={BLOCK}, CPU, 1 thread, torch {torch.__version__}, best of 3 x {ITERS} batches.\n")
    for name, (seconds, size) in timings.items():
        print(f"- prepare {name}: {seconds:.2f} s for {size / 1e6:.2f} MB ({size / 1e6 / seconds:.1f} MB/s)")
    print("\n| sampler | batches/s |\n|---|---:|")
    print(f"| nanoGPT get_batch (baseline) | {base:.0f} |\n| BatchSampler | {ours:.0f} |")
    print(f"\nratio BatchSampler / baseline: **{ours / base:.2f}x**")


if __name__ == "__main__":
    sys.exit(main())
