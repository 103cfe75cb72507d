"""Tracking overhead: wall time of N training iterations with attention tracking over tracking off.

Model and batch: the `cpu` preset (4 layers, 4 heads, 128 dims, block 64, batch 12, AdamW, grad
clip 1.0) on tiny-shakespeare characters, CPU float32, one thread, same seed. Each run starts
from the same initial weights and optimizer state. Runs alternate off / on (`--repeats` pairs per
cadence) and the median wall times are compared, because a 0.1% effect is far below this
machine's run-to-run noise. Also reported: the cost of one tracking event (median over events,
ms) and the implied ratio 1 + event_ms * events / off_ms. Targets (issue 3): ratio <= 1.001 at
the paper cadence (every 500, 10% of the batch) and <= 1.02 at every 10.

    python benchmarks/bench_tracking.py [--iters 1000] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from attnlife.model.gpt import GPT, GPTConfig
from attnlife.track.tracker import Tracker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare" / "input.txt"


def batches(n: int, B: int, T: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n (x, y) batches [B, T] of character ids, drawn with a fixed seed (same for every run)."""
    text = DATA.read_text()
    vocab = {c: i for i, c in enumerate(sorted(set(text)))}
    data = torch.tensor([vocab[c] for c in text[:200_000]], dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ix = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        out.append((torch.stack([data[i:i + T] for i in ix]), torch.stack([data[i + 1:i + T + 1] for i in ix])))
    return out


def train_copy(model0: GPT, data: list, around_forward: Callable | None = None,
               after_step: Callable | None = None,
               at_end: Callable | None = None) -> tuple[float, float, list[float]]:
    """Train a copy of model0 over `data` (AdamW, clip 1.0); return (wall s, CPU s, losses).

    `around_forward(model, step)` is a context manager around each forward (the light tier),
    `after_step(step, model, batch)` runs after each update (the full tier), `at_end()` once
    after the loop, inside the timing.
    """
    model = copy.deepcopy(model0)
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.99))
    losses = []
    t0, c0 = time.perf_counter(), time.process_time()
    for step, (x, y) in enumerate(data):
        with around_forward(model, step) if around_forward else contextlib.nullcontext():
            _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if after_step is not None:
            after_step(step, model, (x, y))
    if at_end is not None:
        at_end()
    return time.perf_counter() - t0, time.process_time() - c0, losses


def run(model0: GPT, data: list, tracker: Tracker | None) -> tuple[float, list[float]]:
    """Train a copy of model0 over `data`, tracking after each update; (wall seconds, losses)."""
    wall, _, losses = train_copy(model0, data, after_step=tracker.maybe_track if tracker else None)
    return wall, losses


def event_ms(model: GPT, x: torch.Tensor, fraction: float, n: int = 20) -> float:
    """Median wall time of one tracking event (capture forward + all metrics), ms."""
    tr = Tracker(every=1, batch_fraction=fraction)
    times = []
    for step in range(n):
        tr.track(step, model, x)
        times.append(tr.last_ms)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1337)
    model0 = GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0))
    data = batches(args.iters, 12, 64, seed=1337)
    run(model0, data[:20], None)  # warm-up
    cost = event_ms(model0, data[0][0], 0.1)
    print("## Tracking overhead (issue 3)\n")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"`cpu` preset model, batch 12 x 64, {args.iters} iterations, median of {args.repeats} "
          f"alternating off/on runs.\n")
    print("| cadence | events | off s | on s | measured ratio | event ms | implied ratio |")
    print("|---|---|---|---|---|---|---|")
    for every in (500, 10):
        off, on = [], []
        for _ in range(args.repeats):
            t_off, l_off = run(model0, data, None)
            t_on, l_on = run(model0, data, Tracker(every=every, batch_fraction=0.1))
            assert l_off == l_on, "tracking changed the training losses"
            off.append(t_off)
            on.append(t_on)
        events = len(range(0, args.iters, every))
        m_off, m_on = statistics.median(off), statistics.median(on)
        implied = 1 + cost * 1e-3 * events / m_off
        print(f"| every {every}, 10% batch | {events} | {m_off:.2f} | {m_on:.2f} | {m_on / m_off:.4f} "
              f"| {cost:.2f} | {implied:.4f} |")
        sys.stdout.flush()
    print(f"\nOne step (off) takes {1e3 * m_off / args.iters:.2f} ms; losses identical with tracking on "
          f"and off in every run.")


if __name__ == "__main__":
    main()
