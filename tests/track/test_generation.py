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


def test_corpus_quality_names_exactly_its_statistics_and_skips_short_sequences() -> None:
    q = corpus_quality([[1, 2, 3, 4], [1]])          # the 1-token sequence has no 2-, 3- or 4-grams
    assert set(q) == {"distinct_1", "distinct_2", "distinct_3", "distinct_4", "repetition_4"}
    assert q["distinct_1"] == 1.0 and q["distinct_4"] == 1.0 and q["repetition_4"] == 0.0
    q2 = corpus_quality([[3, 3, 3]], max_n=2)
    assert q2 == {"distinct_1": 1 / 3, "distinct_2": 0.5, "repetition_2": 0.5}
    assert ngrams([5], 1) == [(5,)] and ngrams([5], 2) == []
