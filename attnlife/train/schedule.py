"""Learning-rate schedule: linear warmup, then cosine decay to `min_lr` (nanoGPT's schedule).

Pure function of the step; the trainer sets every parameter group's `lr` to it before each update.
"""
from __future__ import annotations

import math


def lr_at(step: int, learning_rate: float, min_lr: float, warmup_iters: int,
          lr_decay_iters: int) -> float:
    """Learning rate (per update) for the update that follows `step` completed updates.

    Warmup (step < W):   lr = learning_rate * (step + 1) / (W + 1)
    Cosine (W <= step <= N): r = (step - W) / (N - W),
                         lr = min_lr + 0.5 * (1 + cos(pi * r)) * (learning_rate - min_lr)
    After N (step > N):  lr = min_lr
    with W = warmup_iters and N = lr_decay_iters. If N <= W the cosine phase is empty and the
    rate drops to min_lr once warmup ends.
    """
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_lr
    ratio = (step - warmup_iters) / (lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
    return min_lr + coeff * (learning_rate - min_lr)
