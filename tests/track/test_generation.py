"""distinct-n and repetition closed forms and properties."""
from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from attnlife.track.generation import corpus_quality, distinct_n, ngrams, repetition_n


def test_closed_forms() -> None:
    assert distinct_n([1, 2, 3, 4], 1) == 1.0
    assert distinct_n([7] * 10, 1) == 0.1 and distinct_n([7] * 10, 4) == 1 / 7
    # abab...: 2 unique bigrams out of L - 1
    assert distinct_n([1, 2] * 5, 2) == 2 / 9
    assert repetition_n([1, 2] * 5, 4) == 1 - 2 / 7
    assert math.isnan(distinct_n([1, 2], 3))
    assert ngrams([1, 2, 3], 2) == [(1, 2), (2, 3)]


def test_corpus_means_per_sequence() -> None:
    q = corpus_quality([[1, 2, 3, 4], [5] * 4])
    assert q["distinct_1"] == (1.0 + 0.25) / 2
    assert q["distinct_4"] == 1.0 and q["repetition_4"] == 0.0


@given(st.lists(st.integers(0, 5), min_size=4, max_size=40), st.integers(1, 4))
def test_bounds_and_complement(tokens: list[int], n: int) -> None:
    d = distinct_n(tokens, n)
    assert 1 / (len(tokens) - n + 1) <= d <= 1.0
    assert repetition_n(tokens, n) == 1.0 - d
