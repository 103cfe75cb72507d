"""Fused light statistics equal the explicit path: entropy, mean distance and sink mass per row."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.track import metrics as M
from attnlife.track.fused_stats import RowStats, chunked_logsumexp, fused_row_stats, fused_sequence_means

BACKENDS = ("cpu_flash", "chunked")


def explicit_rows(q, k, scale, mask=None, chunk=512):
    """The explicit path in float64: softmax probabilities chunk by chunk, then the metric functions
    of `attnlife.track.metrics` (entropy_bits, mean_distance_tokens, sink_mass), each [B, H, Tq]."""
    H, Tq, Tk = q.size(1), q.size(2), k.size(2)
    k = k.double().repeat_interleave(H // k.size(1), dim=1)
    if mask is None:
        mask = torch.ones(Tq, Tk, dtype=torch.bool).tril(Tk - Tq)
    ent, dist, sink = [], [], []
    for start in range(0, Tq, chunk):
        s = (q[:, :, start:start + chunk].double() @ k.transpose(-1, -2)) * scale
        p = torch.softmax(s.masked_fill(~mask[..., start:start + chunk, :], float("-inf")), -1)
        first = Tk - Tq + start
        ent.append(M.entropy_bits(p))
        i = torch.arange(first, first + p.size(-2), dtype=torch.float64)[:, None]
        dist.append((p * (i - torch.arange(Tk, dtype=torch.float64))).sum(-1))  # signed i - j
        sink.append(M.sink_mass(p, first))
    return torch.cat(ent, -1), torch.cat(dist, -1), torch.cat(sink, -1)


def max_errors(stats: RowStats, ref) -> tuple[float, float, float]:
    out = []
    for got, want in zip((stats.entropy_bits, stats.mean_distance_tokens, stats.sink_mass), ref):
        assert torch.equal(torch.isnan(got), torch.isnan(want))
        out.append(float((got.double() - want).nan_to_num().abs().max()))
    return tuple(out)


def qk(B, H, Hkv, Tq, Tk, K, dtype, seed, sharp=1.5):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Tq, K, generator=g, dtype=torch.float64) * sharp
    k = torch.randn(B, Hkv, Tk, K, generator=g, dtype=torch.float64)
    return q.to(dtype), k.to(dtype)


@pytest.fixture(scope="module")
def long_case():
    q, k = qk(1, 2, 2, 4096, 4096, 8, torch.float32, seed=1)
    return q, k, explicit_rows(q, k, 1 / math.sqrt(8))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_at_T4096_within_1e4_bits_of_explicit_path(backend, long_case):
    q, k, ref = long_case
    stats = fused_row_stats(q, k, backend=backend)
    e, d, s = max_errors(stats, ref)
    assert stats.entropy_bits.dtype == torch.float32 and stats.entropy_bits.shape == (1, 2, 4096)
    assert e < 1e-4          # bits
    assert d < 1e-2          # tokens at distances up to 4095 (measured 3.7e-3; explicit fp32: 8e-4)
    assert s < 1e-6          # probability


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 4, 4, 97, 97, 16), (1, 6, 2, 50, 50, 8), (2, 2, 1, 7, 19, 4)])
def test_float64_within_1e9_incl_gqa_and_cached_queries(backend, shape):
    q, k = qk(*shape, torch.float64, seed=2, sharp=3.0)
    stats = fused_row_stats(q, k, scale=0.7, backend=backend)
    assert max(max_errors(stats, explicit_rows(q, k, 0.7))) < 1e-9


def test_gqa_grouping_is_repeat_kv_order():
    q, k = qk(1, 6, 2, 40, 40, 8, torch.float64, seed=3)
    grouped = fused_row_stats(q, k)
    repeated = fused_row_stats(q, k.repeat_interleave(3, dim=1))
    other_order = fused_row_stats(q, k.repeat(1, 3, 1, 1))          # head h -> kv h % 2: different
    torch.testing.assert_close(grouped.entropy_bits, repeated.entropy_bits, rtol=0, atol=1e-12)
    assert (grouped.entropy_bits - other_order.entropy_bits).abs().max() > 1e-3
    with pytest.raises(ValueError, match="H % Hkv"):
        fused_row_stats(q[:, :5], k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_attention_closed_form(backend):
    T = 33
    q = torch.zeros(1, 1, T, 4, dtype=torch.float64)
    k = torch.randn(1, 1, T, 4, dtype=torch.float64)
    stats = fused_row_stats(q, k, backend=backend)
    i = torch.arange(T, dtype=torch.float64)
    torch.testing.assert_close(stats.entropy_bits[0, 0], torch.log2(i + 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(stats.mean_distance_tokens[0, 0], i / 2, rtol=0, atol=1e-12)
    assert math.isnan(stats.sink_mass[0, 0, 0])
    torch.testing.assert_close(stats.sink_mass[0, 0, 1:], 1 / (i[1:] + 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(stats.logsumexp_nats[0, 0], torch.log(i + 1), rtol=0, atol=1e-12)
    means = stats.sequence_means()
    assert means["sink_mass"].shape == (1, 1)
    assert float(means["mean_distance_tokens"]) == pytest.approx((T - 1) / 4)
    assert float(means["lse_max_nats"]) == pytest.approx(math.log(T), abs=1e-12)   # zero logits


@pytest.mark.parametrize("backend", BACKENDS)
def test_lse_max_bounds_the_largest_logit_within_log_T(backend):
    q, k = qk(2, 3, 3, 40, 40, 8, torch.float64, seed=11, sharp=3.0)
    s = (q @ k.transpose(-1, -2)) * 0.3
    s = s.masked_fill(~torch.ones(40, 40, dtype=torch.bool).tril(), float("-inf"))
    want = torch.logsumexp(s, -1)                                           # [B, H, T]
    stats = fused_row_stats(q, k, 0.3, backend=backend)
    torch.testing.assert_close(stats.logsumexp_nats, want, rtol=0, atol=1e-12)
    lse_max = fused_sequence_means(q, k, 0.3, backend=backend)["lse_max_nats"]
    max_logit = s.amax((-1, -2))
    assert (max_logit <= lse_max + 1e-12).all() and (lse_max <= max_logit + math.log(40) + 1e-12).all()
    doubled = fused_sequence_means(2 * q, k, 0.3, backend=backend)["lse_max_nats"]
    assert (doubled > lse_max).all()                                        # sharper logits, larger bound


def test_sequence_mean_entropy_is_clamped_at_zero():
    q = torch.zeros(1, 1, 16, 4, dtype=torch.float32)
    k = torch.zeros(1, 1, 16, 4, dtype=torch.float32)
    q[..., 0], k[..., 0] = 1e4, 1.0
    k[0, 0, 0, 0] = 2.0                                     # every row puts all its mass on key 0
    means = fused_sequence_means(q, k)
    assert float(means["entropy_bits"]) == 0.0 and not math.copysign(1, float(means["entropy_bits"])) < 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_boolean_and_additive_masks(backend):
    q, k = qk(2, 2, 2, 30, 30, 8, torch.float64, seed=4)
    g = torch.Generator().manual_seed(5)
    mask = (torch.rand(2, 1, 30, 30, generator=g) > 0.4) & torch.ones(30, 30, dtype=torch.bool).tril()
    mask |= torch.eye(30, dtype=torch.bool)                                   # every row sees itself
    ref = explicit_rows(q, k, 0.35, mask)                 # a masked key 0 has a_i0 = 0 there too
    assert max(max_errors(fused_row_stats(q, k, 0.35, attn_mask=mask, backend=backend), ref)) < 1e-9
    additive = torch.zeros(mask.shape, dtype=torch.float64).masked_fill(~mask, torch.finfo(torch.float64).min)
    assert max(max_errors(fused_row_stats(q, k, 0.35, attn_mask=additive, backend=backend), ref)) < 1e-9
    # a float64 additive mask with float32 inputs is cast to the inputs' dtype (the kernels refuse a mix)
    q32, k32, add64 = q.float(), k.float(), torch.where(mask, 0.0, -1e9).double()
    got = fused_row_stats(q32, k32, 0.35, attn_mask=add64, backend=backend)
    assert got.entropy_bits.dtype == torch.float32 and max(max_errors(got, ref)) < 1e-4


def test_chunked_logsumexp_matches_full_and_inputs_untouched():
    q, k = qk(1, 3, 3, 70, 70, 8, torch.float64, seed=6)
    q0, k0 = q.clone(), k.clone()
    s = (q @ k.transpose(-1, -2)) * 0.5
    want = torch.logsumexp(s.masked_fill(~torch.ones(70, 70, dtype=torch.bool).tril(), float("-inf")), -1)
    torch.testing.assert_close(chunked_logsumexp(q, k, 0.5), want, rtol=0, atol=1e-12)
    fused_row_stats(q.requires_grad_(), k)
    assert torch.equal(q.detach(), q0) and torch.equal(k, k0)


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 2), Hkv=st.integers(1, 2), group=st.integers(1, 3), T=st.integers(1, 40),
       past=st.integers(0, 5), K=st.sampled_from([1, 4, 8]), sharp=st.floats(0.0, 6.0),
       seed=st.integers(0, 2**16), backend=st.sampled_from(BACKENDS))
def test_property_random_qk_match_explicit_and_stay_in_range(B, Hkv, group, T, past, K, sharp, seed, backend):
    q, k = qk(B, Hkv * group, Hkv, T, T + past, K, torch.float64, seed, sharp)
    stats = fused_row_stats(q, k, backend=backend)
    assert max(max_errors(stats, explicit_rows(q, k, 1 / math.sqrt(K)))) < 1e-9
    i = torch.arange(past, past + T, dtype=torch.float64)
    # upper bounds (the lower ones are clamped in the code, so asserting them proves nothing)
    assert (stats.entropy_bits <= torch.log2(i + 1) + 1e-9).all()
    assert (stats.mean_distance_tokens <= i + 1e-9).all()
    assert (stats.sink_mass[..., i > 0] <= 1 + 1e-12).all()


def test_low_precision_inputs_give_float32_statistics():
    q, k = qk(1, 2, 2, 64, 64, 8, torch.float32, seed=7)
    full = fused_row_stats(q, k)
    half = fused_row_stats(q.bfloat16(), k.bfloat16())
    assert half.entropy_bits.dtype == torch.float32
    assert (half.entropy_bits - full.entropy_bits).abs().max() < 0.1    # bf16 rounding of q, k only


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [1, 2, 45])
def test_sequence_means_fast_path_equals_row_stats(backend, T):
    q, k = qk(3, 6, 3, T, T, 8, torch.float64, seed=8, sharp=2.5)
    fast = fused_sequence_means(q, k, 0.4, backend=backend)
    slow = fused_row_stats(q, k, 0.4, backend=backend).sequence_means()
    assert set(fast) == set(slow) == {"entropy_bits", "mean_distance_tokens", "sink_mass", "lse_max_nats"}
    for name in fast:
        assert fast[name].shape == (3, 6)
        torch.testing.assert_close(fast[name], slow[name], rtol=0, atol=1e-12, equal_nan=True)
    if T > 1:
        with pytest.raises(ValueError, match="Tq == Tk"):
            fused_sequence_means(q[:, :, :1], k)
