"""Contracts of the pure attention math beyond its formulas: the device of the inputs, float64 kept
float64, divergences kept in [0, 1] bit under rounding, the entropy a caller passes reused, and the
backend a caller names used."""
from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

from attnlife.track import fused_stats as FS
from attnlife.track import head_types as HT
from attnlife.track import metrics as M
from tests.track.helpers import random_causal

META = torch.device("meta")


def test_every_registered_metric_runs_on_the_device_of_its_input() -> None:
    # a tensor made on the default device (CPU) beside a meta tensor raises: this catches any
    # position or mask built without `device=` (on a GPU it would be a host-device mismatch)
    probs = torch.rand(2, 3, 5, 9, device=META)
    for name, spec in M.METRIC_REGISTRY.items():
        out = spec.fn(probs, 4)
        assert out.device == META and out.shape == (2, 3, 5), name
    assert M.pairwise_head_jsd_bits(probs).device == META
    jsd, cos = M.cross_layer_matrices(torch.rand(3, 2, 5, 9, device=META))
    assert jsd.device == cos.device == META and jsd.shape == (3, 3)
    assert M.cosine_similarity(probs, probs).device == META


@pytest.mark.parametrize("backend", ["cpu_flash", "chunked"])
def test_fused_statistics_run_on_the_device_of_their_input(backend: str) -> None:
    q, k = torch.randn(1, 4, 6, 8, device=META), torch.randn(1, 2, 6, 8, device=META)
    for stats in (FS.fused_row_stats(q, k, backend=backend), FS.fused_row_stats(q[:, :, 2:], k, backend=backend),
                  FS.fused_row_stats(q, k, attn_mask=torch.ones(6, 6, dtype=torch.bool, device=META).tril(),
                                     backend=backend)):
        assert {t.device for t in (stats.entropy_bits, stats.mean_distance_tokens, stats.sink_mass)} == {META}
    assert {v.device for v in FS.fused_sequence_means(q, k, backend=backend).values()} == {META}
    assert FS.chunked_logsumexp(q, q, 0.5).device == META


def test_float64_rows_stay_float64() -> None:
    p = random_causal(1, 2, 12, seed=3, dtype=torch.float64)
    ref = M.entropy_bits(p) / torch.log2(torch.arange(1, 13, dtype=torch.float64))
    torch.testing.assert_close(M.entropy_norm(p)[..., 1:], ref[..., 1:], rtol=1e-15, atol=0)
    rows = torch.stack([p[:, 0], p[:, 1], p[:, 0].flip(-1).tril()])       # [L=3, B, R, T]
    jsd, cos = M.cross_layer_matrices(rows)
    assert jsd.dtype == torch.float64
    for a, b in ((0, 1), (0, 2), (1, 2)):
        want = M.jsd_bits(rows[a], rows[b]).mean()
        assert float(jsd[a, b]) == pytest.approx(float(want), rel=1e-14) and jsd[b, a] == jsd[a, b]
    assert jsd[1, 2] > 0                                                   # the last pair is filled too
    assert torch.equal(torch.diagonal(cos), torch.ones(3, dtype=torch.float64))


def _nearly_equal_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(2000, 16, generator=g), -1)
    q = p * (1 + 1e-6 * torch.randn(2000, 16, generator=g))
    return p, q / q.sum(-1, keepdim=True)


def _disjoint_thirds() -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0, 0.0, 0.0])
    return p, p.flip(0)


def test_divergences_stay_in_zero_one_bit_under_float32_rounding() -> None:
    p, q = _nearly_equal_pairs()
    raw = M.entropy_bits(0.5 * (p + q)) - 0.5 * (M.entropy_bits(p) + M.entropy_bits(q))
    assert (raw < 0).any()                                                 # control: rounding goes below 0
    assert (M.jsd_bits(p, q) >= 0).all()
    a, b = _disjoint_thirds()
    assert float(M.entropy_bits(0.5 * (a + b)) - M.entropy_bits(a)) > 1.0  # control: rounding goes above 1
    assert float(M.jsd_bits(a, b)) == 1.0
    heads = torch.stack([p, q])[None, :, :, :]                             # [B=1, H=2, t=2000, T=16]
    assert (M.pairwise_head_jsd_bits(heads) >= 0).all()
    assert torch.equal(M.pairwise_head_jsd_bits(torch.stack([a, b])[None, :, None, :]), torch.ones(1, 1))
    jsd, _ = M.cross_layer_matrices(torch.stack([p, q])[:, None])
    assert float(jsd[0, 1]) == pytest.approx(float(M.jsd_bits(p, q).mean()), rel=1e-6)  # each row clamped, then
    assert float(raw.mean()) != pytest.approx(float(M.jsd_bits(p, q).mean()), rel=1e-3)  # control: not after
    jsd, _ = M.cross_layer_matrices(torch.stack([a, b])[:, None, None])
    assert float(jsd[0, 1]) == 1.0


def test_two_heads_have_one_pair() -> None:
    a, b = _disjoint_thirds()
    two = torch.stack([a, b])[None, :, None, :]                           # H = 2: one pair, JSD 1
    assert torch.equal(M.pairwise_head_jsd_bits(two), torch.ones(1, 1))
    assert torch.equal(M.pairwise_head_jsd_bits(two[:, :1]), torch.zeros(1, 1))
    three = torch.stack([a, b, a])[None, :, None, :]                      # pairs 1, 0, 1
    assert float(M.pairwise_head_jsd_bits(three)) == pytest.approx(2 / 3)


def test_a_given_entropy_is_reused_not_recomputed(monkeypatch) -> None:
    p = random_causal(1, 3, 8, seed=1, dtype=torch.float64)
    ent = M.entropy_bits(p)
    want_norm, want_pair = M.entropy_norm(p), M.pairwise_head_jsd_bits(p)
    calls = []
    real = M.entropy_bits
    monkeypatch.setattr(M, "entropy_bits", lambda probs, first_row=0: calls.append(probs.shape) or real(probs))
    torch.testing.assert_close(M.entropy_norm(p, entropy=ent), want_norm, equal_nan=True)
    assert calls == []
    torch.testing.assert_close(M.pairwise_head_jsd_bits(p, entropy=ent), want_pair)
    assert len(calls) == 2                                                 # the two mixtures only, never p itself
    assert all(shape != p.shape for shape in calls)


def test_cosine_similarity_closed_forms() -> None:
    x = torch.tensor([[1e-3, 2e-3], [0.0, 3e-3]], dtype=torch.float64)    # norms far below 1
    assert float(M.cosine_similarity(x, 2 * x)) == pytest.approx(1.0, rel=1e-12)
    assert float(M.cosine_similarity(x, -x)) == pytest.approx(-1.0, rel=1e-12)
    y = torch.tensor([[2e-3, -1e-3], [0.0, 0.0]], dtype=torch.float64)
    assert float(M.cosine_similarity(x[0], y[0])) == 0.0
    a, b = x.reshape(-1), torch.tensor([1.0, 0.0, 2.0, 2.0], dtype=torch.float64)
    want = float(a @ b / (a.norm() * b.norm()))
    assert float(M.cosine_similarity(x, b.reshape(2, 2))) == pytest.approx(want, rel=1e-12)
    assert float(M.cosine_similarity(x, torch.zeros(2, 2, dtype=torch.float64))) == 0.0


def test_cross_layer_cosine_of_small_probability_rows() -> None:
    a = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    b = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    _, cos = M.cross_layer_matrices(torch.stack([a, b])[:, None, None])   # norms 0.5 and 0.71: product < 1
    assert float(cos[0, 1]) == pytest.approx(float(a @ b / (a.norm() * b.norm())), rel=1e-12)


def test_cross_layer_cosine_of_a_zero_layer_is_zero_and_of_a_nan_layer_is_nan() -> None:
    a = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    _, cos = M.cross_layer_matrices(torch.stack([a, torch.zeros(4, dtype=torch.float64)])[:, None, None])
    assert cos.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    nan = torch.full((4,), float("nan"), dtype=torch.float64)
    jsd, cos = M.cross_layer_matrices(torch.stack([a, nan])[:, None, None])
    assert math.isnan(float(cos[0, 1])) and math.isnan(float(cos[1, 0])) and math.isnan(float(jsd[0, 1]))


def test_span_threshold_is_strict() -> None:
    p = (torch.ones(4, 4, dtype=torch.float64).tril() / torch.arange(1, 5)[:, None])[None, None]  # uniform rows
    assert math.isnan(float(M.span_tokens(p, threshold=0.25)[0, 0, 3]))  # four keys of exactly 0.25: none above
    assert float(M.span_tokens(p, threshold=0.2499)[0, 0, 3]) == 1.5


def test_type_scores_are_registered_as_probabilities() -> None:
    scores = {"prev_token_score": HT.prev_token_score, "local_score": HT.local_score,
              "self_score": HT.self_score, "induction_score": HT.induction_score}
    saved = dict(M.METRIC_REGISTRY)
    try:  # registration runs at import; run it again on a registry without the scores, so it is checked
        for name in scores:
            del M.METRIC_REGISTRY[name]
        HT._register()
        assert set(M.METRIC_REGISTRY) == set(saved)
        for name, fn in scores.items():
            spec = M.METRIC_REGISTRY[name]
            assert (spec.name, spec.fn, spec.unit, spec.reduction, spec.params) == (name, fn, "probability",
                                                                                   "nanmean", ())
    finally:
        M.METRIC_REGISTRY.clear()
        M.METRIC_REGISTRY.update(saved)


def test_sink_share_threshold_is_strict_and_halves_split_at_n() -> None:
    assert HT.sink_head_share(torch.tensor([0.3, 0.31, 0.2, 0.9])) == 0.5
    assert HT.sink_head_share(torch.tensor([0.5, 0.5]), threshold=0.5) == 0.0
    # n = 4: half 1 = positions 0..2, position 3 belongs to neither, half 2 = positions 4..6
    loss = torch.tensor([[1.0, 2.0, 6.0, 100.0, 3.0, 4.0, 5.0]])
    assert HT.repeated_halves_loss_drop(loss) == (3.0, 4.0, -1.0)


def test_repeated_tokens_are_seeded_and_cover_the_vocabulary() -> None:
    a = HT.repeated_random_tokens(50, 8, 3)
    assert torch.equal(a, HT.repeated_random_tokens(50, 8, 3, seed=0))
    assert not torch.equal(a, HT.repeated_random_tokens(50, 8, 3, seed=1))
    assert set(a.unique().tolist()) == {0, 1, 2} and torch.equal(a[:, :8], a[:, 8:])


def test_lse_backend_per_device() -> None:
    assert FS.lse_backend("cpu") == "cpu_flash" and FS.lse_backend(torch.device("cpu")) == "cpu_flash"
    assert FS.lse_backend("cuda") == "cuda_efficient"
    assert FS.lse_backend("meta") == "chunked"


def test_the_named_lse_source_is_the_one_used(monkeypatch) -> None:
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(1, 2, 9, 4, generator=g), torch.randn(1, 2, 9, 4, generator=g)
    calls = []
    real = FS.chunked_logsumexp
    monkeypatch.setattr(FS, "chunked_logsumexp", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    auto, flash = FS.fused_row_stats(q, k), FS.fused_row_stats(q, k, backend="cpu_flash")
    assert calls == [] and torch.equal(auto.entropy_bits, flash.entropy_bits)   # auto on CPU is the flash kernel
    FS.fused_sequence_means(q, k)
    assert calls == []
    FS.fused_row_stats(q, k, backend="chunked")
    FS.fused_row_stats(q[:, :, 3:], k, backend="chunked")
    FS.fused_sequence_means(q, k, backend="chunked")
    assert len(calls) == 3


def test_cuda_backend_falls_back_to_the_exact_chunked_lse_with_one_warning() -> None:
    g = torch.Generator().manual_seed(4)
    q, k = torch.randn(2, 2, 7, 5, generator=g), torch.randn(2, 2, 7, 5, generator=g)  # K + 1 = 6 -> width 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = FS.fused_row_stats(q, k, backend="cuda_efficient")
    (w,) = caught
    assert w.category is RuntimeWarning
    # the warning points at the first frame outside fused_stats.py: this test's call. Under `make mutate`
    # mutmut's trampoline (mutmut/mutation/trampoline.py) calls each function of the module, so that first
    # frame outside is the trampoline's, stacklevel 1, and the warning points at the module's own warn call
    assert w.filename == (FS.__file__ if "MUTANT_UNDER_TEST" in os.environ else __file__)
    assert str(w.message).startswith("efficient attention with LSE unavailable (")
    assert str(w.message).endswith("); using chunked LSE")
    want = FS.fused_row_stats(q, k, backend="chunked")
    for name in ("entropy_bits", "mean_distance_tokens", "sink_mass"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), equal_nan=True, rtol=1e-6, atol=1e-6)
    q6, k6 = torch.randn(1, 2, 7, 6, generator=g), torch.randn(1, 2, 7, 6, generator=g)  # K + 1 = 7 -> width 8:
    with warnings.catch_warnings():                                                    # one zero column on kv
        warnings.simplefilter("ignore")
        got = FS.fused_sequence_means(q6, k6, backend="cuda_efficient")
    for name, value in FS.fused_sequence_means(q6, k6, backend="chunked").items():
        torch.testing.assert_close(got[name], value, rtol=1e-6, atol=1e-6)
    with warnings.catch_warnings():                                                    # the same through
        warnings.simplefilter("ignore")                                                # fused_row_stats
        got = FS.fused_row_stats(q6, k6, backend="cuda_efficient")
    want = FS.fused_row_stats(q6, k6, backend="chunked")
    for name in ("entropy_bits", "mean_distance_tokens", "sink_mass", "logsumexp_nats"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), equal_nan=True, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["cpu_flash", "chunked"])
def test_low_precision_inputs_are_computed_in_float32(backend: str) -> None:
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 2, 16, 8, generator=g).bfloat16(), torch.randn(1, 2, 16, 8, generator=g).bfloat16()
    low = FS.fused_row_stats(q, k, backend=backend)
    up = FS.fused_row_stats(q.float(), k.float(), backend=backend)
    for name in ("entropy_bits", "mean_distance_tokens", "sink_mass"):
        torch.testing.assert_close(getattr(low, name), getattr(up, name), rtol=0, atol=0, equal_nan=True, msg=name)
    means = FS.fused_sequence_means(q, k, backend=backend)
    assert all(torch.equal(v, FS.fused_sequence_means(q.float(), k.float(), backend=backend)[n])
               for n, v in means.items())


def test_bad_shapes_and_backends_say_what_is_wrong() -> None:
    q = torch.randn(1, 2, 4, 8)
    with pytest.raises(ValueError, match=r"backend 'flash' is not one of \('auto', 'cpu_flash', "):
        FS.fused_row_stats(q, q, backend="flash")
    with pytest.raises(ValueError, match="equal head dims"):
        FS.fused_row_stats(q, torch.randn(1, 2, 6, 4))                        # head dims differ, Tq <= Tk
    with pytest.raises(ValueError, match=r"needs Tq == Tk \(got 4 and 6\)"):
        FS.fused_sequence_means(q, torch.randn(1, 2, 6, 8))
