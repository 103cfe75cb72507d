"""Trajectory embedding of heads: UMAP coordinates, a kNN graph and clusters (pure, seeded).

Input: per-head trajectories, a matrix X [N heads, S statistics x T steps] (one row per head, the
values of each statistic at the common steps, concatenated). Each statistic's block is
standardised over all heads and steps together ((v - mean) / std; constant blocks become 0), so
every statistic weighs the same whatever its unit.

- n_neighbors = min(15, max(2, N // 3)): umap's default 15 for large models, adapted for small
  ones (16 heads -> 5; with 15 neighbours every head would neighbour every other and the graph
  would say nothing).
- kNN graph: k = n_neighbors nearest heads in Euclidean distance on the standardised rows
  (sklearn NearestNeighbors); an undirected edge per pair, with its distance.
- 2-D coordinates: from MIN_UMAP_HEADS = 64 heads on, umap-learn UMAP(n_neighbors, min_dist=0.1,
  random_state=seed, n_jobs=1) on the same rows (seeded, single-threaded: deterministic); there
  each head's 15 neighbours are under a quarter of all heads, so the graph UMAP lays out is local.
  Fewer heads (the 16 of a 4x4 model) get the first two principal components instead: linear
  axes whose share of the variance is reported (`explained`), nothing a small sample cannot
  support. `method` says which was used.
- Clusters: k-means (n_init=10, random_state=seed) on the standardised rows for k = 2 ..
  min(8, N - 1), keeping the k with the largest silhouette score; when no k reaches a silhouette
  of 0.25 every head is one cluster (0): no cluster structure is claimed where there is none.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MIN_SILHOUETTE = 0.25
MIN_UMAP_HEADS = 64


def standardise_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """Concatenate per-statistic blocks [N, T_s] after standardising each over all its entries."""
    out = []
    for b in blocks:
        b = np.asarray(b, dtype=np.float64)
        sd = b.std()
        out.append((b - b.mean()) / sd if sd > 0 else np.zeros_like(b))
    return np.concatenate(out, axis=1)


def knn_edges(x: np.ndarray, k: int) -> pd.DataFrame:
    """Undirected kNN edges (src < dst row indices, Euclidean distance) of rows x [N, F]."""
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(k, len(x) - 1))
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    edges = {}
    for i in range(len(x)):
        for d, j in zip(dist[i, 1:], idx[i, 1:]):
            a, b = sorted((i, int(j)))
            if a != b:
                edges[(a, b)] = float(d)
    return pd.DataFrame([{"src": a, "dst": b, "distance": d} for (a, b), d in sorted(edges.items())],
                        columns=["src", "dst", "distance"])


def choose_clusters(x: np.ndarray, seed: int = 0, max_k: int = 8) -> tuple[np.ndarray, float]:
    """(labels [N], best silhouette) by k-means with k chosen by silhouette (module docstring)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(x)
    best, best_score = np.zeros(n, dtype=int), float("nan")
    for k in range(2, min(max_k, n - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
        if len(set(labels)) < 2:
            continue
        score = float(silhouette_score(x, labels))
        if not np.isfinite(best_score) or score > best_score:
            best_score, best = score, labels
    if not np.isfinite(best_score) or best_score < MIN_SILHOUETTE:
        return np.zeros(n, dtype=int), best_score
    return np.asarray(best, dtype=int), best_score


def adapted_neighbors(n: int, n_neighbors: int = 15) -> int:
    """min(n_neighbors, max(2, n // 3)), and never more than n - 1."""
    return max(1, min(n_neighbors, max(2, n // 3), n - 1))


def embed(x: np.ndarray, seed: int = 0, n_neighbors: int = 15) -> tuple[np.ndarray, str, int, list[float]]:
    """2-D coordinates [N, 2] of rows x, the method used, the n_neighbors of the kNN graph, and
    (PCA) the share of variance of each axis ([] for UMAP)."""
    n = len(x)
    k = adapted_neighbors(n, n_neighbors)
    if n < MIN_UMAP_HEADS:
        from sklearn.decomposition import PCA

        comps = min(2, n, x.shape[1])
        coords = np.zeros((n, 2))
        explained = [0.0, 0.0]
        if comps > 0 and n > 1:
            pca = PCA(n_components=comps, random_state=seed)
            coords[:, :comps] = pca.fit_transform(x)
            explained[:comps] = [float(v) for v in pca.explained_variance_ratio_]
        return coords, f"pca (fewer than {MIN_UMAP_HEADS} heads)", k, explained
    import umap

    # spectral init (umap's default): from 64 heads on, n > k + 1 always holds (k <= n // 3)
    reducer = umap.UMAP(n_neighbors=k, min_dist=0.1, random_state=seed, n_jobs=1)
    return reducer.fit_transform(x), f"umap n_neighbors={k}", k, []


def embed_trajectories(keys: list[tuple[int, int]], blocks: list[np.ndarray], seed: int = 0,
                       n_neighbors: int = 15) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(embedding rows layer, head_index, x, y, cluster; edges src, dst, distance; info) for the
    heads `keys` [(layer, head)] with per-statistic trajectory blocks [N, T_s]."""
    x = standardise_blocks(blocks)
    coords, method, k, explained = embed(x, seed, n_neighbors)
    labels, silhouette = choose_clusters(x, seed) if len(x) >= 3 else (np.zeros(len(x), dtype=int), float("nan"))
    emb = pd.DataFrame({"layer": [a for a, _ in keys], "head_index": [b for _, b in keys],
                        "x": coords[:, 0].astype(float), "y": coords[:, 1].astype(float), "cluster": labels})
    info = {"method": method, "n_neighbors": k, "n_heads": len(keys), "n_clusters": int(labels.max()) + 1,
            "silhouette": silhouette, "features": int(x.shape[1]), "explained": explained}
    return emb, knn_edges(x, k), info
