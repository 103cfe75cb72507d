"""Scan-and-snap sweep: all (grid point x seed) replicas in one batched SGD vs one replica at a time.

Prints a markdown section; the same-process baseline is the per-replica loop, the ratio is last.
Usage: python benchmarks/bench_theory_sweep.py [--replicas 24] [--steps 200]
"""
from __future__ import annotations

import argparse
import time

import torch

from attnlife.theory.scan_snap import SGDSpec, train_reparam
from attnlife.theory.scan_snap_data import build_sequence_classes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grid", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    classes = build_sequence_classes(10, 20)
    etas = [0.5 * (i + 1) for i in range(args.grid)]
    start = time.perf_counter()
    for eta in etas:
        for seed in range(args.seeds):
            train_reparam(classes, [eta], [1.0], 1, SGDSpec(args.steps, seed=seed))
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    train_reparam(classes, etas, [1.0] * args.grid, args.seeds, SGDSpec(args.steps))
    batched_s = time.perf_counter() - start
    replicas = args.grid * args.seeds
    print("## Scan-and-snap sweep vectorisation (issue 5)\n")
    print(f"M/K = 10/20 (V = 220), T = 128, batch 32, {replicas} replicas x {args.steps} SGD steps, 1 thread\n")
    print("| variant | wall s | replica-steps/s |")
    print("|---|---|---|")
    print(f"| baseline: one replica at a time | {loop_s:.2f} | {replicas * args.steps / loop_s:.0f} |")
    print(f"| batched: all replicas in one tensor | {batched_s:.2f} | {replicas * args.steps / batched_s:.0f} |")
    print(f"\nspeed-up (baseline / batched): {loop_s / batched_s:.1f}x")


if __name__ == "__main__":
    main()
