"""Eigenvalue trajectories across checkpoints: vector matching, crossings and repulsions (pure).

Inputs per head: steps [S], lambdas [S, k] (descending at each step) and the matching top-k
left/right singular vectors u, v [S, k, D] (unit norm, sign arbitrary).

Overlap of rank i at checkpoint a with rank j at checkpoint b:
  O_ij = sqrt(|u_i(a) . u_j(b)| * |v_i(a) . v_j(b)|)      in [0, 1]
Matching: the assignment maximising sum O_ij (Hungarian, scipy).

Near-meeting of ranks r, r+1 at step t: the relative gap g = (l_r - l_{r+1}) / (l_r + l_{r+1})
has a local minimum at t below `gap_threshold`. Comparing the checkpoints either side of t
(t-1 and t+1, the degenerate middle skipped):
  stay = sqrt(O_{r,r} O_{r+1,r+1}),  swap = sqrt(O_{r,r+1} O_{r+1,r})
  crossing  if swap > stay  (the eigenvectors trade ranks: the levels pass through each other)
  repulsion otherwise       (each rank keeps its eigenvector: the levels approach and part).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class Meeting:
    """A near-meeting of ranks (rank, rank + 1) (0-based) at `step`, labelled from overlaps."""

    step: int
    rank: int
    gap_rel: float
    overlap_stay: float
    overlap_swap: float
    label: str


def overlap_matrix(u_a: np.ndarray, v_a: np.ndarray, u_b: np.ndarray, v_b: np.ndarray) -> np.ndarray:
    """O [k, k] with O_ij = sqrt(|u_i(a).u_j(b)| |v_i(a).v_j(b)|); inputs [k, D]."""
    ou = np.abs(np.asarray(u_a, np.float64) @ np.asarray(u_b, np.float64).T)
    ov = np.abs(np.asarray(v_a, np.float64) @ np.asarray(v_b, np.float64).T)
    return np.sqrt(ou * ov)


def match_vectors(u_a: np.ndarray, v_a: np.ndarray, u_b: np.ndarray,
                  v_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match the k vectors at a to those at b: (perm [k] with a's rank i -> b's rank perm[i],
    overlap [k] of each matched pair)."""
    o = overlap_matrix(u_a, v_a, u_b, v_b)
    rows, cols = linear_sum_assignment(-o)
    perm = np.empty(o.shape[0], dtype=np.int64)
    perm[rows] = cols
    return perm, o[rows, cols][np.argsort(rows)]


def relative_gaps(lambdas: np.ndarray) -> np.ndarray:
    """g [S, k-1] = (l_r - l_{r+1}) / (l_r + l_{r+1}) for adjacent ranks; NaN where both are 0."""
    lam = np.asarray(lambdas, np.float64)
    num, den = lam[:, :-1] - lam[:, 1:], lam[:, :-1] + lam[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _local_minima(g: np.ndarray, threshold: float) -> list[int]:
    found = []
    n = len(g)
    for t in range(n):
        if not np.isfinite(g[t]) or g[t] >= threshold:
            continue
        left_ok = t == 0 or not np.isfinite(g[t - 1]) or g[t] <= g[t - 1]
        right_ok = t == n - 1 or not np.isfinite(g[t + 1]) or g[t] < g[t + 1]
        if left_ok and right_ok:
            found.append(t)
    return found


def find_meetings(steps: np.ndarray, lambdas: np.ndarray, u: np.ndarray, v: np.ndarray,
                  gap_threshold: float = 0.1) -> list[Meeting]:
    """Near-meetings of adjacent tracked eigenvalues of one head, each labelled crossing/repulsion.

    steps [S], lambdas [S, k], u, v [S, k, D] -> list of Meeting (by step, then rank).
    """
    lam = np.asarray(lambdas, np.float64)
    n_steps = lam.shape[0]
    if n_steps < 2 or lam.shape[1] < 2:
        return []
    gaps = relative_gaps(lam)
    meetings = []
    for r in range(lam.shape[1] - 1):
        for t in _local_minima(gaps[:, r], gap_threshold):
            a, b = max(t - 1, 0), min(t + 1, n_steps - 1)
            o = overlap_matrix(u[a], v[a], u[b], v[b])
            stay = float(np.sqrt(o[r, r] * o[r + 1, r + 1]))
            swap = float(np.sqrt(o[r, r + 1] * o[r + 1, r]))
            meetings.append(Meeting(int(steps[t]), r, float(gaps[t, r]), stay, swap,
                                    "crossing" if swap > stay else "repulsion"))
    return sorted(meetings, key=lambda m: (m.step, m.rank))
