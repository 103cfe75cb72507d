"""Preallocated key/value cache for incremental decoding."""
from __future__ import annotations

import torch


class LayerKV:
    """Keys and values of one layer: two [B, H, capacity, K] buffers filled up to `length`."""

    def __init__(self, batch: int, n_head: int, capacity: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.k = torch.empty(batch, n_head, capacity, head_dim, device=device, dtype=dtype)
        self.v = torch.empty_like(self.k)
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, H, t, K] after the cached ones; return all keys and values so far."""
        t = k.size(2)
        end = self.length + t
        if end > self.k.size(2):
            raise ValueError(f"KV cache full: {end} > capacity {self.k.size(2)}")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """One `LayerKV` per layer; `length` is the number of cached positions."""

    def __init__(self, n_layer: int, batch: int, n_head: int, capacity: int, head_dim: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.layers = [LayerKV(batch, n_head, capacity, head_dim, device, dtype) for _ in range(n_layer)]

    @property
    def length(self) -> int:
        return self.layers[0].length
