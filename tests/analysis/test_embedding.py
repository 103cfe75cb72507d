"""Trajectory embedding: 16 heads get PCA (too few for UMAP), 64 get UMAP; seeded, deterministic, clusters found."""
from __future__ import annotations

import numpy as np
import pytest

from attnlife.analysis.embedding import (adapted_neighbors, choose_clusters, embed, embed_trajectories, knn_edges,
                                        standardise_blocks)


def _two_groups(n: int = 16, steps: int = 12):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, steps)
    falling = np.array([4 - 2 * t + rng.normal(0, 0.05, steps) for _ in range(n // 2)])
    flat = np.array([3 + rng.normal(0, 0.05, steps) for _ in range(n - n // 2)])
    block = np.vstack([falling, flat])                      # [N, T] one statistic
    other = 100 * block                                    # another unit: standardised away
    keys = [(h // 4, h % 4) for h in range(n)]
    return keys, [block, other]


def test_sixteen_heads_pca_deterministic_with_two_clusters() -> None:
    keys, blocks = _two_groups()
    emb1, edges1, info = embed_trajectories(keys, blocks, seed=0)
    emb2, edges2, _ = embed_trajectories(keys, blocks, seed=0)
    assert info["n_neighbors"] == 5 and info["method"] == "pca (fewer than 64 heads)"
    # two groups of identical-shape trajectories: the first component carries nearly all variance
    assert info["explained"][0] > 0.9 and sum(info["explained"]) <= 1 + 1e-9
    assert np.array_equal(emb1[["x", "y"]].to_numpy(), emb2[["x", "y"]].to_numpy())
    assert edges1.equals(edges2)
    labels = emb1.cluster.to_numpy()
    assert len(set(labels[:8])) == 1 and len(set(labels[8:])) == 1 and labels[0] != labels[8]
    # PC1 separates the groups: every falling head on one side of every flat head
    x = emb1.x.to_numpy()
    assert max(x[:8]) < min(x[8:]) or min(x[:8]) > max(x[8:])
    assert (edges1.src < edges1.dst).all() and len(edges1) >= 16 * 5 // 2


@pytest.mark.slow  # umap JIT-compiles for ~25-60 s on first use in a process
def test_sixty_four_heads_umap_deterministic_with_two_clusters() -> None:
    keys, blocks = _two_groups(64)
    emb1, edges1, info = embed_trajectories(keys, blocks, seed=0)
    emb2, _, _ = embed_trajectories(keys, blocks, seed=0)
    assert info["n_neighbors"] == 15 and info["method"] == "umap n_neighbors=15" and info["explained"] == []
    assert np.array_equal(emb1[["x", "y"]].to_numpy(), emb2[["x", "y"]].to_numpy())
    labels = emb1.cluster.to_numpy()
    assert len(set(labels[:32])) == 1 and len(set(labels[32:])) == 1 and labels[0] != labels[32]


@pytest.mark.slow  # umap's JIT, once per process (the mutation chunk `embedding` selects it)
def test_umap_coordinates_are_umaps_own_on_the_standardised_rows() -> None:
    """64 heads: the documented UMAP(n_neighbors, min_dist=0.1, random_state=seed, n_jobs=1) of the
    standardised rows, with the caller's seed and neighbours; single-threaded without umap's warning
    that it overrode n_jobs. 63 heads (one fewer than MIN_UMAP_HEADS) still get PCA."""
    import warnings

    import umap

    keys, blocks = _two_groups(64)
    x = standardise_blocks(blocks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb, _, info = embed_trajectories(keys, blocks, seed=3, n_neighbors=10)
    assert not [w for w in caught if "n_jobs" in str(w.message)]
    assert (info["method"], info["n_neighbors"]) == ("umap n_neighbors=10", 10)
    want = umap.UMAP(n_neighbors=10, min_dist=0.1, random_state=3, n_jobs=1).fit_transform(x)
    np.testing.assert_array_equal(emb[["x", "y"]].to_numpy(), want.astype(float))
    assert not np.array_equal(want, umap.UMAP(n_neighbors=10, min_dist=0.5, random_state=3,
                                              n_jobs=1).fit_transform(x))   # min_dist shows in the layout
    keys63, blocks63 = keys[:63], [b[:63] for b in blocks]
    assert embed_trajectories(keys63, blocks63)[2]["method"] == "pca (fewer than 64 heads)"


def test_no_structure_gives_one_cluster() -> None:
    x = np.random.default_rng(1).normal(size=(16, 10))
    labels, score = choose_clusters(x)
    assert (labels == 0).all() and score < 0.25


def test_neighbors_and_edges_small() -> None:
    assert adapted_neighbors(16) == 5 and adapted_neighbors(100) == 15 and adapted_neighbors(3) == 2
    edges = knn_edges(np.array([[0.0], [1.0], [3.0]]), 1)
    assert edges.to_dict("records") == [{"src": 0, "dst": 1, "distance": 1.0}, {"src": 1, "dst": 2, "distance": 2.0}]


def _blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(c, 0.1, size=(5, 3)) for c in (0.0, 3.0, 6.0)])


def _partition(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == v).tolist()) for v in set(labels.tolist())}


def test_planted_blobs_give_their_clusters_and_max_k_caps_k() -> None:
    from sklearn.metrics import silhouette_score

    x = _blobs()
    labels, score = choose_clusters(x)
    assert labels.dtype.kind == "i"
    assert _partition(labels) == {frozenset(range(0, 5)), frozenset(range(5, 10)), frozenset(range(10, 15))}
    assert score == pytest.approx(silhouette_score(x, labels), rel=1e-12) and score > 0.9
    two, score2 = choose_clusters(x, max_k=2)
    assert len(set(two.tolist())) == 2 and score2 < score
    assert _partition(choose_clusters(x, seed=3)[0]) == _partition(labels)


def test_identical_heads_are_one_cluster_without_a_score() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # k-means warns: fewer distinct points than k
        labels, score = choose_clusters(np.ones((5, 2)))
    assert labels.tolist() == [0] * 5 and labels.dtype.kind == "i" and np.isnan(score)


def test_adapted_neighbors_limits() -> None:
    assert [adapted_neighbors(n) for n in (1, 2, 3, 6, 8, 9, 45, 46, 1000)] == [1, 1, 2, 2, 2, 3, 15, 15, 15]
    assert adapted_neighbors(30, n_neighbors=4) == 4


def test_standardise_blocks_per_block_and_constant_blocks() -> None:
    a = np.array([[0.0, 2.0], [4.0, 6.0]])                  # mean 3, std sqrt(5) over all four entries
    out = standardise_blocks([a, np.full((2, 3), 7.0), [[1.0], [3.0]]])
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out[:, :2], (a - 3.0) / np.sqrt(5.0), rtol=1e-15)
    assert out[:, 2:5].tolist() == [[0.0] * 3] * 2
    assert out[:, 5].tolist() == [-1.0, 1.0]


def test_knn_edges_clip_k_and_keep_each_pair_once() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    edges = knn_edges(x, 10)                                 # k clipped to n - 1 = 2: every pair
    assert edges.to_dict("records") == [{"src": 0, "dst": 1, "distance": 5.0}, {"src": 0, "dst": 2, "distance": 1.0},
                                        {"src": 1, "dst": 2, "distance": pytest.approx(np.sqrt(18.0))}]
    assert knn_edges(x, 0).to_dict("records") == [{"src": 0, "dst": 2, "distance": 1.0},
                                                  {"src": 1, "dst": 2, "distance": pytest.approx(np.sqrt(18.0))}]


def test_few_heads_get_pca_coordinates() -> None:
    x = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [3.0, 2.0, 1.0]])
    coords, method, k, explained = embed(x)
    assert (method, k) == ("pca (fewer than 64 heads)", 2) and coords.shape == (3, 2)
    dist = lambda z: np.linalg.norm(z[:, None] - z[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(coords), dist(x), atol=1e-12)   # rank 2: PCA keeps every distance
    assert sum(explained) == pytest.approx(1.0)                      # rank 2: two components hold all variance
    line, _, _, line_explained = embed(np.array([[0.0], [1.0], [3.0]]))  # one feature: y stays 0
    assert line[:, 1].tolist() == [0.0] * 3 and np.abs(line[:, 0]).tolist() == pytest.approx([4 / 3, 1 / 3, 5 / 3])
    assert line_explained == [pytest.approx(1.0), 0.0]
    one, method1, k1, _ = embed(np.array([[1.0, 2.0]]))
    assert one.tolist() == [[0.0, 0.0]] and (method1, k1) == ("pca (fewer than 64 heads)", 1)
    assert embed(np.ones((3, 2)), n_neighbors=1)[2] == 1


def PCA_SHARES(x: np.ndarray) -> list[float]:  # noqa: N802 - a reference, by SVD of the centred rows
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    return list(sv[:2] / sv.sum())


def test_embed_trajectories_rows_edges_and_info_for_three_heads() -> None:
    from sklearn.metrics import silhouette_score

    keys = [(0, 0), (0, 1), (1, 0)]
    blocks = [np.array([[1.0, 2, 3], [1, 2, 4], [5, 5, 5]]), np.array([[1.0], [1], [2]])]
    emb, edges, info = embed_trajectories(keys, blocks)
    x = standardise_blocks(blocks)
    assert list(emb.columns) == ["layer", "head_index", "x", "y", "cluster"]
    assert list(zip(emb.layer, emb.head_index)) == keys
    assert emb.cluster.tolist()[0] == emb.cluster.tolist()[1] != emb.cluster.tolist()[2]
    coords = emb[["x", "y"]].to_numpy()
    assert np.linalg.norm(coords[0] - coords[2]) == pytest.approx(np.linalg.norm(x[0] - x[2]))
    assert edges.distance.tolist() == pytest.approx([np.linalg.norm(x[a] - x[b]) for a, b in ((0, 1), (0, 2), (1, 2))])
    assert info == {"method": "pca (fewer than 64 heads)", "n_neighbors": 2, "n_heads": 3, "n_clusters": 2,
                    "silhouette": pytest.approx(silhouette_score(x, emb.cluster.to_numpy())), "features": 4,
                    "explained": [pytest.approx(v) for v in PCA_SHARES(x)]}
    two, _, info2 = embed_trajectories(keys[:2], [b[:2] for b in blocks])
    assert two.cluster.tolist() == [0, 0] and np.isnan(info2["silhouette"]) and info2["n_clusters"] == 1


def test_cluster_labels_are_ints_k_is_capped_at_8_and_small_inputs() -> None:
    rng = np.random.default_rng(4)
    nine = np.vstack([rng.normal(10.0 * c, 0.05, size=(3, 2)) for c in range(9)])
    labels, _ = choose_clusters(nine)
    assert len(set(labels.tolist())) == 8 and labels.dtype == np.dtype(int)   # max_k = 8 by default
    assert len(set(choose_clusters(nine, max_k=9)[0].tolist())) == 9
    flat, score = choose_clusters(np.random.default_rng(1).normal(size=(16, 10)))
    assert flat.dtype == np.dtype(int) and score < 0.25
    two, _, _, _ = embed(np.array([[0.0, 1.0], [3.0, 5.0]]))           # two heads: PCA keeps their distance
    assert np.linalg.norm(two[0] - two[1]) == pytest.approx(5.0)
    assert embed(np.zeros((3, 0)))[0].tolist() == [[0.0, 0.0]] * 3     # no features: the origin
    x16 = np.array([[0.0, 1.5], [2.25, 0.5]], dtype=np.float16)
    np.testing.assert_array_equal(standardise_blocks([x16]), standardise_blocks([x16.astype(float)]))
    emb, _, _ = embed_trajectories([(0, 0), (0, 1)], [np.array([[1.0, 2.0], [2.0, 1.0]])])
    assert emb.cluster.dtype == np.dtype(int)
