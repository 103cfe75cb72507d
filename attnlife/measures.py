"""The two quantities every part of attnlife measures, Shannon entropy in bits and stable rank,
and the one log-spaced step grid its loggers sample.

One pure module (torch only) at the bottom layer, imported by track (attention entropy), theory
(distinct-token and focus entropies, stable ranks of weights) and spectra (spectral entropy and
stable rank of W_QK), so each definition exists once.

  entropy_bits(p)            H = -sum_k p_k log2 p_k along `dim`, 0 log 0 = 0        (bits)
  stable_rank_of_spectrum(l) sum_k l_k / max_k l_k for l_k = sigma_k^2 >= 0           (>= 1)
  stable_rank(W)             ||W||_F^2 / ||W||_2^2 = stable_rank_of_spectrum(sigma^2)  (in [1, rank W])
  log_spaced_steps(N, P)     about P steps in [0, N] evenly spaced in log(1 + step)     (steps)
  log_spaced_steps(N)        the doubling grid 0, 1, 2, 4, ..., 2^k <= N               (steps)
"""
from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def entropy_bits(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Entropy in bits of the distributions p (>= 0, summing to 1) along `dim`: [..., K] -> [...].

    log is taken of max(p, tiny), so p = 0 contributes exactly 0 (no NaN); one temporary the size
    of p is allocated (the log is computed in place on the clamped copy).
    """
    plogp = p.clamp_min(torch.finfo(p.dtype).tiny).log_().mul_(p)
    return plogp.sum(dim) * (-1.0 / LN2)


def stable_rank_of_spectrum(lambdas: torch.Tensor) -> torch.Tensor:
    """sum lambda / max lambda over the last axis of squared singular values [..., K] -> [...]
    (NaN for an all-zero spectrum)."""
    return lambdas.sum(-1) / lambdas.amax(-1)


def stable_rank(weight: torch.Tensor) -> torch.Tensor:
    """||W||_F^2 / ||W||_2^2 of a matrix [M, N] (float64 SVD) -> scalar tensor."""
    sigma = torch.linalg.svdvals(weight.detach().to(torch.float64))
    return stable_rank_of_spectrum(sigma**2)


def log_spaced_steps(n_steps: int, n_points: int | None = None) -> list[int]:
    """Steps in [0, n_steps], ascending, spaced evenly in log(1 + step).

    With `n_points`: round(10^(k log10(n_steps + 1) / (n_points - 1))) - 1 for k = 0..n_points-1,
    deduplicated, with 0 and n_steps always included (about n_points distinct steps). Without:
    the doubling grid 0, 1, 2, 4, ..., 2^k <= n_steps (the early part of a checkpoint series).
    """
    if n_points is None:
        return [0] + [2 ** k for k in range(max(int(n_steps), 1).bit_length()) if 2 ** k <= n_steps]
    grid = torch.logspace(0, math.log10(n_steps + 1), n_points, dtype=torch.float64) - 1
    return sorted({int(round(s)) for s in grid.tolist()} | {0, n_steps})
