"""Shared builders for the tracking tests: random causal patterns and float64 references."""
from __future__ import annotations

import math

import torch


def random_causal(B: int, H: int, T: int, seed: int = 0, dtype=torch.float32, sharp: float = 3.0) -> torch.Tensor:
    """Softmax of random scores under a causal mask: [B, H, T, T]."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, H, T, T, generator=g, dtype=torch.float64) * sharp
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1).to(dtype)


def reference_rows(p, threshold: float = 0.01) -> dict:
    """Loop-based float64 reference of every per-row metric for one [T, T] pattern (lists per row)."""
    T = len(p)
    out = {k: [] for k in ("entropy_bits", "entropy_norm", "span_tokens", "mean_distance_tokens", "sink_mass")}
    for i in range(T):
        row = [float(p[i][j]) for j in range(i + 1)]
        h = -sum(a * math.log2(a) for a in row if a > 0)
        out["entropy_bits"].append(h)
        out["entropy_norm"].append(h / math.log2(i + 1) if i > 0 else float("nan"))
        kept = [abs(i - j) for j, a in enumerate(row) if a > threshold]
        out["span_tokens"].append(sum(kept) / len(kept) if kept else float("nan"))
        out["mean_distance_tokens"].append(sum(a * abs(i - j) for j, a in enumerate(row)))
        out["sink_mass"].append(row[0])
    return out


def reference_jsd(p, q) -> float:
    """float64 loop JSD in bits between two distributions."""
    def h(x):
        return -sum(a * math.log2(a) for a in x if a > 0)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return h(m) - (h(p) + h(q)) / 2
