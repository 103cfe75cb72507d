"""Element distribution of W_h = A_h^T B_h by streaming row blocks (pure math, bounded memory).

The exact mean mu and std sigma (from `stats.element_moments`) fix the histogram before any
element is seen: `bins` equal bins on z = (w - mu) / sigma in [-z_max, z_max] plus one overflow
bin each side. Rows of W are produced `block_rows` at a time for all heads at once
([H, block_rows, D] floats), so memory is O(H * block_rows * D) whatever D is.

  KL(P(w) || N(mu, sigma)) = sum_b P_b ln(P_b / Q_b)   (nats; Q_b = Gaussian mass of bin b)
  plug-in bias ~ (m - 1) / (2 N), m = occupied bins, N = elements counted: subtracted, so
  values compare across matrix sizes (the uncorrected bias is reported beside it).
  excess_kurtosis = mean(z^4) - 3.

With `sample_rows`, only that many rows (uniform without replacement, seeded) are streamed;
they are dealt into `groups` interleaved groups and the standard error of each statistic is
std(group values) / sqrt(groups).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Z_MAX = 6.0


@dataclass(frozen=True)
class ElementDistribution:
    """Per-head results, each [H] float64: kl_gauss_nats (bias-corrected), kl_bias_nats,
    excess_kurtosis, and their standard errors (NaN unless rows were sampled), n_elements, and
    `counts` [H, bins + 2] int64: the histogram itself on `histogram_edges_sigma(bins)`."""

    kl_gauss_nats: torch.Tensor
    kl_bias_nats: torch.Tensor
    excess_kurtosis: torch.Tensor
    kl_gauss_se_nats: torch.Tensor
    excess_kurtosis_se: torch.Tensor
    n_elements: int
    counts: torch.Tensor | None = None


def histogram_edges_sigma(bins: int, z_max: float = Z_MAX) -> torch.Tensor:
    """Edges [bins + 3] float64, in units of sigma, of the `bins` + 2 histogram bins.

    The inner `bins` bins split [-z_max, z_max] equally (width w = 2 z_max / bins); the first and
    last bins are the overflow bins, drawn as [-z_max - w, -z_max) and [z_max, z_max + w] but
    holding every element below -z_max and above z_max.
    """
    width = 2 * z_max / bins
    return torch.linspace(-z_max - width, z_max + width, bins + 3, dtype=torch.float64)


def gaussian_bin_masses(bins: int, z_max: float = Z_MAX) -> torch.Tensor:
    """Standard-normal mass of [-inf, -z_max), the `bins` equal bins, [z_max, inf): [bins + 2]."""
    edges = torch.linspace(-z_max, z_max, bins + 1, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(edges / math.sqrt(2)))
    full = torch.cat([torch.zeros(1, dtype=torch.float64), cdf, torch.ones(1, dtype=torch.float64)])
    return full.diff()


def histogram_kl(counts: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bias-corrected plug-in KL(P || Q) in nats and the bias removed.

    counts [..., nb] (float or int), q [nb] probabilities -> (kl [...], bias [...]) float64 with
    P = counts / N, kl = sum_{P>0} P ln(P/Q) - (m - 1)/(2N), bias = (m - 1)/(2N).
    """
    c = counts.to(torch.float64)
    n = c.sum(-1, keepdim=True)
    p = c / n
    occupied = p > 0
    terms = torch.where(occupied, p * torch.log(p.clamp_min(1e-300) / q.clamp_min(1e-300)),
                        torch.zeros_like(p))
    bias = (occupied.sum(-1).to(torch.float64) - 1) / (2 * n.squeeze(-1))
    return terms.sum(-1) - bias, bias


def _accumulate(block: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, bins: int,
                counts: torch.Tensor, fourth: torch.Tensor, z_max: float) -> None:
    """Add one row block [H, r, D] into counts [H, bins + 2] and sum of z^4 fourth [H].

    z is clamped into the two overflow bins [-z_max - w, -z_max) and [z_max, z_max + w]
    (w = 2 z_max / bins) and counted with `torch.histc` over bins + 2 equal bins; the block is
    modified in place (it is a temporary).
    """
    z = block.sub_(mean.to(block.dtype).view(-1, 1, 1)).div_(std.to(block.dtype).view(-1, 1, 1))
    fourth += z.square().square_().sum((-2, -1), dtype=torch.float64)
    width = 2 * z_max / bins
    lo, hi = -z_max - width, z_max + width
    z.clamp_(lo + width / 2, hi)
    for h in range(z.shape[0]):
        counts[h] += torch.histc(z[h], bins=bins + 2, min=lo, max=hi).long()


def element_distribution(a: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                         bins: int = 200, block_rows: int = 128, sample_rows: int = 0,
                         seed: int = 0, groups: int = 8) -> ElementDistribution:
    """Histogram KL to N(mean, std) and excess kurtosis of the elements of W_h = A_h^T B_h.

    a, b [H, K, D]; mean, std [H] exact (from `element_moments`). Row i of W_h is A_h[:, i]^T B_h.
    sample_rows = 0 streams all D rows; otherwise that many sampled rows, with standard errors.
    """
    n_heads, _, d = a.shape
    if sample_rows and 0 < sample_rows < d:
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randperm(d, generator=gen)[:sample_rows].sort().values
        n_groups = max(2, min(groups, sample_rows))
    else:
        rows, n_groups = torch.arange(d), 1
    counts = torch.zeros(n_groups, n_heads, bins + 2, dtype=torch.long)
    fourth = torch.zeros(n_groups, n_heads, dtype=torch.float64)
    safe_std = torch.where(std > 0, std, torch.ones_like(std))
    a_t = a.transpose(1, 2)  # [H, D, K]
    for g in range(n_groups):
        grp = rows[g::n_groups]
        for start in range(0, grp.numel(), block_rows):
            sel = grp[start:start + block_rows]
            block = torch.bmm(a_t[:, sel], b)  # [H, r, D]
            _accumulate(block, mean, safe_std, bins, counts[g], fourth[g], Z_MAX)
    q = gaussian_bin_masses(bins)
    per_group_n = counts.sum(-1).to(torch.float64)  # [G, H]
    total = counts.sum(0)
    kl, bias = histogram_kl(total, q)
    kurt = fourth.sum(0) / per_group_n.sum(0) - 3.0
    nan = torch.full((n_heads,), math.nan, dtype=torch.float64)
    kl_se, kurt_se = nan, nan
    if n_groups > 1:
        kl_g, _ = histogram_kl(counts, q)  # [G, H]
        kurt_g = fourth / per_group_n - 3.0
        kl_se = kl_g.std(0) / math.sqrt(n_groups)
        kurt_se = kurt_g.std(0) / math.sqrt(n_groups)
    flat = std <= 0
    kl, kurt = kl.masked_fill(flat, math.nan), kurt.masked_fill(flat, math.nan)
    return ElementDistribution(kl_gauss_nats=kl, kl_bias_nats=bias, excess_kurtosis=kurt,
                               kl_gauss_se_nats=kl_se, excess_kurtosis_se=kurt_se,
                               n_elements=int(rows.numel() * d), counts=total)
