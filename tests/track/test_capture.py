"""Capture from our GPT, HF GPT-2 / GPT-NeoX / Llama (GQA) and TransformerLens; streaming metrics."""
from __future__ import annotations

import pytest
import torch

from attnlife.errors import UnsupportedModelError
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.track.accumulate import AttentionAccumulator, subsample_rows
from attnlife.track.capture import capture_attention
from attnlife.track import metrics as M

V, T = 50, 12


def build(family: str):
    torch.manual_seed(0)
    if family == "gpt":
        return GPT(GPTConfig(block_size=16, vocab_size=V, n_layer=2, n_head=2, n_embd=16))
    if family == "tl":
        from transformer_lens.model_bridge import TransformerBridge

        return TransformerBridge.boot_native(dict(n_layers=2, d_model=16, n_ctx=16, d_head=8, n_heads=2,
                                                  d_vocab=V, act_fn="gelu"))
    import transformers as tf

    if family == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=V, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    if family == "neox":
        return tf.GPTNeoXForCausalLM(tf.GPTNeoXConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2,
                                                      num_attention_heads=2, intermediate_size=32,
                                                      max_position_embeddings=16))
    return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=V, hidden_size=16, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2,
                                              intermediate_size=32, max_position_embeddings=16))


def logits_of(out):
    if isinstance(out, tuple):
        return out[0]
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("family,heads", [("gpt", 2), ("gpt2", 2), ("neox", 2), ("llama", 4), ("tl", 2)])
def test_capture_rows_sum_to_one_causal_and_outputs_unchanged(family, heads):
    model = build(family).eval()
    idx = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(1))
    call = (lambda: model(input_ids=idx)) if family in ("gpt2", "neox", "llama") else (lambda: model(idx))
    with torch.no_grad():
        before = logits_of(call())
        with capture_attention(model, query_chunk=5) as cap:
            during = logits_of(cap.forward(idx))
        after = logits_of(call())
    assert sorted(cap.patterns) == ["blocks.0.attn.pattern", "blocks.1.attn.pattern"]
    for p in cap.patterns.values():
        assert p.shape == (2, heads, T, T)
        torch.testing.assert_close(p.sum(-1), torch.ones(2, heads, T), atol=1e-5, rtol=0)
        assert torch.count_nonzero(p.triu(1)) == 0
        assert (p.tril() > 0).sum() == 2 * heads * T * (T + 1) // 2
    torch.testing.assert_close(during, before, atol=1e-5, rtol=1e-5)
    assert torch.equal(after, before)  # hooks and attention implementation fully restored


def test_gpt_untracked_forward_has_no_sink_and_uses_sdpa(monkeypatch):
    model = build("gpt")
    with capture_attention(model) as cap:
        sinks = {m.pattern_sink for m in model.attention_modules()}
        assert len(sinks) == 1 and None not in sinks                  # one sink, shared by every layer
        cap.forward(torch.zeros(1, 4, dtype=torch.long))
        assert len(cap.patterns) == len(model.attention_modules())    # ... and it received every layer
    assert all(m.pattern_sink is None for m in model.attention_modules())
    calls = []
    monkeypatch.setattr(type(model.attention_modules()[0]), "_explicit_attention",
                        lambda *a: calls.append(1))
    model(torch.zeros(1, 4, dtype=torch.long))
    assert calls == []


def test_hf_capture_restores_sdpa_and_removes_hooks():
    model = build("gpt2")
    assert model.config._attn_implementation == "sdpa"
    with capture_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    assert all(not m._forward_hooks for m in model.modules())


def test_unsupported_model_is_one_line_error():
    with pytest.raises(UnsupportedModelError, match="cannot capture attention"):
        with capture_attention(torch.nn.Linear(2, 2)):
            pass


def test_streamed_accumulator_equals_full_pattern_computation():
    model = build("gpt").eval()
    idx = torch.randint(0, V, (3, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture_attention(model) as full:
        full.forward(idx)
    acc = AttentionAccumulator(span_threshold=0.05, xlayer_rows=5)
    with torch.no_grad(), capture_attention(model, sink=acc, query_chunk=3):
        model(idx)
    rows = {(r.layer, r.head_index, r.metric): r.value for r in acc.results() if r.layer_b < 0}
    pairs = {(r.layer, r.layer_b, r.metric): r.value for r in acc.results() if r.layer_b >= 0}
    for layer in range(2):
        p = full.patterns[f"blocks.{layer}.attn.pattern"].double()
        ent = M.entropy_bits(p).mean(dim=(0, 2))
        span = M.span_tokens(p, threshold=0.05)
        span = torch.nanmean(span.transpose(0, 1).reshape(2, -1), dim=1)
        for h in range(2):
            assert rows[(layer, h, "entropy_bits")] == pytest.approx(float(ent[h]), abs=1e-5)
            assert rows[(layer, h, "span_tokens")] == pytest.approx(float(span[h]), abs=1e-5)
        assert rows[(layer, -1, "head_entropy_var")] == pytest.approx(float(ent.var(unbiased=False)), abs=1e-6)
        jsd = M.pairwise_head_jsd_bits(p).mean()
        assert rows[(layer, -1, "head_jsd_mean")] == pytest.approx(float(jsd), abs=1e-6)
    sel = subsample_rows(16, 5)
    avg = [full.patterns[f"blocks.{l}.attn.pattern"].double().mean(1)[:, sel] for l in range(2)]
    assert pairs[(0, 1, "xlayer_jsd")] == pytest.approx(float(M.jsd_bits(avg[0], avg[1]).mean()), abs=1e-6)


def test_every_accumulated_output_against_float64_loops():
    """entropy_norm, sink_mass (with standard errors), head JSD, cross-layer JSD and cosine."""
    import math
    import statistics

    from tests.track.helpers import random_causal, reference_jsd, reference_rows

    B, H, T, R = 3, 3, 10, 4
    pats = [random_causal(B, H, T, seed=10 + l) for l in range(2)]        # float32 like the model
    acc = AttentionAccumulator(xlayer_rows=R)
    for layer, p in enumerate(pats):
        for s in range(0, T, 4):
            acc(layer, s, p[:, :, s:s + 4])
    got = {(r.layer, r.head_index, r.layer_b, r.metric): r for r in acc.results()}
    for layer, p in enumerate(pats):
        pd_ = p.double().tolist()
        for h in range(H):
            for name in ("entropy_norm", "sink_mass", "entropy_bits"):
                per_seq = [[v for v in reference_rows(pd_[b][h])[name] if not math.isnan(v)] for b in range(B)]
                pooled = sum(map(sum, per_seq)) / sum(map(len, per_seq))
                se = statistics.stdev([sum(v) / len(v) for v in per_seq]) / math.sqrt(B)
                row = got[(layer, h, -1, name)]
                assert row.value == pytest.approx(pooled, abs=1e-6) and row.stderr == pytest.approx(se, abs=1e-6)
        jsd_seq = [sum(reference_jsd(pd_[b][x][i][:i + 1], pd_[b][y][i][:i + 1])
                       for x in range(H) for y in range(x + 1, H) for i in range(T)) / (T * H * (H - 1) / 2)
                   for b in range(B)]
        row = got[(layer, -1, -1, "head_jsd_mean")]
        assert row.value == pytest.approx(sum(jsd_seq) / B, abs=1e-6)
        assert row.stderr == pytest.approx(statistics.stdev(jsd_seq) / math.sqrt(B), abs=1e-6)
    sel = subsample_rows(T, R).tolist()
    avg = [[[[sum(p.double()[b, h, i, j].item() for h in range(H)) / H for j in range(T)] for i in sel]
            for b in range(B)] for p in pats]                              # [L][B][R][T]
    jsd = sum(reference_jsd(avg[0][b][r], avg[1][b][r]) for b in range(B) for r in range(len(sel))) / (B * len(sel))
    flat = [[v for b in a for r in b for v in r] for a in avg]
    cos = sum(u * v for u, v in zip(*flat)) / math.sqrt(sum(u * u for u in flat[0]) * sum(v * v for v in flat[1]))
    assert got[(0, -1, 1, "xlayer_jsd")].value == pytest.approx(jsd, abs=1e-6)
    jsd_seq = [sum(reference_jsd(avg[0][b][r], avg[1][b][r]) for r in range(len(sel))) / len(sel) for b in range(B)]
    assert got[(0, -1, 1, "xlayer_jsd")].stderr == pytest.approx(statistics.stdev(jsd_seq) / math.sqrt(B), abs=1e-6)
    assert got[(0, -1, 1, "xlayer_cos")].value == pytest.approx(cos, abs=1e-6)
    assert got[(-1, -1, -1, "xlayer_cos_mean")].value == pytest.approx(cos, abs=1e-6)
