"""Spectral statistics at their limits: rank tolerance, zero and rank-deficient heads, top vectors that
rebuild W, float64 whatever the input (the Marchenko-Pastur fit `mp_kl` is retired: the exact W_QK null
is tested in test_null.py)."""
from __future__ import annotations

import math

import pytest
import torch

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


@pytest.mark.parametrize("failing", [(1,), (1, 2)])
def test_heads_whose_cholesky_fails_get_exact_lambdas_and_vectors(failing: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    a[1, 0] = 0.0                                                         # head 1: a zero first row (pivot 1)
    if 2 in failing:
        a[2, 4] = a[2, 0]                                                 # head 2: a repeated row (pivot 5)
    info = torch.linalg.cholesky_ex(torch.bmm(a, a.transpose(1, 2))).info
    assert info.tolist() == [0, 1, 5 if 2 in failing else 0]              # the fallback is what runs
    spec = S.thin_spectrum(a, b, top_k=4)
    u_ref, s_ref, vh_ref = torch.linalg.svd(_dense(a, b))
    torch.testing.assert_close(spec.lambdas, s_ref[:, :5] ** 2, rtol=1e-9, atol=1e-9 * float(s_ref.max() ** 2))
    assert float(spec.lambdas[1, 4:].abs().max()) < 1e-9 * float(spec.lambdas[1, 0])   # rank 4
    w = _dense(a, b)
    for h in range(3):
        rebuilt = sum(math.sqrt(float(spec.lambdas[h, i])) * torch.outer(spec.u_top[h, i].double(),
                                                                         spec.v_top[h, i].double()) for i in range(4))
        rank4 = (u_ref[h, :, :4] * s_ref[h, :4]) @ vh_ref[h, :4]
        torch.testing.assert_close(rebuilt, rank4, rtol=0, atol=1e-5 * float(s_ref[h, 0]))   # float32 vectors
        for i in range(4):                                                # each pair is a singular pair of W
            torch.testing.assert_close(w[h] @ spec.v_top[h, i].double(), s_ref[h, i] * spec.u_top[h, i].double(),
                                       rtol=0, atol=1e-5 * float(s_ref[h, 0]))
    for vec in (spec.u_top, spec.v_top):
        assert torch.allclose(vec.double().norm(dim=-1), torch.ones(3, 4, dtype=torch.float64), atol=1e-6)


def test_rank_deficient_head_gets_exact_lambdas_and_vectors() -> None:
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    b = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    a[1, 3:] = a[1, :2] * 2.0                                             # head 1: A has rank 3 (Cholesky
    spec = S.thin_spectrum(a, b, top_k=3)                                 # succeeds on rounding: main path)
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
