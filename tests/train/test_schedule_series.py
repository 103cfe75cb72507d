"""LR schedule closed forms, checkpoint step series and retention (pure functions)."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attnlife.train.checkpoint_series import (checkpoint_steps, is_checkpoint_step, is_log_step,
                                              steps_to_remove)
from attnlife.train.schedule import lr_at

LR, MIN, W, N = 1e-3, 1e-4, 100, 2000


def test_lr_closed_form_values() -> None:
    assert lr_at(0, LR, MIN, W, N) == pytest.approx(LR / 101)
    assert lr_at(49, LR, MIN, W, N) == pytest.approx(LR * 50 / 101)
    assert lr_at(W, LR, MIN, W, N) == pytest.approx(LR)  # cosine starts at the peak
    mid = W + (N - W) // 2  # r = 0.5 -> halfway between peak and floor
    assert lr_at(mid, LR, MIN, W, N) == pytest.approx((LR + MIN) / 2)
    quarter = W + (N - W) // 4
    assert lr_at(quarter, LR, MIN, W, N) == pytest.approx(MIN + 0.5 * (1 + math.cos(math.pi / 4)) * (LR - MIN))
    assert lr_at(N, LR, MIN, W, N) == pytest.approx(MIN)
    assert lr_at(N + 500, LR, MIN, W, N) == MIN
    assert lr_at(5, LR, MIN, 0, 0) == MIN  # no warmup, no decay window


@given(st.integers(0, 3000))
def test_lr_bounded_and_monotone_after_warmup(step: int) -> None:
    lr = lr_at(step, LR, MIN, W, N)
    assert 0 < lr <= LR + 1e-15
    if step >= W:
        assert MIN - 1e-15 <= lr <= lr_at(max(W, step - 1), LR, MIN, W, N) + 1e-15


def test_checkpoint_series() -> None:
    assert checkpoint_steps(2000, 512, 250) == [0, 1, 2, 4, 8, 16, 32, 64, 128, 250, 256, 500,
                                                512, 750, 1000, 1250, 1500, 1750, 2000]
    assert checkpoint_steps(10, 512, 250) == [0, 1, 2, 4, 8, 10]
    assert checkpoint_steps(1030, 4, 0) == [0, 1, 2, 4, 1030]
    assert not is_checkpoint_step(1024, 5000, 512, 250)
    assert is_checkpoint_step(1000, 5000, 512, 250) and not is_checkpoint_step(5001, 5000, 512, 250)
    assert [s for s in range(20) if is_log_step(s, 8)] == [0, 1, 2, 4, 8]


def test_retention_thins_log_spaced_first_and_keeps_latest() -> None:
    steps = checkpoint_steps(2000, 512, 250)  # 19 checkpoints
    removed = steps_to_remove(steps, 12, 512, 250)
    kept = [s for s in steps if s not in removed]
    assert len(kept) == 12 and kept[-1] == 2000
    assert set(removed) <= {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}  # only log-spaced ones went
    assert 0 in kept  # the initialisation goes last
    # thinning keeps even coverage of log-time (every other power of four survives)
    assert kept == [0, 4, 16, 64, 250, 500, 750, 1000, 1250, 1500, 1750, 2000]
    assert steps_to_remove(steps, 0, 512, 250) == [] and steps_to_remove(steps, 19, 512, 250) == []


def test_retention_falls_back_to_regular_steps() -> None:
    steps = checkpoint_steps(2000, 512, 250)
    kept = [s for s in steps if s not in steps_to_remove(steps, 3, 512, 250)]
    assert len(kept) == 3 and kept[-1] == 2000
    assert [s for s in steps if s not in steps_to_remove(steps, 1, 512, 250)] == [2000]


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=40, unique=True), st.integers(1, 40))
def test_retention_properties(steps: list[int], keep: int) -> None:
    removed = steps_to_remove(steps, keep, 512, 250)
    kept = sorted(set(steps) - set(removed))
    assert len(kept) == min(keep, len(steps))
    assert max(steps) in kept
    assert set(removed) <= set(steps)
