"""Trajectory embedding: 16 heads work (adapted n_neighbors), seeded and deterministic, clusters found."""
from __future__ import annotations

import numpy as np
import pytest

from attnlife.analysis.embedding import adapted_neighbors, choose_clusters, embed_trajectories, knn_edges


def _two_groups(n: int = 16, steps: int = 12):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, steps)
    falling = np.array([4 - 2 * t + rng.normal(0, 0.05, steps) for _ in range(n // 2)])
    flat = np.array([3 + rng.normal(0, 0.05, steps) for _ in range(n - n // 2)])
    block = np.vstack([falling, flat])                      # [N, T] one statistic
    other = 100 * block                                    # another unit: standardised away
    keys = [(h // 4, h % 4) for h in range(n)]
    return keys, [block, other]


@pytest.mark.slow  # umap JIT-compiles for ~25-60 s on first use in a process
def test_sixteen_heads_deterministic_with_two_clusters() -> None:
    keys, blocks = _two_groups()
    emb1, edges1, info = embed_trajectories(keys, blocks, seed=0)
    emb2, edges2, _ = embed_trajectories(keys, blocks, seed=0)
    assert info["n_neighbors"] == 5 and info["method"] == "umap n_neighbors=5"
    assert np.array_equal(emb1[["x", "y"]].to_numpy(), emb2[["x", "y"]].to_numpy())
    assert edges1.equals(edges2)
    labels = emb1.cluster.to_numpy()
    assert len(set(labels[:8])) == 1 and len(set(labels[8:])) == 1 and labels[0] != labels[8]
    assert (edges1.src < edges1.dst).all() and len(edges1) >= 16 * 5 // 2


def test_no_structure_gives_one_cluster() -> None:
    x = np.random.default_rng(1).normal(size=(16, 10))
    labels, score = choose_clusters(x)
    assert (labels == 0).all() and score < 0.25


def test_neighbors_and_edges_small() -> None:
    assert adapted_neighbors(16) == 5 and adapted_neighbors(100) == 15 and adapted_neighbors(3) == 2
    edges = knn_edges(np.array([[0.0], [1.0], [3.0]]), 1)
    assert edges.to_dict("records") == [{"src": 0, "dst": 1, "distance": 1.0}, {"src": 1, "dst": 2, "distance": 2.0}]
