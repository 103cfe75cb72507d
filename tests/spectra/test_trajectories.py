"""Synthetic eigenvalue series whose crossings and repulsions are known by construction."""
from __future__ import annotations

import numpy as np
import torch

from attnlife.spectra.stats import thin_spectrum
from attnlife.spectra.trajectories import find_meetings, match_vectors

D, K, S = 24, 6, 21


def _basis(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(D, K, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(D, K, generator=g, dtype=torch.float64))
    return u, v


def _series(core_of_t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W(t) = U core(t) V^T with core K x K; factors A = (U L)^T, B = V^T... via thin_spectrum."""
    u, v = _basis(0)
    lams, us, vs = [], [], []
    for t in range(S):
        core = core_of_t(t)
        a = (u @ core).T.unsqueeze(0)  # [1, K, D]: A^T B = U core V^T with B = V^T
        b = v.T.unsqueeze(0)
        spec = thin_spectrum(a, b, top_k=4)
        lams.append(spec.lambdas[0, :4].numpy())
        us.append(spec.u_top[0].numpy())
        vs.append(spec.v_top[0].numpy())
    return np.stack(lams), np.stack(us), np.stack(vs)


def _tail() -> np.ndarray:
    return np.diag([0.0, 0.0, 0.3, 0.24, 0.18, 0.12])


def test_crossing_is_labelled_crossing() -> None:
    def core(t: int) -> torch.Tensor:
        c = _tail()
        c[0, 0], c[1, 1] = 1 + 0.05 * (t - 10), 1 - 0.05 * (t - 10)
        return torch.from_numpy(c)

    lam, u, v = _series(core)
    meetings = find_meetings(np.arange(S) * 100, lam, u, v, gap_threshold=0.1)
    assert [(m.step, m.rank, m.label) for m in meetings] == [(1000, 0, "crossing")]
    assert meetings[0].overlap_swap > 0.99 and meetings[0].overlap_stay < 0.01


def test_avoided_crossing_is_labelled_repulsion() -> None:
    def core(t: int) -> torch.Tensor:
        c = _tail()
        a = 0.005 * (t - 10)
        c[:2, :2] = [[1 + a, 0.03], [0.03, 1 - a]]  # symmetric: levels 1 +- sqrt(a^2 + 0.03^2)
        return torch.from_numpy(c)

    lam, u, v = _series(core)
    meetings = find_meetings(np.arange(S), lam, u, v, gap_threshold=0.1)
    assert [(m.step, m.rank, m.label) for m in meetings] == [(10, 0, "repulsion")]
    expected_gap = 0.03 * 2 * 2 / (2 * (1 + 0.03**2))  # (l1 - l2) / (l1 + l2) at a = 0
    assert abs(meetings[0].gap_rel - expected_gap) < 1e-6
    assert meetings[0].overlap_stay > 0.9 > meetings[0].overlap_swap


def test_match_vectors_follows_permutation() -> None:
    g = np.random.default_rng(0)
    u = np.linalg.qr(g.normal(size=(D, 4)))[0].T
    v = np.linalg.qr(g.normal(size=(D, 4)))[0].T
    perm = np.array([2, 0, 3, 1])
    u_b, v_b = np.empty_like(u), np.empty_like(v)
    u_b[perm], v_b[perm] = -u, v  # rank i at a is rank perm[i] at b (sign flipped)
    got, overlap = match_vectors(u, v, u_b, v_b)
    assert got.tolist() == perm.tolist() and np.allclose(overlap, 1.0)
