"""Heads whose weights hold NaN or inf (a diverged checkpoint): NaN statistics instead of a crash.

The eigen-solvers behind the spectra fail on non-finite input, so `with_nonfinite_heads` swaps
each such head's factors for a harmless stand-in (A = B = [I_K | 0], K <= D), computes as usual
and then overwrites that head's results: floating statistics and arrays become NaN, integer
arrays (histogram counts) become 0. Finite heads are untouched, so their numbers are exactly
those of a plain computation.
"""
from __future__ import annotations

from typing import Callable

import torch

StatsFn = Callable[[torch.Tensor, torch.Tensor], tuple[dict, dict]]


def finite_heads(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[H] bool: head h has only finite entries in a[h] and b[h] (both [H, K, D])."""
    return torch.isfinite(a).flatten(1).all(1) & torch.isfinite(b).flatten(1).all(1)


def with_nonfinite_heads(a: torch.Tensor, b: torch.Tensor, compute: StatsFn) -> tuple[dict, dict]:
    """compute(a, b) -> (stats {name: [H]}, arrays {name: [H, ...]}), NaN where a head is not finite."""
    ok = finite_heads(a, b)
    if bool(ok.all()):
        return compute(a, b)
    bad = ~ok
    k, d = a.shape[1], a.shape[2]
    stand_in = torch.eye(k, d, dtype=a.dtype, device=a.device)
    a, b = a.clone(), b.clone()
    a[bad], b[bad] = stand_in, stand_in
    stats, arrays = compute(a, b)
    for table in (stats, arrays):
        for name, values in table.items():
            if not isinstance(values, torch.Tensor) or values.ndim == 0 or values.shape[0] != len(ok):
                continue
            values = values.clone()
            values[bad] = float("nan") if values.is_floating_point() else 0
            table[name] = values
    return stats, arrays
