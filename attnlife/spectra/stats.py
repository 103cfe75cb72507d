"""Spectral statistics of per-head bilinear maps W = A^T B from their thin factors (pure math).

For a head with A = W_Q [K, D] and B = W_K [K, D] (or A = W_V, B = W_O^T for W_OV), the D x D
matrix W = A^T B has rank <= K. Everything here works on the K x K Gram matrices
G_a = A A^T and G_b = B B^T in float64, never on the D x D matrix:

  A^T = Q_a R_a (thin QR), R_a = L_a^T where G_a = L_a L_a^T (Cholesky)
  W   = Q_a (R_a R_b^T) Q_b^T, so the nonzero lambda_k = sigma_k(W)^2 are the eigenvalues of
  M   = C C^T = L_a^T G_b L_a            (C = L_a^T L_b, K x K)

A rank-deficient G_a (Cholesky fails) uses the symmetric square root E diag(sqrt g) instead;
any S with S^T S = G_a gives the same eigenvalues. Shapes carry a leading head axis H.
Imports only torch, numpy, scipy and attnlife.measures (entropy, stable rank).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from attnlife.measures import entropy_bits, stable_rank_of_spectrum

FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class ThinSpectrum:
    """lambdas [H, K] float64 descending (sigma^2); u_top, v_top [H, k, D] float32 unit vectors.

    u_top[h, i] is the i-th left singular vector of W_h (D-space), v_top[h, i] the right one,
    so W_h ~= sum_i sqrt(lambda_i) u_i v_i^T.
    """

    lambdas: torch.Tensor
    u_top: torch.Tensor
    v_top: torch.Tensor
    gram_a: torch.Tensor | None = None  # [H, K, K] float64 A A^T (reused by element_moments)
    gram_b: torch.Tensor | None = None


def gram64(x: torch.Tensor) -> torch.Tensor:
    """G = X X^T in float64: x [H, K, D] (any float dtype) -> [H, K, K] float64."""
    xd = x.to(torch.float64)
    return torch.bmm(xd, xd.transpose(1, 2))


def _gram_root(g: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Lower factor L with L L^T = G, per head: Cholesky, or E diag(sqrt(g+)) where it fails.

    g [H, K, K] float64 symmetric PSD -> (L [H, K, K] float64, True if every L is triangular).
    """
    low, info = torch.linalg.cholesky_ex(g)
    bad = torch.nonzero(info != 0).flatten()
    if bad.numel():
        evals, evecs = torch.linalg.eigh(g[bad])
        low = low.clone()
        low[bad] = evecs * evals.clamp_min(0.0).sqrt().unsqueeze(-2)
    return low, bad.numel() == 0


def thin_spectrum(a: torch.Tensor, b: torch.Tensor, top_k: int = 4) -> ThinSpectrum:
    """Squared singular values and top-k singular vectors of W_h = A_h^T B_h, per head.

    a, b [H, K, D] -> ThinSpectrum(lambdas [H, K] float64 descending, u_top/v_top [H, k, D]).
    Cost O(H K^2 D) flops (two Gram products) + O(H K^3); the D x D matrix is never formed.
    Units: lambda in (weight units)^4, i.e. the squared singular values of W.
    """
    if a.shape != b.shape or a.dim() != 3:
        raise ValueError(f"expected a, b of equal shape [H, K, D]; got {tuple(a.shape)}, {tuple(b.shape)}")
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    ga, gb = torch.bmm(a64, a64.transpose(1, 2)), torch.bmm(b64, b64.transpose(1, 2))
    low_a, triangular = _gram_root(ga)
    m = low_a.transpose(1, 2) @ gb @ low_a  # [H, K, K] = C C^T
    m = 0.5 * (m + m.transpose(1, 2))
    evals, evecs = torch.linalg.eigh(m)  # ascending
    lambdas = evals.flip(-1).clamp_min(0.0)
    k = max(0, min(int(top_k), a.shape[1]))
    core_u = evecs.flip(-1)[..., :k]  # [H, K, k] left singular vectors of C
    sigma = lambdas[:, :k].sqrt().clamp_min(1e-300)
    # u = Q_a U = A^T L_a^{-T} U ; v = W^T u / sigma = B^T L_a U / sigma
    coef_u = torch.linalg.solve_triangular(low_a.transpose(1, 2), core_u, upper=True) \
        if triangular else torch.linalg.pinv(low_a.transpose(1, 2)) @ core_u
    coef_v = (low_a @ core_u) / sigma.unsqueeze(1)
    u = torch.bmm(coef_u.transpose(1, 2), a64)  # [H, k, D]
    v = torch.bmm(coef_v.transpose(1, 2), b64)
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return ThinSpectrum(lambdas=lambdas, u_top=torch.nan_to_num(u).float(),
                        v_top=torch.nan_to_num(v).float(), gram_a=ga, gram_b=gb)


def element_moments(a: torch.Tensor, b: torch.Tensor, gram_a: torch.Tensor | None = None,
                    gram_b: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Exact mean, std and squared Frobenius norm of the D^2 elements of W_h = A_h^T B_h.

    sum_ij W_ij = (A 1)^T (B 1);  sum_ij W_ij^2 = ||W||_F^2 = tr(G_a G_b) = sum(G_a * G_b);
    mean = sum / D^2;  std = sqrt(sumsq / D^2 - mean^2) (population).
    a, b [H, K, D] -> dict of [H] float64 tensors: mean, std, frobenius_sq. Pass the Grams
    (e.g. from `thin_spectrum`) to skip recomputing them.
    """
    d = a.shape[-1]
    total = (a.sum(-1, dtype=torch.float64) * b.sum(-1, dtype=torch.float64)).sum(-1)
    ga = gram_a if gram_a is not None else gram64(a)
    gb = gram_b if gram_b is not None else gram64(b)
    fro_sq = (ga * gb).sum((-2, -1))
    mean = total / d**2
    var = (fro_sq / d**2 - mean**2).clamp_min(0.0)
    return {"mean": mean, "std": var.sqrt(), "frobenius_sq": fro_sq}


def spectral_stats(lambdas: torch.Tensor, rank_tol: float = FLOAT32_EPS) -> dict[str, torch.Tensor]:
    """Shape statistics of a spectrum lambda [H, K] (sigma^2, descending, >= 0) -> dict of [H].

    stable_rank = sum lambda / max lambda = ||W||_F^2 / ||W||_2^2
    spectral_entropy_bits = -sum p log2 p with p_k = lambda_k / sum lambda
    participation_ratio = (sum lambda)^2 / sum lambda^2      (on eigenvalues lambda = sigma^2)
    participation_ratio_sv = (sum sigma)^2 / sum sigma^2      (on singular values: the reference
                              weight-dynamics code's definition; differs from the above)
    numerical_rank = #{sigma_k > rank_tol * K * sigma_max}
    condition_number = sigma_max / smallest sigma above that threshold (nonzero part)
    A zero matrix gives NaN for the ratios.
    """
    lam = lambdas.to(torch.float64).clamp_min(0.0)
    total = lam.sum(-1)
    p = lam / total.unsqueeze(-1)
    sigma = lam.sqrt()
    keep = sigma > rank_tol * lam.shape[-1] * sigma[..., :1]
    smallest = torch.where(keep, sigma, torch.full_like(sigma, math.inf)).min(-1).values
    out = {
        "stable_rank": stable_rank_of_spectrum(lam),
        "spectral_entropy_bits": entropy_bits(p),
        "participation_ratio": total**2 / (lam**2).sum(-1),
        "participation_ratio_sv": sigma.sum(-1) ** 2 / total,
        "numerical_rank": keep.sum(-1).to(torch.float64),
        "condition_number": sigma[..., 0] / smallest,
    }
    zero = total <= 0
    return {name: (v if name == "numerical_rank" else v.masked_fill(zero, math.nan))
            for name, v in out.items()}
