"""Which steps get a checkpoint, and which checkpoints a retention limit removes (pure functions).

Step convention: checkpoint `step_s` holds the weights after `s` optimizer updates, so
`step_0000000` is the initialisation. The series is log-spaced early (0, 1, 2, 4, ..., up to
`ckpt_log_max`), then every `ckpt_every` steps, plus the final step `max_iters`.
"""
from __future__ import annotations

import math
from typing import Iterable


def is_log_step(step: int, ckpt_log_max: int) -> bool:
    """True for 0 and the powers of two 1, 2, 4, ... that are <= ckpt_log_max."""
    return step <= ckpt_log_max and (step == 0 or (step & (step - 1)) == 0)


def is_checkpoint_step(step: int, max_iters: int, ckpt_log_max: int, ckpt_every: int) -> bool:
    """True when the weights after `step` updates belong to the checkpoint series.

    step in {0, 1, 2, 4, ..., <= ckpt_log_max} or step % ckpt_every == 0 (ckpt_every > 0)
    or step == max_iters.
    """
    if step < 0 or step > max_iters:
        return False
    if step == max_iters or is_log_step(step, ckpt_log_max):
        return True
    return ckpt_every > 0 and step % ckpt_every == 0


def checkpoint_steps(max_iters: int, ckpt_log_max: int, ckpt_every: int) -> list[int]:
    """Every step of the series for a run of `max_iters` updates, ascending."""
    return [s for s in range(max_iters + 1)
            if is_checkpoint_step(s, max_iters, ckpt_log_max, ckpt_every)]


def steps_to_remove(steps: Iterable[int], keep: int, ckpt_log_max: int, ckpt_every: int) -> list[int]:
    """Checkpoint steps to delete so that at most `keep` remain (keep <= 0 means keep all).

    The newest step is always kept. Log-spaced steps (0, 1, 2, 4, ... that are not multiples of
    `ckpt_every`) are thinned first, then the regular ones. Within a class, the step removed next
    is the one whose kept neighbours are closest in log(step + 1), i.e. the removal that loses
    the least resolution of the log-time axis; step 0 (the initialisation) and the oldest step
    are removed only when nothing else in the class is left.
    """
    kept = sorted(set(int(s) for s in steps))
    if keep <= 0 or len(kept) <= keep:
        return []
    removed: list[int] = []
    while len(kept) > max(keep, 1):
        victim = _next_victim(kept, ckpt_log_max, ckpt_every)
        kept.remove(victim)
        removed.append(victim)
    return sorted(removed)


def _next_victim(kept: list[int], ckpt_log_max: int, ckpt_every: int) -> int:
    candidates = kept[:-1]  # never the newest
    log_only = [s for s in candidates if is_log_step(s, ckpt_log_max)
                and not (ckpt_every > 0 and s > 0 and s % ckpt_every == 0)]
    pool = log_only or candidates
    inner = [s for s in pool if s != kept[0]]
    if not inner:
        return pool[0]
    return min(inner, key=lambda s: _gap(kept, s))


def _gap(kept: list[int], step: int) -> float:
    i = kept.index(step)
    return math.log(kept[i + 1] + 1) - math.log(kept[i - 1] + 1)
