"""Spectral statistics at their limits: rank tolerance, zero and rank-deficient heads, top vectors that
rebuild W, float64 whatever the input, the Marchenko-Pastur CDF and KL against independent float64
references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from attnlife.spectra import stats as S


def _dense(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.bmm(a.double().transpose(1, 2), b.double())


def test_rank_tolerance_is_strict_and_relative_to_k_and_sigma_max() -> None:
    lam = torch.tensor([[4.0, 1.0, 0.25, 0.0], [9.0, 9.0, 0.0, 0.0], [1.0, 0.5, 0.25, 0.125]],
                       dtype=torch.float64)                               # H = 3 != K = 4
    out = S.spectral_stats(lam, rank_tol=1 / 16)                          # threshold 1/16 * 4 * sigma_max
    assert out["numerical_rank"].tolist() == [2.0, 2.0, 4.0]              # head 0: sigma 0.5 = 2/4 is not above
    assert out["condition_number"].tolist() == pytest.approx([2.0, 1.0, math.sqrt(8.0)])
    assert S.spectral_stats(lam, rank_tol=1 / 17)["numerical_rank"].tolist() == [3.0, 2.0, 4.0]
    assert out["stable_rank"].tolist() == pytest.approx([5.25 / 4, 2.0, 1.875])
    assert out["participation_ratio"].tolist() == pytest.approx([5.25**2 / (16 + 1 + 1 / 16), 2.0,
                                                                 1.875**2 / (1 + 1 / 4 + 1 / 16 + 1 / 64)])
    p = torch.tensor([4.0, 1.0, 0.25], dtype=torch.float64) / 5.25
    assert float(out["spectral_entropy_bits"][0]) == pytest.approx(float(-(p * p.log2()).sum()), rel=1e-12)


def test_zero_and_small_spectra_and_float64_output() -> None:
    lam = torch.tensor([[0.0, 0.0, 0.0], [0.25, 0.25, 0.0]], dtype=torch.float32)   # total 0.5 < 1
    out = S.spectral_stats(lam)
    assert {v.dtype for v in out.values()} == {torch.float64}
    assert out["numerical_rank"].tolist() == [0.0, 2.0]                    # a count, never NaN
    for name in ("stable_rank", "spectral_entropy_bits", "participation_ratio", "condition_number"):
        assert math.isnan(float(out[name][0])), name
    assert out["stable_rank"][1] == 2.0 and out["condition_number"][1] == 1.0
    assert out["spectral_entropy_bits"][1] == 1.0 and out["participation_ratio"][1] == 2.0


def test_rank_deficient_head_gets_exact_lambdas_and_vectors() -> None:
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    a[1, 3:] = a[1, :2] * 2.0                                             # head 1: A has rank 3 (Cholesky fails)
    spec = S.thin_spectrum(a, b, top_k=3)
    u_ref, s_ref, vh_ref = torch.linalg.svd(_dense(a, b))
    torch.testing.assert_close(spec.lambdas, s_ref[:, :5] ** 2, rtol=1e-9, atol=1e-9 * float(s_ref.max() ** 2))
    assert float(spec.lambdas[1, 3:].abs().max()) < 1e-9 * float(spec.lambdas[1, 0])
    w = _dense(a, b)
    for h in range(3):
        rebuilt = sum(math.sqrt(float(spec.lambdas[h, i])) * torch.outer(spec.u_top[h, i].double(),
                                                                         spec.v_top[h, i].double()) for i in range(3))
        rank3 = (u_ref[h, :, :3] * s_ref[h, :3]) @ vh_ref[h, :3]
        torch.testing.assert_close(rebuilt, rank3, rtol=0, atol=1e-5 * float(s_ref[h, 0]))   # float32 vectors
    assert torch.allclose(spec.u_top.double().norm(dim=-1), torch.ones(3, 3, dtype=torch.float64), atol=1e-6)
    assert torch.equal(spec.gram_a, torch.bmm(a, a.transpose(1, 2))) and torch.equal(spec.gram_b, torch.bmm(b, b.transpose(1, 2)))
    assert w.shape == (3, 12, 12)


def test_small_weights_still_give_unit_vectors_and_top_k_limits() -> None:
    g = torch.Generator().manual_seed(8)
    a, b = 1e-3 * torch.randn(2, 6, 10, generator=g), 1e-3 * torch.randn(2, 6, 10, generator=g)
    spec = S.thin_spectrum(a, b)
    assert spec.u_top.shape == spec.v_top.shape == (2, 4, 10)             # default top_k = 4 < K = 6
    for vec in (spec.u_top, spec.v_top):
        assert torch.allclose(vec.norm(dim=-1), torch.ones(2, 4), atol=1e-6)
    u_ref, s_ref, vh_ref = torch.linalg.svd(_dense(a, b))
    rebuilt = torch.einsum("hk,hki,hkj->hij", spec.lambdas[:, :4].sqrt(), spec.u_top.double(), spec.v_top.double())
    torch.testing.assert_close(rebuilt, torch.einsum("hik,hk,hkj->hij", u_ref[..., :4], s_ref[:, :4], vh_ref[:, :4]),
                               rtol=0, atol=1e-5 * float(s_ref.max()))
    assert S.thin_spectrum(a, b, top_k=0).u_top.shape == (2, 0, 10)
    assert S.thin_spectrum(a, b, top_k=9).u_top.shape == (2, 6, 10)


def test_thin_spectrum_refuses_bad_shapes_with_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"equal shape \[H, K, D\]; got \(2, 3, 4\), \(2, 3, 5\)"):
        S.thin_spectrum(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"got \(3, 4\), \(3, 4\)"):
        S.thin_spectrum(torch.zeros(3, 4), torch.zeros(3, 4))


def test_element_moments_sum_in_float64_and_reuse_given_grams(monkeypatch) -> None:
    g = torch.Generator().manual_seed(9)
    a, b = torch.rand(2, 8, 3000, generator=g), torch.rand(2, 8, 3000, generator=g)   # float32, positive sums
    got = S.element_moments(a, b)
    w = _dense(a, b)
    assert got["mean"].tolist() == pytest.approx(w.mean((1, 2)).tolist(), rel=1e-12)
    assert got["frobenius_sq"].tolist() == pytest.approx(w.square().sum((1, 2)).tolist(), rel=1e-12)
    calls = []
    real = S.gram64
    monkeypatch.setattr(S, "gram64", lambda x: calls.append(1) or real(x))
    S.element_moments(a, b, gram_a=real(a), gram_b=real(b))
    assert calls == []
    S.element_moments(a, b)
    assert len(calls) == 2


def _mp_cdf_reference(x: float, scale: float, y: float) -> float:
    lo, hi = scale * (1 - math.sqrt(y)) ** 2, scale * (1 + math.sqrt(y)) ** 2
    if x <= lo:
        return 0.0
    density = lambda t: math.sqrt(max((hi - t) * (t - lo), 0.0)) / (2 * math.pi * scale * y * t)  # noqa: E731
    return quad(density, lo, min(x, hi), epsabs=1e-13, epsrel=1e-13, limit=200)[0]


def test_marchenko_pastur_cdf_against_quadrature() -> None:
    # y < 1: the density vanishes at both edges and the cosine substitution is accurate to ~5e-8
    # (at y = 1 it diverges like x^(-1/2) at 0 and the same grid is off by ~2e-4)
    for scale, y in ((2.0, 0.25), (0.5, 0.64), (1.0, 0.04)):
        lo, hi = scale * (1 - math.sqrt(y)) ** 2, scale * (1 + math.sqrt(y)) ** 2
        xs = np.array([lo + 0.013 * (hi - lo), lo + 0.37 * (hi - lo), lo + 0.811 * (hi - lo), hi - 1e-3 * (hi - lo)])
        got = S.marchenko_pastur_cdf(xs, scale, y)
        want = [_mp_cdf_reference(float(x), scale, y) for x in xs]
        assert got.tolist() == pytest.approx(want, abs=2e-7), (scale, y)
        below = np.array([lo - 1.0, lo]) if lo > 0 else np.array([-1.0, 0.0])
        assert S.marchenko_pastur_cdf(below, scale, y).tolist() == [0.0, 0.0]
        assert S.marchenko_pastur_cdf(np.array([hi, hi + 5.0]), scale, y).tolist() == [1.0, 1.0]
    # a ratio above 1 is read as 1; the shape of x is kept
    assert np.array_equal(S.marchenko_pastur_cdf(np.ones((2, 2)), 1.0, 1.5), S.marchenko_pastur_cdf(np.ones((2, 2)), 1.0, 1.0))


def _mp_kl_reference(row: np.ndarray, bins: int | None = None, floor: float = 1e-4) -> tuple[float, float, float]:
    row = row[row > 0]
    scale = row.mean()
    ratio = min(max(row.var() / scale**2, 1e-12), 1.0)
    nb = bins or max(4, math.ceil(math.sqrt(len(row))))
    upper = max(scale * (1 + math.sqrt(ratio)) ** 2, row.max()) * (1 + 1e-9)
    edges = np.linspace(0.0, upper, nb + 1)
    p = np.histogram(row, bins=edges)[0] / len(row)
    cdf = [_mp_cdf_reference(e, scale, ratio) for e in edges]
    q = np.maximum(np.diff(cdf), floor)
    q = q / q.sum()
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)
    return kl - ((p > 0).sum() - 1) / (2 * len(row)), scale, ratio


def test_marchenko_pastur_kl_against_a_float64_reference() -> None:
    rng = np.random.default_rng(3)
    heads = np.zeros((4, 9))
    heads[0, :1] = 0.3                                                   # one positive eigenvalue: no fit
    heads[1] = np.sort(rng.uniform(0.001, 0.02, 9))[::-1]                # all below 1, nine: ceil(3) -> 4 bins
    heads[2, :6] = [0.9, 0.5, 0.4, 0.2, 0.05, 0.01]                      # zeros are not eigenvalues of the fit
    heads[3] = [50.0, 1.0, 1.0, 0.9, 0.8, 0.7, 0.5, 0.4, 0.1]            # var / mean^2 > 1: ratio clipped to 1
    got = S.marchenko_pastur_kl(torch.from_numpy(heads.copy()).float())
    assert sorted(got) == ["mp_kl_nats", "mp_ratio", "mp_scale"] and got["mp_kl_nats"].dtype == torch.float64
    assert all(math.isnan(float(got[k][0])) for k in got)
    for h in (1, 2, 3):
        kl, scale, ratio = _mp_kl_reference(heads[h].astype(np.float32).astype(np.float64))
        # head 3 fits y = 1, where the CDF grid is off by ~2e-4 (see the CDF test)
        assert float(got["mp_kl_nats"][h]) == pytest.approx(kl, abs=1e-6 if h < 3 else 5e-4), h
        assert float(got["mp_scale"][h]) == pytest.approx(scale, rel=1e-12)
        assert float(got["mp_ratio"][h]) == pytest.approx(ratio, rel=1e-12)
    assert float(got["mp_ratio"][3]) == 1.0
    six = S.marchenko_pastur_kl(torch.from_numpy(heads[1:2].copy()), bins=6)
    assert float(six["mp_kl_nats"][0]) == pytest.approx(_mp_kl_reference(heads[1], bins=6)[0], abs=1e-6)
