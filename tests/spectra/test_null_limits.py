"""The exact W_QK null at its limits: the Bartlett draws' moments (uncached), the shapes it refuses
(K = 0, K > D) and the boundary it takes (K = D), heads it cannot judge (non-finite lambdas),
the rotation count at 0 and 1, and the seeded Monte-Carlo reference it reads."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnlife.spectra import null as N
from attnlife.spectra.stats import thin_spectrum

NAMES = ["lambda1_over_null_edge", "lambda1_rotation_p", "qk_alignment_index", "qk_null_ks", "qk_null_ks_p"]


def _heads(h: int, k: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(h, k, d, generator=g, dtype=torch.float64) * 0.02,
            torch.randn(h, k, d, generator=g, dtype=torch.float64) * 0.02)


def test_bartlett_factors_have_the_wishart_moments() -> None:
    n, k, d = 40_000, 3, 5
    low = N.wishart_grams(n, k, d, np.random.default_rng(11))
    assert low.shape == (n, k, k) and np.all(np.triu(low, 1) == 0) and np.all(low[:, range(k), range(k)] > 0)
    g = low @ low.transpose(0, 2, 1)                                      # Wishart_3(I, 5)
    mean, var = g.mean(0), g.var(0)
    assert np.abs(mean - d * np.eye(k)).max() < 0.1                       # E G = D I (sd of a mean: 0.016)
    diag, off = var[range(k), range(k)], var[~np.eye(k, dtype=bool)]
    assert np.abs(diag - 2 * d).max() < 0.8 and np.abs(off - d).max() < 0.5   # Var G_ii = 2D, Var G_ij = D
    below = low[:, 1:, :1].ravel()                                         # the free normals: N(0, 1)
    assert abs(below.mean()) < 0.02 and abs(below.var() - 1) < 0.03
    # the diagonal: sqrt of chi^2 with D, D - 1, D - 2 degrees of freedom
    assert (low[:, range(k), range(k)] ** 2).mean(0) == pytest.approx([5, 4, 3], abs=0.06)


@pytest.mark.parametrize("k, d", [(0, 4), (5, 4)])
def test_shapes_outside_zero_to_d_give_float64_nan_for_every_statistic(k: int, d: int) -> None:
    lam = torch.ones(3, k, dtype=torch.float64)
    grams = torch.eye(k, dtype=torch.float64).expand(3, k, k)
    out = N.null_stats(lam, grams, grams, d, rotations=3, draws=20)
    assert sorted(out) == NAMES
    for name, v in out.items():
        assert v.dtype == torch.float64 and v.shape == (3,) and torch.isnan(v).all(), name


def test_k_equal_d_and_k_one_are_judged() -> None:
    for k, d in ((4, 4), (1, 4)):
        a, b = _heads(2, k, d, seed=3)
        spec = thin_spectrum(a, b, top_k=0)
        out = N.null_stats(spec.lambdas, spec.gram_a, spec.gram_b, d, rotations=3, draws=50)
        assert sorted(out) == NAMES
        for name in ("qk_null_ks", "qk_null_ks_p", "lambda1_over_null_edge", "lambda1_rotation_p"):
            assert torch.isfinite(out[name]).all(), (k, name)


def test_a_head_with_non_finite_lambdas_is_nan_and_the_others_are_judged() -> None:
    a, b = _heads(3, 4, 16, seed=5)
    spec = thin_spectrum(a, b, top_k=0)
    lam = spec.lambdas.clone()
    lam[1, 2] = math.nan
    out = N.null_stats(lam, spec.gram_a, spec.gram_b, 16, rotations=0, draws=50)
    for name in ("qk_null_ks", "qk_null_ks_p", "lambda1_over_null_edge"):
        assert torch.isnan(out[name][1]) and torch.isfinite(out[name][[0, 2]]).all(), name
    assert torch.isnan(out["lambda1_rotation_p"]).all()                   # rotations = 0: not computed


def test_one_rotation_gives_a_p_of_one_half_or_one_and_the_reference_is_seed_zero() -> None:
    a, b = _heads(4, 4, 16, seed=6)
    spec = thin_spectrum(a, b, top_k=0)
    one = N.null_stats(spec.lambdas, spec.gram_a, spec.gram_b, 16, rotations=1, draws=60)
    assert all(v.dtype == torch.float64 for v in one.values())
    assert set(one["lambda1_rotation_p"].tolist()) <= {0.5, 1.0}          # (1 + #{1 draw >= l1}) / 2
    assert one["lambda1_rotation_p"].tolist() == N.rotation_null_p(
        spec.gram_a, spec.gram_b, spec.lambdas[:, 0], 1, 0).tolist()
    # the default seed is 0: the Monte-Carlo reference of (K, D) drawn with seed 0 gives the p and edge
    ref = N.null_reference(4, 16, 60, 0)
    x = (spec.lambdas / N.null_scale(spec.gram_a, spec.gram_b).unsqueeze(-1)).numpy()
    ks = N.ks_distance(x, 4 / 16)
    assert one["qk_null_ks"].numpy() == pytest.approx(ks, rel=1e-12)
    assert one["qk_null_ks_p"].numpy() == pytest.approx(ref.ks_p(ks), rel=1e-12)
    assert one["lambda1_over_null_edge"].numpy() == pytest.approx(x[:, 0] / ref.edge, rel=1e-12)
    other = N.null_reference(4, 16, 60, 1)                                # a different seed: a different edge
    assert other.edge != ref.edge


def test_ks_distance_per_row_equals_scipys_statistic() -> None:
    from scipy.stats import kstest

    c = 0.25
    rng = np.random.default_rng(4)
    x = np.stack([rng.uniform(0.2, 3.0, 7), rng.uniform(0.9, 1.1, 7), rng.permutation(np.linspace(0.3, 2.9, 7))])
    got = N.ks_distance(x, c)
    want = [kstest(row, lambda t: N.product_mp_cdf(np.asarray(t), c)).statistic for row in x]
    assert got.shape == (3,) and got.tolist() == pytest.approx(want, abs=1e-12)
    assert len(set(np.round(want, 6))) == 3                              # three different rows, three distances


@pytest.mark.parametrize("c", [0.25, 0.7])
def test_edges_are_where_the_cubic_gets_complex_roots(c: float) -> None:
    lo, hi = N.product_mp_edges(c)
    assert 0 < lo < 1 < hi
    im = lambda x: np.abs(N._cubic_roots(np.array([x]), c).imag).max()  # noqa: E731
    assert im(lo * (1 - 1e-3)) < 1e-6 < im(lo * (1 + 1e-3))              # real roots outside, a complex pair inside
    assert im(hi * (1 + 1e-3)) < 1e-6 < im(hi * (1 - 1e-3))
    for bad in (0.0, -0.1, 1.0 + 1e-12):
        with pytest.raises(ValueError, match=r"must be in \(0, 1\], got "):
            N.product_mp_edges(bad)


def test_ks_distance_is_each_rows_own_supremum() -> None:
    """A row at the law's quantiles is 1/(2K) from it whatever the other rows are; a row far left of
    the support is ~1 away: one row's distance never leaks into another's."""
    c, k = 0.25, 8
    xs, cdf, _ = N._cdf_table(c)
    at_quantiles = np.interp((np.arange(k) + 0.5) / k, cdf, xs)          # F(x_i) = (i - 1/2) / K
    far_left = np.full(k, xs[0] / 2)                                      # F = 0: D+ = 1
    got = N.ks_distance(np.stack([at_quantiles, far_left]), c)
    assert got == pytest.approx([0.5 / k, 1.0], abs=1e-9)


@pytest.mark.parametrize("c", [0.25, 1.0])
def test_density_is_zero_at_the_edges_themselves_and_pointwise_in_one_call(c: float) -> None:
    lo, hi = N.product_mp_edges(c)
    with np.errstate(all="ignore"):
        assert N.product_mp_density(np.array([lo, hi]), c).tolist() == [0.0, 0.0]   # open support
    x = np.linspace(lo, hi, 7)[1:-1]
    one_by_one = [float(N.product_mp_density(np.array([v]), c)[0]) for v in x]
    assert N.product_mp_density(x, c).tolist() == one_by_one                         # one call, each its own
    assert len(set(np.round(one_by_one, 9))) == len(x)
    grid = x[:4].reshape(2, 2)                                                       # any shape in, same shape out
    assert N.product_mp_density(grid, c).shape == (2, 2)
    assert N.product_mp_density(grid, c).ravel().tolist() == one_by_one[:4]


def test_ks_p_counts_ties_as_reaching_and_keeps_the_shape() -> None:
    ref = N.NullReference(k=2, d=4, lambda1=np.ones(3), ks=np.array([0.1, 0.2, 0.3]), edge=1.0,
                          asymptotic_edge=1.0)
    assert ref.ks_p(np.array([0.2])).tolist() == [3 / 4]                 # (1 + #{0.2, 0.3}) / (1 + 3)
    assert ref.ks_p(np.array([[0.05, 0.3], [0.25, 0.31]])).tolist() == [[1.0, 0.5], [0.5, 0.25]]
    assert ref.ks_p(0.3).shape == () and float(ref.ks_p(0.3)) == 0.5


def test_a_non_default_seed_reaches_the_reference_and_the_rotations() -> None:
    a, b = _heads(3, 4, 16, seed=8)
    spec = thin_spectrum(a, b, top_k=0)
    out = N.null_stats(spec.lambdas, spec.gram_a, spec.gram_b, 16, rotations=29, draws=40, seed=5)
    ref = N.null_reference(4, 16, 40, 5)
    assert out["qk_null_ks_p"].numpy() == pytest.approx(ref.ks_p(out["qk_null_ks"].numpy()), rel=1e-12)
    assert out["lambda1_over_null_edge"].numpy() == pytest.approx(
        (spec.lambdas[:, 0] / N.null_scale(spec.gram_a, spec.gram_b)).numpy() / ref.edge, rel=1e-12)
    assert ref.edge != N.null_reference(4, 16, 40, 0).edge
    # the rotation p of seed 5, counted with seed 5's Haar rotations and full singular values
    rot = N.haar_rotations(4, 29, 5)
    sa, sb = (torch.linalg.eigvalsh(g).sqrt() for g in (spec.gram_a, spec.gram_b))
    want = []
    for h in range(3):
        top = torch.linalg.svdvals(sa[h].view(1, -1, 1) * rot * sb[h].view(1, 1, -1))[:, 0] ** 2
        want.append((1 + int((top >= spec.lambdas[h, 0]).sum())) / 30)
    assert out["lambda1_rotation_p"].tolist() == pytest.approx(want)
    assert N.rotation_null_p(spec.gram_a, spec.gram_b, spec.lambdas[:, 0], 29, 5).tolist() == pytest.approx(want)
    assert want != pytest.approx(N.rotation_null_p(spec.gram_a, spec.gram_b, spec.lambdas[:, 0], 29, 0).tolist())


def test_a_zero_head_first_does_not_stop_the_rotation_null_of_the_others() -> None:
    a, b = _heads(3, 4, 16, seed=9)
    a[0] = 0.0
    spec = thin_spectrum(a, b, top_k=0)
    p = N.rotation_null_p(spec.gram_a, spec.gram_b, spec.lambdas[:, 0], rotations=19)
    assert math.isnan(p[0]) and torch.isfinite(p[1:]).all()


def test_a_rotation_invariant_head_ties_every_rotation_and_gets_p_one() -> None:
    """G_a = 4 I: lambda_1(R) = 4 max(b) for every rotation R, a tie with the observed lambda_1, which
    counts as reaching it (p = 1). lambda_1 sits 3/4 of a float32 step above 4: the comparison is made
    in float64 (in float32 it would round up past every rotation's value)."""
    k = 5
    top = 1 + 0.75 * 2.0**-23
    gram_a = 4 * torch.eye(k, dtype=torch.float64).unsqueeze(0)
    gram_b = torch.diag(torch.tensor([0.3, 0.5, 0.7, 0.9, top], dtype=torch.float64)).unsqueeze(0)
    lam1 = torch.tensor([4 * top], dtype=torch.float64)
    assert N.rotation_null_p(gram_a, gram_b, lam1, rotations=19).tolist() == [1.0]
    assert N.rotation_null_p(gram_a, gram_b, lam1 * (1 + 1e-9), rotations=19).tolist() == [1 / 20]   # just above: none reach
