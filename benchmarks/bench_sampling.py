"""Sampling speed: KV-cache decoding vs recomputing the full context for every token.

Model: the `paper` shape (6 layers, 6 heads, 384 dims, block 256, vocab 65), random weights,
CPU float32, batch 1, a 1-token prompt, temperature 1 / top-k 200 with a fixed seed. Both paths
run in this process on the same model; each measurement is the best of `--repeats` runs.
Target (issue 2): cache / recompute >= 5 for 255 new tokens (one full block).

    python benchmarks/bench_sampling.py [--threads 1] [--repeats 2]
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from attnlife.model import GPT, GPTConfig


def tokens_per_s(model: GPT, new_tokens: int, use_cache: bool, repeats: int) -> float:
    """Best-of-`repeats` new tokens per second for one generate() call."""
    best = float("inf")
    for _ in range(repeats):
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        model.generate(torch.zeros(1, 1, dtype=torch.long), new_tokens, temperature=1.0, top_k=200,
                       use_cache=use_cache, generator=gen)
        best = min(best, time.perf_counter() - t0)
    return new_tokens / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=256, vocab_size=65, n_layer=6, n_head=6, n_embd=384,
                          dropout=0.0)).eval()
    tokens_per_s(model, 16, True, 1)  # warm-up
    rows = []
    for n in (255, 1000):
        cached = tokens_per_s(model, n, True, args.repeats)
        plain = tokens_per_s(model, n, False, args.repeats if n < 1000 else 1)
        rows.append((n, plain, cached))
    print("## Sampling with the KV cache (issue 2)\n")
    print(f"6x6x384 GPT, block 256, random weights, batch 1, 1-token prompt, CPU float32, "
          f"{args.threads} thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()}; "
          f"best of {args.repeats} (1 for recompute at 1000).\n")
    print("| new tokens | recompute (baseline) tok/s | KV cache tok/s | ratio |")
    print("|---:|---:|---:|---:|")
    for n, plain, cached in rows:
        print(f"| {n} | {plain:.1f} | {cached:.1f} | {cached / plain:.2f}x |")
    print(f"\nratio (255 tokens, target >= 5): {rows[0][2] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
