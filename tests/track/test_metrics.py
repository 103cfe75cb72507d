"""Attention metrics: closed forms, float64 references and hypothesis properties."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.track import head_types  # noqa: F401 - registers the type scores, checked below too
from attnlife.track import metrics as M
from tests.track.helpers import random_causal, reference_jsd, reference_rows


def uniform_causal(T: int) -> torch.Tensor:
    mask = torch.ones(T, T).tril()
    return (mask / mask.sum(-1, keepdim=True))[None, None]


def test_uniform_rows_entropy_is_log2_of_row_length():
    p = uniform_causal(9).double()
    expected = torch.log2(torch.arange(1, 10, dtype=torch.float64))
    torch.testing.assert_close(M.entropy_bits(p)[0, 0], expected)
    norm = M.entropy_norm(p)[0, 0]
    assert math.isnan(norm[0]) and torch.allclose(norm[1:], torch.ones(8, dtype=torch.float64))


def test_one_hot_rows_have_zero_entropy_and_span_of_hot_key():
    T = 7
    hot = torch.tensor([0, 0, 1, 1, 3, 2, 6])  # key j <= i for each row i
    p = torch.zeros(1, 1, T, T, dtype=torch.float64)
    p[0, 0, torch.arange(T), hot] = 1.0
    dist = (torch.arange(T) - hot).double()
    assert torch.equal(M.entropy_bits(p)[0, 0], torch.zeros(T, dtype=torch.float64))
    torch.testing.assert_close(M.span_tokens(p)[0, 0], dist)
    torch.testing.assert_close(M.mean_distance_tokens(p)[0, 0], dist)
    sink = M.sink_mass(p)[0, 0]
    assert math.isnan(sink[0])  # row 0 always puts 1 on key 0: left out
    torch.testing.assert_close(sink[1:], (hot[1:] == 0).double())


def test_sink_mass_skips_row_zero_under_uniform_attention():
    T = 64
    mean = float(torch.nanmean(M.sink_mass(uniform_causal(T).double())))
    assert mean == pytest.approx(sum(1 / (i + 1) for i in range(1, T)) / (T - 1), rel=1e-6)
    with_row0 = sum(1 / (i + 1) for i in range(T)) / T
    assert with_row0 / mean - 1 == pytest.approx(0.247, abs=0.001)  # the bias the old definition had


def test_span_threshold_and_nan_for_rows_below_it():
    p = uniform_causal(200).double()  # row 199 has 200 keys of 0.005 each < 0.01
    span = M.span_tokens(p, threshold=0.01)[0, 0]
    assert math.isnan(span[199]) and span[10] == pytest.approx(5.0)  # mean of 0..10
    assert M.span_tokens(p, threshold=0.001)[0, 0, 199] == pytest.approx(99.5)


def test_chunk_offset_matches_full_pattern():
    p = random_causal(2, 3, 20, seed=1).double()
    for name, spec in M.METRIC_REGISTRY.items():
        full = spec.fn(p, 0)
        chunk = spec.fn(p[:, :, 8:15], 8)
        torch.testing.assert_close(chunk, full[:, :, 8:15], equal_nan=True, msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float32_matches_float64_loop_reference(seed):
    p64 = random_causal(1, 2, 24, seed=seed, sharp=2.0)
    p64 = p64.double()
    p32 = p64.float()
    for h in range(2):
        ref = reference_rows(p64[0, h].tolist())
        for name, spec in M.METRIC_REGISTRY.items():
            got = spec.fn(p32, 0)[0, h].double().numpy()
            want = np.array(ref[name])
            scale = 24.0 if "tokens" in name else 1.0
            np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=1e-5, err_msg=name)


def test_jsd_reference_symmetry_and_bounds():
    g = torch.Generator().manual_seed(3)
    p = torch.softmax(torch.randn(5, 16, generator=g, dtype=torch.float64), -1)
    q = torch.softmax(torch.randn(5, 16, generator=g, dtype=torch.float64) * 4, -1)
    got = M.jsd_bits(p, q)
    want = torch.tensor([reference_jsd(a.tolist(), b.tolist()) for a, b in zip(p, q)], dtype=torch.float64)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(M.jsd_bits(q, p), got)
    assert torch.equal(M.jsd_bits(p, p), torch.zeros(5, dtype=torch.float64))
    disjoint = M.jsd_bits(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert float(disjoint) == pytest.approx(1.0)


def test_pairwise_head_jsd_and_cross_layer_matrices():
    p = random_causal(2, 3, 10, seed=4).double()
    pair = M.pairwise_head_jsd_bits(p)
    want = (M.jsd_bits(p[:, 0], p[:, 1]) + M.jsd_bits(p[:, 0], p[:, 2]) + M.jsd_bits(p[:, 1], p[:, 2])) / 3
    torch.testing.assert_close(pair, want)
    rows = torch.stack([p.mean(1), p.mean(1), random_causal(2, 1, 10, seed=9).double()[:, 0]])
    jsd, cos = M.cross_layer_matrices(rows)
    assert jsd[0, 1] == 0 and cos[0, 1] == pytest.approx(1.0)
    assert torch.equal(jsd, jsd.T) and torch.equal(cos, cos.T)
    assert 0 < jsd[0, 2] <= 1 and 0 < cos[0, 2] < 1
    a, b = rows[0].reshape(-1), rows[2].reshape(-1)
    assert float(cos[0, 2]) == pytest.approx(float(a @ b / (a.norm() * b.norm())))


probs_strategy = st.integers(min_value=0, max_value=10_000).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(2, 12), st.floats(0.1, 8.0)))


@settings(max_examples=40, deadline=None)
@given(probs_strategy)
def test_properties_on_random_causal_patterns(args):
    seed, T, sharp = args
    p = random_causal(1, 2, T, seed=seed, sharp=sharp, dtype=torch.float64)
    H = M.entropy_bits(p)
    bound = torch.log2(torch.arange(1, T + 1, dtype=torch.float64))
    assert (H >= -1e-12).all() and (H <= bound + 1e-9).all()
    n = M.entropy_norm(p)[..., 1:]
    assert (n >= -1e-12).all() and (n <= 1 + 1e-9).all()
    d = M.mean_distance_tokens(p)
    assert (d >= 0).all() and (d <= torch.arange(T, dtype=torch.float64) + 1e-9).all()
    s = M.span_tokens(p)
    ok = ~torch.isnan(s)
    assert (s[ok] <= torch.arange(T, dtype=torch.float64).expand_as(s)[ok] + 1e-9).all()
    j = M.jsd_bits(p[:, 0], p[:, 1])                       # clamped to [0, 1]: check values, not bounds
    want = [reference_jsd(a.tolist(), b.tolist()) for a, b in zip(p[0, 0], p[0, 1])]
    np.testing.assert_allclose(j[0].numpy(), want, atol=1e-12)
    torch.testing.assert_close(j, M.jsd_bits(p[:, 1], p[:, 0]))


def test_register_metric_extension_point():
    spec = M.MetricSpec("max_prob", lambda probs, first_row=0: probs.max(-1).values, "probability")
    M.register_metric(spec)
    try:
        from attnlife.track.accumulate import AttentionAccumulator

        acc = AttentionAccumulator(metrics=("max_prob",))
        p = uniform_causal(4)
        acc(0, 0, p)
        (row,) = [r for r in acc.results() if r[2] == "max_prob"]
        assert row[3] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    finally:
        del M.METRIC_REGISTRY["max_prob"]
