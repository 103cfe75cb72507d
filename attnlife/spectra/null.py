"""The exact random-matrix null for W_QK = W_Q^T W_K of one head (pure math, float64).

Null hypothesis: the head's factors W_Q, W_K [K, D] have iid zero-mean Gaussian entries with
variances s_q^2, s_k^2 and are independent (what `GPT._init_weights` draws). The K nonzero
lambda_i = sigma_i(W_QK)^2 are the eigenvalues of G_a G_b with G_a = W_Q W_Q^T, G_b = W_K W_K^T
(K x K, see `stats.thin_spectrum`). Each G / (D s^2) is a Wishart matrix whose spectrum tends to
the Marchenko-Pastur law MP_c of ratio c = K / D (mean 1, variance c); the two are independent
and rotation invariant, hence asymptotically free, so

    lambda / scale  ~  mu_c = MP_c [x] MP_c   (free multiplicative convolution),
    scale = D^2 s_q^2 s_k^2 = tr(G_a) tr(G_b) / K^2,   s^2 = ||W||_F^2 / (K D)   (mean squares),

with no fitted parameter: the scale comes from the factors' own variances and c from the shape.

The law (S-transform route). MP_c has S(z) = 1 / (1 + c z); S multiplies under free
multiplicative convolution, so S_mu(z) = (1 + c z)^-2. With psi(u) = int u x / (1 - u x) dmu and
its inverse chi = psi^-1, S(z) = (1 + z) chi(z) / z, hence chi(z) = z / ((1 + z)(1 + c z)^2).
Put u = 1/w and z = psi(1/w) = w G(w) - 1, G(w) = int dmu(x) / (w - x) the Cauchy transform
(the Stieltjes transform m = -G). Then u = chi(z) reads (1 + z)(1 + c z)^2 = w z, i.e.
w G (1 - c + c w G)^2 = w (w G - 1), a cubic for G:

    c^2 w^2 G^3 + 2 c (1 - c) w G^2 + ((1 - c)^2 - w) G + 1 = 0.

(c -> 0 gives G = 1 / (w - 1), the point mass at 1.) For x inside the support the cubic has a
complex-conjugate pair of roots and density(x) = |Im G(x + i0)| / pi. The edges are the critical
values of w(z) = (1 + z)(1 + c z)^2 / z on the real line: d ln w / dz = 0 gives
2 c z^2 + c z - 1 = 0, z_+- = (-c +- sqrt(c^2 + 8 c)) / (4 c), and [x_-, x_+] = [w(z_-), w(z_+)]
(z_+ > 0 is the minimum of w over z > 0: the upper edge; z_- < -1 gives the lower edge; x_- = 0
at c = 1). mu_c has mean 1 and no atom for c <= 1.

Per head (`null_stats`), in float64:
  qk_null_ks           sup_x |F_K(x) - F_mu(x)|, F_K the empirical CDF of lambda_i / scale
  qk_null_ks_p         Monte-Carlo p of that distance among Gaussian heads of the same shape
  lambda1_over_null_edge  (lambda_1 / scale) / e_K, e_K the finite-size edge: the 99th percentile
                       of lambda_1 / scale over the Monte-Carlo heads of shape (K, D)
  qk_alignment_index   K tr(G_a G_b) / (tr G_a tr G_b) = mean(lambda) / scale: 1 in expectation
                       under the null (E G = D s^2 I), larger when Q and K share directions
  lambda1_rotation_p   rotation null: G_a -> O G_a O^T with O Haar on O(K) keeps both factor
                       spectra and randomises their relative orientation; with a, b the
                       eigenvalues of G_a, G_b, lambda_1(O) = ||diag(sqrt a) R diag(sqrt b)||_2^2,
                       R Haar; p = (1 + #{r: lambda_1(R_r) >= lambda_1}) / (1 + n_rot), never 0.
                       Exact under the null (Gaussian factors make the relative eigenbasis Haar).
The Monte-Carlo reference of a shape (`null_reference`: `MC_DRAWS` null heads drawn exactly
through the Bartlett decomposition of their Wishart Grams, fixed seed) is computed once per
process and cached.
Imports only numpy and torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

MC_DRAWS = 1000
EDGE_QUANTILE = 0.99
ROTATIONS = 199
CDF_GRID = 4096


def product_mp_edges(c: float) -> tuple[float, float]:
    """Support [x_-, x_+] of MP_c [x] MP_c (module docstring), c in (0, 1]."""
    if not 0.0 < c <= 1.0:
        raise ValueError(f"ratio c = K / D must be in (0, 1], got {c}")
    root = math.sqrt(c * c + 8.0 * c)

    def w(z: float) -> float:
        return (1.0 + z) * (1.0 + c * z) ** 2 / z

    z_hi, z_lo = (-c + root) / (4.0 * c), (-c - root) / (4.0 * c)
    return max(w(z_lo), 0.0), w(z_hi)


def _cubic_roots(x: np.ndarray, c: float) -> np.ndarray:
    """The three roots G [n, 3] (complex) of the cubic at w = x (module docstring), x > 0."""
    x = np.asarray(x, dtype=np.float64)
    lead = c * c * x * x
    coef = np.stack([2.0 * c * (1.0 - c) * x, (1.0 - c) ** 2 - x, np.ones_like(x)], -1) / lead[:, None]
    comp = np.zeros((len(x), 3, 3))
    comp[:, 0, :] = -coef
    comp[:, 1, 0] = comp[:, 2, 1] = 1.0
    return np.linalg.eigvals(comp)


def product_mp_density(x: np.ndarray, c: float) -> np.ndarray:
    """Density of MP_c [x] MP_c at x (any shape; 0 outside the support)."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = product_mp_edges(c)
    flat = x.reshape(-1)
    out = np.zeros_like(flat)
    inside = (flat > lo) & (flat < hi)
    if inside.any():
        out[inside] = np.abs(_cubic_roots(flat[inside], c).imag).max(-1) / math.pi
    return out.reshape(x.shape)


@lru_cache(maxsize=256)
def _cdf_table(c: float, grid: int = CDF_GRID) -> tuple[np.ndarray, np.ndarray, float]:
    """(x [grid], CDF [grid], raw mass) of mu_c: trapezoid on x = lo + (hi - lo)(1 - cos t) / 2,
    which removes the square-root edges; CDF normalised by the raw mass (which is ~1)."""
    lo, hi = product_mp_edges(c)
    t = np.linspace(0.0, math.pi, grid)
    xs = lo + (hi - lo) * (1.0 - np.cos(t)) / 2.0
    dens_dt = product_mp_density(xs, c) * (hi - lo) * np.sin(t) / 2.0
    cdf = np.concatenate([[0.0], np.cumsum((dens_dt[1:] + dens_dt[:-1]) / 2.0 * np.diff(t))])
    return xs, cdf / cdf[-1], float(cdf[-1])


def product_mp_cdf(x: np.ndarray, c: float) -> np.ndarray:
    """CDF of MP_c [x] MP_c at x (any shape)."""
    xs, cdf, _ = _cdf_table(float(c))
    return np.interp(np.asarray(x, dtype=np.float64), xs, cdf, left=0.0, right=1.0)


def ks_distance(x: np.ndarray, c: float) -> np.ndarray:
    """sup |F_emp - F_mu| of each row of x [H, K] (normalised eigenvalues) -> [H]."""
    xs = np.sort(np.asarray(x, dtype=np.float64), axis=-1)
    k = xs.shape[-1]
    f = product_mp_cdf(xs, c)
    i = np.arange(1, k + 1)
    return np.maximum((i / k - f).max(-1), (f - (i - 1) / k).max(-1))


def null_scale(gram_a: torch.Tensor, gram_b: torch.Tensor) -> torch.Tensor:
    """tr(G_a) tr(G_b) / K^2 per head: [H, K, K] float64 -> [H] (the null mean of lambda)."""
    k = gram_a.shape[-1]
    return gram_a.diagonal(dim1=-2, dim2=-1).sum(-1) * gram_b.diagonal(dim1=-2, dim2=-1).sum(-1) / k**2


def alignment_index(gram_a: torch.Tensor, gram_b: torch.Tensor) -> torch.Tensor:
    """K tr(G_a G_b) / (tr G_a tr G_b) per head: [H, K, K] float64 -> [H] (NaN for a zero factor)."""
    k = gram_a.shape[-1]
    scale = null_scale(gram_a, gram_b)
    out = (gram_a * gram_b).sum((-2, -1)) / k / scale
    return out.masked_fill(scale <= 0, math.nan)


@dataclass(frozen=True)
class NullReference:
    """Monte-Carlo reference of Gaussian heads of shape (k, d): per draw lambda_1 / scale and the KS
    distance to mu_c; `edge` = the EDGE_QUANTILE quantile of lambda_1 / scale; `asymptotic_edge` = x_+."""

    k: int
    d: int
    lambda1: np.ndarray
    ks: np.ndarray
    edge: float
    asymptotic_edge: float

    def ks_p(self, ks: np.ndarray) -> np.ndarray:
        """(1 + #{draws with KS >= ks}) / (1 + draws), elementwise."""
        ks = np.asarray(ks, dtype=np.float64)
        count = (self.ks[None, :] >= ks.reshape(-1, 1)).sum(-1)
        return ((1.0 + count) / (1.0 + len(self.ks))).reshape(ks.shape)


def wishart_grams(n: int, k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of G = X X^T, X [k, d] iid N(0, 1), as Bartlett factors L [n, k, k] with G = L L^T:
    L_ii = sqrt(chi^2_{d - i}) (i = 0..k-1), L_ij ~ N(0, 1) below the diagonal, 0 above
    (Bartlett decomposition of Wishart_k(I, d)); cost O(k^2) per draw whatever d is."""
    low = np.tril(rng.standard_normal((n, k, k)), -1)
    idx = np.arange(k)
    low[:, idx, idx] = np.sqrt(rng.chisquare(d - idx, size=(n, k)))
    return low


@lru_cache(maxsize=64)
def null_reference(k: int, d: int, draws: int = MC_DRAWS, seed: int = 0) -> NullReference:
    """Monte-Carlo reference of shape (k, d) from `draws` null heads (the law is scale free, so
    unit variances): G_a = L_a L_a^T and G_b from `wishart_grams`, lambda = eig(L_a^T G_b L_a)
    (as in `stats.thin_spectrum`); cached per process."""
    c = k / d
    rng = np.random.default_rng(seed)
    lam1, ks = [], []
    batch = max(1, min(draws, (1 << 22) // (k * k)))
    for start in range(0, draws, batch):
        n = min(batch, draws - start)
        low_a, low_b = wishart_grams(n, k, d, rng), wishart_grams(n, k, d, rng)
        g_b = low_b @ low_b.transpose(0, 2, 1)
        lam = np.linalg.eigvalsh(low_a.transpose(0, 2, 1) @ g_b @ low_a)[:, ::-1]
        scale = (low_a**2).sum((-2, -1)) * (low_b**2).sum((-2, -1)) / k**2   # tr G = ||L||_F^2
        x = lam / scale[:, None]
        lam1.append(x[:, 0])
        ks.append(ks_distance(x, c))
    lam1_all, ks_all = np.concatenate(lam1), np.concatenate(ks)
    return NullReference(k=k, d=d, lambda1=lam1_all, ks=ks_all,
                         edge=float(np.quantile(lam1_all, EDGE_QUANTILE)),
                         asymptotic_edge=product_mp_edges(c)[1])


@lru_cache(maxsize=16)
def haar_rotations(k: int, n: int, seed: int = 0) -> torch.Tensor:
    """n Haar-distributed orthogonal K x K matrices [n, K, K] float64 (QR of Gaussians with the
    signs of diag(R) folded into Q, which makes Q exactly Haar)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, k, generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    return q * torch.sign(r.diagonal(dim1=-2, dim2=-1)).unsqueeze(-2)


def rotation_null_p(gram_a: torch.Tensor, gram_b: torch.Tensor, lambda1: torch.Tensor,
                    rotations: int = ROTATIONS, seed: int = 0) -> torch.Tensor:
    """Rotation-null p-value of lambda_1 per head (module docstring): Grams [H, K, K] float64,
    lambda1 [H] -> [H] in [1 / (1 + rotations), 1]; NaN for a zero head."""
    n_heads, k, _ = gram_a.shape
    rot = haar_rotations(k, rotations, seed)                                  # [R, K, K]
    a = torch.linalg.eigvalsh(gram_a).clamp_min(0.0).sqrt()                   # [H, K]
    b = torch.linalg.eigvalsh(gram_b).clamp_min(0.0).sqrt()
    out = torch.full((n_heads,), math.nan, dtype=torch.float64)
    for h in range(n_heads):
        if not (torch.isfinite(lambda1[h]) and lambda1[h] > 0):
            continue
        m = a[h].view(1, k, 1) * rot * b[h].view(1, 1, k)                     # [R, K, K]
        # lambda_1(R) < lambda_1 exactly when lambda_1 I - M M^T is positive definite, i.e. when
        # its Cholesky factorisation succeeds (a third of an eigendecomposition's cost); a tie
        # fails it and counts as reaching the observed value
        gap = lambda1[h] * (1 - 1e-12) * torch.eye(k, dtype=torch.float64) - m @ m.transpose(1, 2)
        count = int((torch.linalg.cholesky_ex(gap).info != 0).sum())
        out[h] = (1.0 + count) / (1.0 + rotations)
    return out


def null_stats(lambdas: torch.Tensor, gram_a: torch.Tensor, gram_b: torch.Tensor, d: int,
               rotations: int = ROTATIONS, draws: int = MC_DRAWS, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every null statistic of the module docstring for heads with spectrum lambdas [H, K]
    (descending) and Grams [H, K, K] float64 of factors [H, K, D] -> dict of [H] float64.
    `rotations` = 0 skips the rotation null (NaN)."""
    n_heads, k = lambdas.shape
    lam = lambdas.to(torch.float64)
    scale = null_scale(gram_a, gram_b)
    x = (lam / scale.unsqueeze(-1)).numpy()
    nan = torch.full((n_heads,), math.nan, dtype=torch.float64)
    if not 0 < k <= d:
        return {name: nan.clone() for name in ("qk_null_ks", "qk_null_ks_p", "lambda1_over_null_edge",
                                               "qk_alignment_index", "lambda1_rotation_p")}
    ref = null_reference(k, d, draws, seed)
    ok = np.isfinite(x).all(-1) & (scale.numpy() > 0)
    ks = np.full(n_heads, math.nan)
    if ok.any():
        ks[ok] = ks_distance(x[ok], k / d)
    ks_p = np.where(ok, ref.ks_p(np.nan_to_num(ks)), math.nan)
    edge = np.where(ok, x[:, 0] / ref.edge, math.nan)
    rot = rotation_null_p(gram_a, gram_b, lam[:, 0], rotations, seed) if rotations > 0 else nan.clone()
    return {"qk_null_ks": torch.from_numpy(ks), "qk_null_ks_p": torch.from_numpy(ks_p),
            "lambda1_over_null_edge": torch.from_numpy(edge),
            "qk_alignment_index": alignment_index(gram_a, gram_b), "lambda1_rotation_p": rot}
