"""Fused light statistics equal the explicit path: entropy, mean distance and sink mass per row."""
from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlife.track import metrics as M
from attnlife.track import fused_stats as FS
from attnlife.track.fused_stats import (RowStats, chunked_logsumexp, fused_row_stats, fused_sequence_means, fused_width,
                                        padded_qk, padded_sequence_means)

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


def test_fused_width_is_K_plus_1_or_the_next_multiple_of_8_for_the_cuda_kernel():
    for K in (1, 4, 6, 7, 8, 15, 16, 64):
        assert [fused_width(K, b) for b in ("auto", "cpu_flash", "chunked")] == [K + 1] * 3
    assert {K: fused_width(K, "cuda_efficient") for K in (1, 6, 7, 8, 15, 16, 64)} == \
        {1: 8, 6: 8, 7: 8, 8: 16, 15: 16, 16: 24, 64: 72}


@pytest.mark.parametrize("backend, W", [("cpu_flash", 6), ("chunked", 6), ("cuda_efficient", 8)])
def test_padded_qk_layout_is_q_0_and_k_positions_0(backend, W):
    q, k = qk(2, 6, 3, 9, 9, 5, torch.float32, seed=9)
    for _ in range(4):   # recycle same-sized blocks full of NaN: padding left unwritten would show them
        torch.full((2, 6, 9, W), float("nan")).add_(1)
    qp, kv = padded_qk(q, k, backend)
    assert qp.shape == kv.shape == (2, 6, 9, W) and qp.dtype == kv.dtype == torch.float32
    assert torch.equal(qp[..., :5], q) and torch.equal(qp[..., 5:], torch.zeros(2, 6, 9, W - 5))
    assert torch.equal(kv[..., :5], k.repeat_interleave(2, dim=1))               # repeat_kv order
    j = kv[..., 5]                                                                 # j - c, c the same for every row
    assert torch.equal(j - j[..., :1], torch.arange(9.0).expand(2, 6, 9))
    assert torch.equal(kv[..., 6:], torch.zeros(2, 6, 9, W - 6))
    qp64, kv64 = padded_qk(q.double(), k.double(), backend)
    assert qp64.dtype == kv64.dtype == torch.float64
    assert padded_qk(q.bfloat16(), k.bfloat16(), backend)[0].dtype == torch.float32


def test_padded_qk_out_buffers_are_refilled_in_place():
    q, k = qk(1, 4, 2, 7, 7, 8, torch.float32, seed=10)
    q2, k2 = qk(1, 4, 2, 7, 7, 8, torch.float32, seed=11)
    qp, kv = padded_qk(q, k)
    pos = kv[..., 8].clone()
    got = padded_qk(q2, k2, out=(qp, kv))
    assert got[0] is qp and got[1] is kv
    assert torch.equal(qp[..., :8], q2) and torch.equal(kv[..., :8], k2.repeat_interleave(2, dim=1))
    assert torch.equal(kv[..., 8], pos)
    for name, value in padded_sequence_means(qp, kv, 8).items():
        assert torch.equal(value, fused_sequence_means(q2, k2)[name]), name


@pytest.mark.parametrize("k_shape", [(1, 2, 4, 8), (1, 3, 4, 6), (1, 3, 5, 8), (2, 3, 4, 8)])
def test_padded_qk_refuses_each_mismatch_alone(k_shape):
    q = torch.randn(1, 6 if k_shape[1] == 3 else 5, 4, 8)
    want = (f"q {tuple(q.shape)} and k {k_shape} do not form a (grouped) causal attention with Tq == Tk: "
            f"need H % Hkv == 0 and equal B, T, K")
    with pytest.raises(ValueError, match=re.escape(want)):
        padded_qk(q, torch.randn(k_shape))


def test_padded_sequence_means_defaults_are_the_cpu_kernel_and_1_over_sqrt_K(monkeypatch):
    q, k = qk(2, 4, 2, 30, 30, 8, torch.float64, seed=12, sharp=2.0)
    calls = []
    real = FS.chunked_logsumexp
    monkeypatch.setattr(FS, "chunked_logsumexp", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    qp, kv = padded_qk(q, k)
    got = padded_sequence_means(qp, kv, 8)
    assert calls == []                                                    # the CPU flash kernel, not chunked
    ent, dist, sink = explicit_rows(q, k, 1 / math.sqrt(8))
    want = {"entropy_bits": ent.mean(-1), "mean_distance_tokens": dist.mean(-1), "sink_mass": sink[..., 1:].mean(-1)}
    for name, value in want.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-9, msg=name)
    for name, value in fused_sequence_means(q, k).items():               # scale None there too
        torch.testing.assert_close(value, got[name], rtol=0, atol=1e-12, msg=name)
    assert fused_sequence_means(q.float(), k.float())["entropy_bits"].dtype == torch.float32


def test_k_is_cast_to_the_dtype_of_q():
    q, k = qk(1, 2, 2, 12, 12, 4, torch.float32, seed=13)
    got = fused_row_stats(q, k.double())
    want = fused_row_stats(q, k)
    for name in ("entropy_bits", "mean_distance_tokens", "sink_mass", "logsumexp_nats"):
        assert getattr(got, name).dtype == torch.float32
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=0, atol=0, equal_nan=True)


def test_sequence_means_name_a_bad_backend():
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match=r"backend 'flash' is not one of \('auto', 'cpu_flash', "):
        fused_sequence_means(q, q, backend="flash")
