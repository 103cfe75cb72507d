"""The exact W_QK null: the product law against quadrature and Monte-Carlo, random heads inside the
Monte-Carlo band, a planted aligned head far outside, and the rotation null's exactness."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

from attnlife.spectra import null as N
from attnlife.spectra.stats import thin_spectrum

SHAPES = [(8, 32), (16, 64), (32, 128), (64, 256), (64, 768)]


def _gaussian_heads(h: int, k: int, d: int, seed: int, std: float = 0.02) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(h, k, d, generator=g, dtype=torch.float64) * std,
            torch.randn(h, k, d, generator=g, dtype=torch.float64) * std)


def _stats(a: torch.Tensor, b: torch.Tensor, rotations: int = N.ROTATIONS) -> dict[str, np.ndarray]:
    spec = thin_spectrum(a, b, top_k=0)
    out = N.null_stats(spec.lambdas, spec.gram_a, spec.gram_b, a.shape[-1], rotations=rotations)
    return {k: v.numpy() for k, v in out.items()}


@pytest.mark.parametrize("c", [0.05, 0.25, 0.5, 1.0])
def test_density_integrates_to_one_with_the_free_moments(c: float) -> None:
    lo, hi = N.product_mp_edges(c)
    f = lambda x: float(N.product_mp_density(np.array([x]), c)[0])  # noqa: E731
    mass, mean, m2 = (quad(lambda x, p=p: x**p * f(x), lo, hi, limit=200)[0] for p in (0, 1, 2))
    assert mass == pytest.approx(1.0, abs=1e-7)
    assert mean == pytest.approx(1.0, abs=1e-7)          # free product of two mean-1 laws
    assert m2 == pytest.approx(1.0 + 2.0 * c, abs=1e-7)  # phi(abab) = m2(a) + m2(b) - 1, m2(MP_c) = 1 + c
    assert N.product_mp_density(np.array([lo - 1e-3, hi + 1e-3]), c).max() == 0.0


def test_edges_closed_forms() -> None:
    assert N.product_mp_edges(1.0) == pytest.approx((0.0, 6.75))  # Fuss-Catalan: 27 / 4
    lo, hi = N.product_mp_edges(1e-6)
    assert lo == pytest.approx(1.0, abs=0.01) and hi == pytest.approx(1.0, abs=0.01)  # -> point mass at 1
    with pytest.raises(ValueError):
        N.product_mp_edges(1.5)


@pytest.mark.parametrize("k,d", [(100, 400), (64, 128)])
def test_density_matches_a_monte_carlo_histogram(k: int, d: int) -> None:
    a, b = _gaussian_heads(40, k, d, seed=1, std=1.0)
    spec = thin_spectrum(a, b, top_k=0)
    x = (spec.lambdas / N.null_scale(spec.gram_a, spec.gram_b)[:, None]).numpy().ravel()
    c = k / d
    edges = np.linspace(*N.product_mp_edges(c), 26)
    empirical = np.histogram(x, edges)[0] / x.size
    law = np.diff(N.product_mp_cdf(edges, c))
    assert np.abs(empirical - law).max() < 0.01
    assert N.ks_distance(x[None], c)[0] < 0.015


def test_bartlett_reference_agrees_with_gaussian_factors() -> None:
    """The cached reference (Bartlett Wishart draws) has the edge of heads drawn as factors."""
    k, d = 16, 64
    ref = N.null_reference(k, d)
    a, b = _gaussian_heads(1000, k, d, seed=3, std=1.0)
    spec = thin_spectrum(a, b, top_k=0)
    lam1 = (spec.lambdas[:, 0] / N.null_scale(spec.gram_a, spec.gram_b)).numpy()
    assert np.quantile(lam1, 0.5) == pytest.approx(np.quantile(ref.lambda1, 0.5), rel=0.02)
    assert np.quantile(lam1, 0.9) == pytest.approx(np.quantile(ref.lambda1, 0.9), rel=0.03)
    assert ref.edge > ref.asymptotic_edge  # finite heads overshoot the asymptotic edge


@pytest.mark.parametrize("k,d", SHAPES)
def test_random_init_heads_lie_inside_the_monte_carlo_band(k: int, d: int) -> None:
    a, b = _gaussian_heads(8, k, d, seed=k + d)
    s = _stats(a, b)
    ref = N.null_reference(k, d)
    assert np.all(s["qk_null_ks"] <= ref.ks.max())
    assert np.all(s["qk_null_ks_p"] > 1.0 / (1 + N.MC_DRAWS))
    assert np.all(s["lambda1_over_null_edge"] <= ref.lambda1.max() / ref.edge)
    assert np.all(np.abs(s["qk_alignment_index"] - 1.0) < 0.1)
    assert np.all(s["lambda1_rotation_p"] > 1.0 / (1 + N.ROTATIONS))


def test_planted_aligned_head_is_far_beyond_the_null() -> None:
    """Q and K share a strong head-space direction (the same row of both factors carries a spike)."""
    k, d = 32, 128
    a, b = _gaussian_heads(4, k, d, seed=9)
    g = torch.Generator().manual_seed(10)
    x, y = torch.randn(2, d, generator=g, dtype=torch.float64)
    a[:, 0] += x / x.norm()  # ~4.4x a row norm (0.02 sqrt 128)
    b[:, 0] += y / y.norm()
    s = _stats(a, b)
    ref = N.null_reference(k, d)
    assert np.all(s["qk_alignment_index"] > 3.0)
    assert np.all(s["lambda1_over_null_edge"] > 20.0)
    assert np.all(s["qk_null_ks"] > 4 * ref.ks.max())
    assert np.all(s["qk_null_ks_p"] == pytest.approx(1.0 / (1 + N.MC_DRAWS)))
    assert np.all(s["lambda1_rotation_p"] == pytest.approx(1.0 / (1 + N.ROTATIONS)))


def test_rotation_null_is_exact_under_the_null() -> None:
    """Gaussian heads make the rotation p-value uniform on its grid: P(p <= 0.1) ~ 0.1, never 0."""
    a, b = _gaussian_heads(300, 8, 32, seed=4)
    spec = thin_spectrum(a, b, top_k=0)
    p = N.rotation_null_p(spec.gram_a, spec.gram_b, spec.lambdas[:, 0], rotations=99).numpy()
    assert p.min() >= 0.01
    share = float(np.mean(p <= 0.1))
    assert abs(share - 0.1) < 3 * math.sqrt(0.1 * 0.9 / 300)
    assert p.mean() == pytest.approx(0.5, abs=0.06)


def test_rotation_null_counts_like_an_eigendecomposition() -> None:
    a, b = _gaussian_heads(6, 16, 64, seed=6)
    spec = thin_spectrum(a, b, top_k=0)
    p = N.rotation_null_p(spec.gram_a, spec.gram_b, spec.lambdas[:, 0], rotations=49).numpy()
    rot = N.haar_rotations(16, 49)
    sa, sb = (torch.linalg.eigvalsh(g).sqrt() for g in (spec.gram_a, spec.gram_b))
    for h in range(6):
        top = torch.linalg.svdvals(sa[h].view(1, -1, 1) * rot * sb[h].view(1, 1, -1))[:, 0] ** 2
        assert p[h] == pytest.approx((1 + int((top >= spec.lambdas[h, 0]).sum())) / 50)


def test_haar_rotations_are_orthogonal_and_unbiased() -> None:
    r = N.haar_rotations(6, 400)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(6, dtype=torch.float64).expand(400, 6, 6), atol=1e-12)
    assert r.mean(0).abs().max() < 0.15  # E[Q] = 0 for Haar (a sign-fixed QR would bias the diagonal)


@settings(max_examples=15, deadline=None)
@given(sq=st.floats(0.01, 100.0), sk=st.floats(0.01, 100.0))
def test_null_statistics_are_scale_free(sq: float, sk: float) -> None:
    a, b = _gaussian_heads(3, 8, 32, seed=7)
    base, scaled = _stats(a, b, rotations=19), _stats(a * sq, b * sk, rotations=19)
    for name in base:
        assert np.allclose(base[name], scaled[name], rtol=1e-9, atol=1e-12), name


def test_alignment_index_is_mean_lambda_over_scale_and_zero_heads_are_nan() -> None:
    a, b = _gaussian_heads(3, 8, 32, seed=8)
    b[2] = 0.0
    spec = thin_spectrum(a, b, top_k=0)
    idx = N.alignment_index(spec.gram_a, spec.gram_b)
    mean_over_scale = spec.lambdas.mean(-1) / N.null_scale(spec.gram_a, spec.gram_b)
    assert torch.allclose(idx[:2], mean_over_scale[:2], rtol=1e-12)
    s = _stats(a, b, rotations=9)
    assert all(math.isnan(v[2]) for v in s.values())


def test_the_gpt_at_initialisation_is_a_null_head_for_every_head() -> None:
    """The model's own init (normal(0, 0.02) rows of c_attn) through the real layout and sweep code."""
    from attnlife.model.gpt import GPT, GPTConfig
    from attnlife.spectra.analyse import SpectraOptions, head_factors, matrix_stats
    from attnlife.spectra.layouts import extract_layer, spec_from_gpt_config

    torch.manual_seed(0)
    cfg = GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=4, n_embd=128)
    state = GPT(cfg).state_dict()
    spec = spec_from_gpt_config(cfg.to_dict(), "attnlife")
    ref = N.null_reference(32, 128)
    for layer in range(2):
        a, b = head_factors(extract_layer(state.__getitem__, set(state), spec, layer), "qk")
        stats, _ = matrix_stats(a, b, SpectraOptions(elements=False), null=True)
        assert np.all(np.abs(stats["qk_alignment_index"].numpy() - 1) < 0.1)
        assert np.all(stats["qk_null_ks"].numpy() <= ref.ks.max())
        assert np.all(stats["lambda1_over_null_edge"].numpy() < ref.lambda1.max() / ref.edge)
