"""Where and how a run computes: device, mixed precision, and the distributed process group.

- device `auto` picks `cuda` when available, else `cpu` (`mps` only when asked for).
- dtype `auto` uses bf16 autocast on CUDA devices that support it and plain float32 elsewhere
  (the CPU default); `bfloat16` / `float16` force autocast (float16 adds a GradScaler).
- Under `torchrun` (env RANK / WORLD_SIZE / LOCAL_RANK) the process group is created with NCCL
  on CUDA and Gloo on CPU; each rank uses `cuda:LOCAL_RANK` when on CUDA.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import ContextManager

import torch

from attnlife.errors import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) data-parallel run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info_from_env() -> DistInfo:
    """Rank, local rank and world size from torchrun's environment (defaults: one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(rank=int(os.environ.get("RANK", "0")),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")), world_size=world)


def resolve_device(name: str, info: DistInfo) -> str:
    """Device string for this process: `auto` -> cuda[:local_rank] if available else cpu."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; "
                              f"use --device cpu (or auto)")
        if info.enabled or name == "cuda":
            name = f"cuda:{info.local_rank}" if info.enabled else "cuda:0"
        return name
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError("device 'mps' requested but MPS is not available; use --device cpu")
        return name
    if name != "cpu":
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """Compute dtype of the forward pass: auto -> bfloat16 on bf16-capable CUDA, else float32."""
    if name not in DTYPES:
        raise ConfigError(f"unknown train.dtype {name!r}; use one of {list(DTYPES)}")
    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def autocast_context(device: str, dtype: torch.dtype) -> ContextManager:
    """`torch.autocast` for reduced precision, a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def init_process_group(info: DistInfo, device: str) -> None:
    """Create the default process group (NCCL on CUDA, Gloo otherwise) when world_size > 1."""
    if not info.enabled:
        return
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")


def destroy_process_group(info: DistInfo) -> None:
    """Tear the process group down (no-op for a single process)."""
    if not info.enabled:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
