"""Thin-factor spectra and element statistics against float64 dense references and closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.spectra.stats import element_moments, spectral_stats, thin_spectrum
from attnlife.spectra.stats_elements import element_distribution, gaussian_bin_masses, histogram_kl


def _dense(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.bmm(a.double().transpose(1, 2), b.double())  # [H, D, D]


def _trained_like(h: int, k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ill-conditioned factors: power-law row scales and a shared low-rank component."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -3, k).view(1, k, 1)
    shared = torch.randn(1, 1, d, generator=g)
    a = torch.randn(h, k, d, generator=g) * scales + 0.5 * shared
    b = torch.randn(h, k, d, generator=g) * scales.flip(1) - 0.3 * shared
    return a.float(), b.float()


@pytest.mark.parametrize("kind", ["random", "trained_like"])
def test_thin_lambda_matches_float64_full_svd(kind: str) -> None:
    h, k, d = 3, 16, 96
    if kind == "random":
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(h, k, d, generator=g), torch.randn(h, k, d, generator=g)
    else:
        a, b = _trained_like(h, k, d, 1)
    spec = thin_spectrum(a, b, top_k=4)
    u_ref, s_ref, vh_ref = torch.linalg.svd(_dense(a, b))
    lam_ref = s_ref[:, :k] ** 2
    rel = (spec.lambdas - lam_ref).abs() / lam_ref[:, :1]
    assert rel.max() < 1e-6
    # every lambda, not only the large ones, to 1e-6 relative where it is above float noise
    big = lam_ref > 1e-8 * lam_ref[:, :1]
    assert ((spec.lambdas - lam_ref).abs() / lam_ref)[big].max() < 1e-6
    for i in range(4):  # vectors agree up to sign
        assert torch.allclose((spec.u_top[:, i].double() * u_ref[:, :, i]).sum(-1).abs(),
                              torch.ones(h, dtype=torch.float64), atol=1e-4)
        assert torch.allclose((spec.v_top[:, i].double() * vh_ref[:, i, :]).sum(-1).abs(),
                              torch.ones(h, dtype=torch.float64), atol=1e-4)


def test_rank_deficient_and_zero_heads() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(2, 8, 40, generator=g), torch.randn(2, 8, 40, generator=g)
    b[0, :5] = 0.0  # rank 3
    a[1] = 0.0
    spec = thin_spectrum(a, b)
    lam_ref = torch.linalg.svdvals(_dense(a, b))[:, :8] ** 2
    assert torch.allclose(spec.lambdas[0], lam_ref[0], rtol=0, atol=1e-9 * lam_ref[0, 0])
    assert torch.all(spec.lambdas[1] == 0)
    stats = spectral_stats(spec.lambdas)
    assert stats["numerical_rank"][0] == 3
    assert math.isnan(stats["stable_rank"][1])


@given(seed=st.integers(0, 10_000), k=st.integers(1, 6), d=st.integers(6, 30))
@settings(max_examples=25, deadline=None)
def test_exact_element_moments_match_dense(seed: int, k: int, d: int) -> None:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, k, d, generator=g) + 0.3, torch.randn(2, k, d, generator=g)
    m = element_moments(a, b)
    w = _dense(a, b)
    assert torch.allclose(m["mean"], w.mean((1, 2)), atol=1e-12)
    assert torch.allclose(m["std"], w.std((1, 2), unbiased=False), rtol=1e-10)
    assert torch.allclose(m["frobenius_sq"], (w**2).sum((1, 2)), rtol=1e-12)


def test_spectral_stats_closed_forms() -> None:
    lam = torch.tensor([[5.0, 0, 0, 0], [1.0, 1, 1, 1], [4.0, 1, 0, 0]], dtype=torch.float64)
    s = spectral_stats(lam)
    assert torch.allclose(s["stable_rank"], torch.tensor([1.0, 4.0, 1.25], dtype=torch.float64))
    assert torch.allclose(s["spectral_entropy_bits"],
                          torch.tensor([0.0, 2.0, -(0.8 * math.log2(0.8) + 0.2 * math.log2(0.2))],
                                       dtype=torch.float64))
    assert torch.allclose(s["participation_ratio"], torch.tensor([1.0, 4.0, 25 / 17], dtype=torch.float64))
    # on singular values (the reference code's definition): (sum sigma)^2 / sum sigma^2
    assert torch.allclose(s["participation_ratio_sv"], torch.tensor([1.0, 4.0, 9 / 5], dtype=torch.float64))
    assert torch.allclose(s["condition_number"], torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    assert s["numerical_rank"].tolist() == [1.0, 4.0, 2.0]


def test_histogram_kl_of_gaussian_is_zero_after_bias_correction() -> None:
    g = torch.Generator().manual_seed(3)
    # an exactly Gaussian W = A^T B: A = identity (K = D), B Gaussian, so W = B.
    d = 600
    b = torch.randn(1, d, d, generator=g)
    a = torch.eye(d).unsqueeze(0)  # W = B
    mean, std = b.double().mean().view(1), b.double().std(unbiased=False).view(1)
    dist = element_distribution(a, b, mean, std, bins=100, block_rows=100)
    assert dist.n_elements == d * d
    assert 50 / (2 * d * d) < dist.kl_bias_nats[0] <= 101 / (2 * d * d)  # (m - 1) / 2N, m occupied bins
    assert abs(float(dist.kl_gauss_nats[0])) < 2e-5
    assert float(dist.kl_gauss_nats[0] + dist.kl_bias_nats[0]) > 0.5 * float(dist.kl_bias_nats[0])
    assert abs(float(dist.excess_kurtosis[0])) < 0.03
    # a heavy-tailed matrix is far from Gaussian
    t = torch.distributions.StudentT(3.0).sample((1, d, d))
    dist_t = element_distribution(a, t, t.double().mean().view(1), t.double().std(unbiased=False).view(1))
    assert float(dist_t.kl_gauss_nats[0]) > 0.02 and float(dist_t.excess_kurtosis[0]) > 3


def test_streamed_histogram_equals_dense_and_sampling_reports_error() -> None:
    a, b = _trained_like(2, 8, 64, 4)
    m = element_moments(a, b)
    full = element_distribution(a, b, m["mean"], m["std"], bins=40, block_rows=7)
    w = _dense(a, b)
    z = (w - m["mean"].view(-1, 1, 1)) / m["std"].view(-1, 1, 1)
    q = gaussian_bin_masses(40)
    for h in range(2):
        counts = torch.histc(z[h].clamp(-6 - 1e-9, 6 + 1e-9), bins=42, min=-6 - 12 / 40, max=6 + 12 / 40)
        kl_ref, _ = histogram_kl(counts, q)
        assert float(full.kl_gauss_nats[h]) == pytest.approx(float(kl_ref), abs=1e-9)
        assert float(full.excess_kurtosis[h]) == pytest.approx(float((z[h] ** 4).mean() - 3), rel=1e-6)  # float32 row blocks
    sampled = element_distribution(a, b, m["mean"], m["std"], bins=40, sample_rows=32, seed=1)
    assert torch.all(sampled.kl_gauss_se_nats > 0) and sampled.n_elements == 32 * 64
    assert torch.all((sampled.excess_kurtosis - full.excess_kurtosis).abs() < 5 * sampled.excess_kurtosis_se + 1e-3)
