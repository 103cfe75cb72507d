"""All statistics of one checkpoint: per head and matrix (qk, ov), plus per-layer aggregates.

Rows are tidy (model, step, layer, head_index, matrix, stat, value); head_index = -1 rows hold the mean
over the layer's heads of the same stat (NaN-skipping). Arrays per matrix m:
`{m}.lambda` [L, H, K] float64 (all squared singular values, descending),
`{m}.u_top`, `{m}.v_top` [L, H, k, D] float32 (top-k left/right singular vectors) and, unless
elements are off, `{m}.elem_hist` [L, H, bins + 2] int32 (element counts per bin) with
`elem_hist_edges_sigma` [bins + 3] float64 (bin edges in units of sigma, overflow bins outermost;
see `stats_elements.histogram_edges_sigma`).

Stats (per head): lambda_1..lambda_k, frobenius_sq, stable_rank, spectral_entropy_bits,
participation_ratio, participation_ratio_sv, numerical_rank, condition_number, elem_mean,
elem_std and, unless elements are off, elem_kl_gauss_nats (bias-corrected), elem_kl_bias_nats,
elem_excess_kurtosis, and with row sampling their `_se` standard errors. Matrix qk adds the exact
random-matrix null (`spectra.null`): qk_null_ks, qk_null_ks_p, lambda1_over_null_edge,
qk_alignment_index and (unless `null_rotations` is 0) lambda1_rotation_p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch

from attnlife.series.refs import CheckpointRef, SeriesSourceError, hf_config, open_state
from attnlife.spectra.layouts import (ArchSpec, LayerHeads, extract_layer, spec_from_gpt_config,
                                      spec_from_hf_config)
from attnlife.spectra.nonfinite import with_nonfinite_heads
from attnlife.spectra.null import null_stats
from attnlife.spectra.stats import element_moments, spectral_stats, thin_spectrum
from attnlife.spectra.stats_elements import element_distribution, histogram_edges_sigma

MATRICES = ("qk", "ov")


def open_weights(ref: CheckpointRef) -> tuple[ArchSpec, Callable[[str], torch.Tensor], set[str]]:
    """(architecture, name -> tensor getter, available names) of one checkpoint: only the
    attention weights are read from disk (safetensors are opened with `safe_open`)."""
    if ref.kind == "hf":
        spec = spec_from_hf_config(hf_config(ref))
    elif ref.kind in ("run", "nanogpt"):
        spec = spec_from_gpt_config(ref.config, "attnlife" if ref.kind == "run" else "nanogpt")
    else:
        raise SeriesSourceError(f"unknown checkpoint kind '{ref.kind}'")
    get, keys = open_state(ref)
    return spec, get, keys



@dataclass(frozen=True)
class SpectraOptions:
    """What to compute: matrices among ('qk', 'ov'); top_k tracked vectors; element histogram
    (`elements`), its `bins`, and `sample_rows` (0 = every row) with sampling `seed`;
    `null_rotations` Haar rotations for the W_QK rotation null of lambda_1 (0 = skip it)."""

    matrices: tuple[str, ...] = ("qk",)
    top_k: int = 4
    elements: bool = True
    bins: int = 200
    sample_rows: int = 0
    seed: int = 0
    null_rotations: int = 199


def head_factors(heads: LayerHeads, matrix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) [H, K, D] float32 with W = A^T B: qk -> (W_Q, W_K), ov -> (W_V, W_O^T)."""
    if matrix == "qk":
        return heads.q.float().contiguous(), heads.k.float().contiguous()
    if matrix == "ov":
        return heads.v.float().contiguous(), heads.o.float().contiguous()
    raise ValueError(f"matrix must be one of {MATRICES}, not {matrix!r}")


def matrix_stats(a: torch.Tensor, b: torch.Tensor, options: SpectraOptions,
                 null: bool = False) -> tuple[dict, dict]:
    """Stats {name: [H] float64} and arrays {lambda [H, K], u_top/v_top [H, k, D]} of W = A^T B;
    `null` adds the W_QK random-matrix null statistics (`spectra.null.null_stats`)."""
    a64, b64 = a.to(torch.float64), b.to(torch.float64)  # cast once; spectrum and moments share it
    spec = thin_spectrum(a64, b64, options.top_k)
    stats: dict[str, torch.Tensor] = {}
    for i in range(min(options.top_k, spec.lambdas.shape[1])):
        stats[f"lambda_{i + 1}"] = spec.lambdas[:, i]
    stats.update(spectral_stats(spec.lambdas))
    if null:
        stats.update(null_stats(spec.lambdas, spec.gram_a, spec.gram_b, a.shape[-1],
                                rotations=options.null_rotations, seed=options.seed))
    moments = element_moments(a64, b64, spec.gram_a, spec.gram_b)
    stats["frobenius_sq"] = moments["frobenius_sq"]
    stats["elem_mean"], stats["elem_std"] = moments["mean"], moments["std"]
    if options.elements:
        dist = element_distribution(a, b, moments["mean"], moments["std"], bins=options.bins,
                                    sample_rows=options.sample_rows, seed=options.seed)
        stats["elem_kl_gauss_nats"] = dist.kl_gauss_nats
        stats["elem_kl_bias_nats"] = dist.kl_bias_nats
        stats["elem_excess_kurtosis"] = dist.excess_kurtosis
        if options.sample_rows:
            stats["elem_kl_gauss_se_nats"] = dist.kl_gauss_se_nats
            stats["elem_excess_kurtosis_se"] = dist.excess_kurtosis_se
    arrays = {"lambda": spec.lambdas, "u_top": spec.u_top, "v_top": spec.v_top}
    if options.elements:
        arrays["elem_hist"] = dist.counts.to(torch.int32)  # a head has <= D^2 < 2^31 elements
    return stats, arrays


def _rows(model: str, step: int, layer: int, matrix: str, stats: dict) -> pd.DataFrame:
    names, heads, values = [], [], []
    for name, vals in stats.items():
        arr = vals.detach().to(torch.float64).cpu().numpy()
        names += [name] * (len(arr) + 1)
        heads += list(range(len(arr))) + [-1]
        finite = arr[np.isfinite(arr)]
        values += list(arr) + [float(finite.mean()) if finite.size else math.nan]
    n = len(values)
    return pd.DataFrame({"model": [model] * n, "step": [step] * n, "layer": [layer] * n,
                         "head_index": heads, "matrix": [matrix] * n, "stat": names, "value": values})


def analyse_checkpoint(ref: CheckpointRef, options: SpectraOptions) -> tuple[pd.DataFrame, dict]:
    """All rows and arrays of one checkpoint (reads only the attention weights)."""
    spec, get, keys = open_weights(ref)
    frames, per_matrix = [], {m: {} for m in options.matrices}
    with torch.no_grad():
        for layer in range(spec.n_layer):
            heads = extract_layer(get, keys, spec, layer)
            for matrix in options.matrices:
                a, b = head_factors(heads, matrix)
                stats, arrays = with_nonfinite_heads(a, b, lambda x, y: matrix_stats(x, y, options, null=matrix == "qk"))
                frames.append(_rows(ref.model, ref.step, layer, matrix, stats))
                for name, arr in arrays.items():
                    per_matrix[matrix].setdefault(name, []).append(arr)
    out_arrays = {f"{m}.{name}": torch.stack(parts).contiguous()
                  for m, d in per_matrix.items() for name, parts in d.items()}
    if options.elements:
        out_arrays["elem_hist_edges_sigma"] = histogram_edges_sigma(options.bins)
    return pd.concat(frames, ignore_index=True), out_arrays
