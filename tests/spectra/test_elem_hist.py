"""The element histogram the spectra sweep stores: counts on sigma-unit edges, exactly the elements."""
from __future__ import annotations

import numpy as np
import torch

from attnlife.spectra.analyse import SpectraOptions, matrix_stats
from attnlife.spectra.stats import element_moments
from attnlife.spectra.stats_elements import Z_MAX, element_distribution, histogram_edges_sigma


def test_counts_match_numpy_histogram_of_the_dense_matrix():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 4, 24, generator=gen, dtype=torch.float64), torch.randn(2, 4, 24, generator=gen, dtype=torch.float64)
    m = element_moments(a, b)
    bins = 30
    dist = element_distribution(a.float(), b.float(), m["mean"], m["std"], bins=bins, block_rows=5)
    edges = histogram_edges_sigma(bins).numpy()
    assert edges.shape == (bins + 3,) and edges[1] == -Z_MAX and edges[-2] == Z_MAX
    for h in range(2):
        dense = (a[h].T @ b[h]).numpy().ravel()
        z = np.clip((dense - float(m["mean"][h])) / float(m["std"][h]), edges[0] + 1e-9, edges[-1])
        expected, _ = np.histogram(z, bins=edges)
        assert dist.counts[h].sum() == dense.size
        # float32 streaming vs float64 reference: an element may land one bin over at an edge
        assert np.abs(dist.counts[h].numpy() - expected).sum() <= 4


def test_matrix_stats_returns_the_histogram_array():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 2, 16, generator=gen), torch.randn(3, 2, 16, generator=gen)
    _, arrays = matrix_stats(a, b, SpectraOptions(bins=20))
    assert arrays["elem_hist"].shape == (3, 22) and arrays["elem_hist"].dtype == torch.int32
    assert (arrays["elem_hist"].sum(-1) == 16 * 16).all()
    _, without = matrix_stats(a, b, SpectraOptions(elements=False))
    assert "elem_hist" not in without
