"""Series integrity: flag checkpoints whose attention weights repeat another step's or are not finite.

digest(step) = SHA-256 over the attention tensors of that checkpoint (names sorted; each name, dtype,
shape and raw bytes). A step whose digest equals an earlier step's is a duplicate of it (public
suites have shipped the same weights under several step names); a step with any NaN or Inf
weight is non-finite. Both are excluded from the analysis, and the table says so.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

COLUMNS = ["step", "digest", "duplicate_of", "nonfinite", "excluded"]


def attention_digest(tensors: Mapping[str, np.ndarray]) -> tuple[str, bool]:
    """(hex SHA-256 of the named arrays, True if any value is NaN/Inf)."""
    h = hashlib.sha256()
    nonfinite = False
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        h.update(name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            nonfinite = True
    return h.hexdigest(), nonfinite


def integrity_table(digests: Iterable[tuple[int, str, bool]]) -> pd.DataFrame:
    """Rows step, digest, duplicate_of (earliest step with the same digest, -1 if none), nonfinite,
    excluded (duplicate or non-finite) from (step, digest, nonfinite) triples."""
    rows, first = [], {}
    for step, digest, nonfinite in sorted(digests):
        dup = first.get(digest, -1)
        first.setdefault(digest, step)
        rows.append({"step": int(step), "digest": digest, "duplicate_of": int(dup),
                     "nonfinite": bool(nonfinite), "excluded": bool(dup >= 0 or nonfinite)})
    return pd.DataFrame(rows, columns=COLUMNS)


def spectra_digests(spectra: pd.DataFrame) -> list[tuple[int, str, bool]]:
    """Digests from a spectra table when there are no checkpoints (spectra-only directories):
    per step, SHA-256 over its (layer, head, matrix, stat, value) rows sorted; values rounded to 12
    significant digits so identical weights give identical digests."""
    out = []
    for step, g in spectra.groupby("step"):
        g = g.sort_values(["model", "layer", "head_index", "matrix", "stat"])
        vals = g.value.to_numpy(dtype=np.float64)
        text = "|".join(f"{a},{b},{c},{d},{v:.12g}" for a, b, c, d, v in
                        zip(g.layer, g.head_index, g.matrix, g.stat, vals))
        out.append((int(step), hashlib.sha256(text.encode()).hexdigest(), bool(not np.all(np.isfinite(vals)))))
    return out
