"""Device / dtype / distributed settings and RNG state capture."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from attnlife.errors import ConfigError
from attnlife.train.checkpointing import capture_rng_state, restore_rng_state
from attnlife.train.runtime import (DistInfo, autocast_context, dist_info_from_env, resolve_device,
                                    resolve_dtype)


def test_dtype_resolution() -> None:
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_dtype("bfloat16", "cpu") is torch.bfloat16
    assert resolve_dtype("float16", "cuda:0") is torch.float16
    with pytest.raises(ConfigError, match="unknown train.dtype 'fp8'"):
        resolve_dtype("fp8", "cpu")


def test_autocast_context_changes_matmul_dtype() -> None:
    a = torch.randn(4, 4)
    with autocast_context("cpu", torch.float32):
        assert (a @ a).dtype is torch.float32
    with autocast_context("cpu", torch.bfloat16):
        assert (a @ a).dtype is torch.bfloat16


def test_device_resolution(monkeypatch) -> None:
    info = DistInfo()
    assert resolve_device("cpu", info) == "cpu"
    assert resolve_device("CPU", info) == "cpu"
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        resolve_device("tpu", info)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", info) == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda", info)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", DistInfo(rank=3, local_rank=1, world_size=4)) == "cuda:1"
    assert resolve_device("cuda:2", info) == "cuda:2"


def test_dist_info_from_env(monkeypatch) -> None:
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert dist_info_from_env() == DistInfo(0, 0, 1) and not dist_info_from_env().enabled
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    info = dist_info_from_env()
    assert info == DistInfo(3, 1, 4) and info.enabled and not info.is_main


def test_rng_state_round_trip() -> None:
    state = capture_rng_state("cpu")
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state, "cpu")
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
