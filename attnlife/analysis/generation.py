"""Generation-quality statistics of token sequences (pure; the sampling lives in track/sample_quality).

For one sequence w_1..w_L and n >= 1, let G_n be its L - n + 1 n-grams (as a multiset):
  distinct_n   = |set(G_n)| / |G_n|               (unique n-grams over total; 1 = no repeats)
  repetition_n = 1 - distinct_n                    (fraction of n-grams that repeat an earlier one)
Both are NaN when L < n. `corpus_quality` averages them over sequences (the mean of per-sequence
values, so every sample counts once).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
    """The L - n + 1 contiguous n-grams of `tokens` (empty when L < n)."""
    t = list(tokens)
    return [tuple(t[i:i + n]) for i in range(len(t) - n + 1)]


def distinct_n(tokens: Sequence[int], n: int) -> float:
    """|unique n-grams| / |n-grams| of one sequence (NaN when shorter than n)."""
    grams = ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def repetition_n(tokens: Sequence[int], n: int) -> float:
    """Fraction of n-grams that repeat an earlier n-gram: 1 - distinct_n (NaN when shorter than n)."""
    return 1.0 - distinct_n(tokens, n)


def corpus_quality(sequences: Sequence[Sequence[int]], max_n: int = 4) -> dict[str, float]:
    """Mean over sequences of distinct_1..distinct_{max_n} and repetition_{max_n}."""
    out = {f"distinct_{n}": float(np.nanmean([distinct_n(s, n) for s in sequences])) for n in range(1, max_n + 1)}
    out[f"repetition_{max_n}"] = float(np.nanmean([repetition_n(s, max_n) for s in sequences]))
    return out
