"""The GPT contract: explicit-probability path == SDPA path, causal probabilities, KV-cache
generation, nanoGPT state-dict names, checkpoint loading."""
from __future__ import annotations

import pytest
import torch

from attnlife.errors import CheckpointError
from attnlife.model import GPT, GPTConfig, expose_attention
from attnlife.model.kv_cache import KVCache
from attnlife.series.models import checkpoint_dir, load_model
from attnlife.store.checkpoints import save_checkpoint

CFG = GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def _model(seed: int = 0, cfg: GPTConfig = CFG) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg).eval()


def _randomise(model: GPT, seed: int = 1) -> GPT:
    """Larger random weights than the init so attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model


@pytest.mark.parametrize("query_chunk", [1, 5, 16])
def test_explicit_path_matches_sdpa(query_chunk: int) -> None:
    model = _randomise(_model())
    idx = torch.randint(0, CFG.vocab_size, (3, CFG.block_size), generator=torch.Generator().manual_seed(2))
    fast, _ = model(idx)
    rows: dict[int, list] = {}
    with expose_attention(model, lambda layer, first, p: rows.setdefault(layer, []).append((first, p)),
                          query_chunk=query_chunk):
        slow, _ = model(idx)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-5)
    assert sorted(rows) == [0, 1]
    starts = [first for first, _ in rows[0]]
    assert starts == list(range(0, CFG.block_size, query_chunk))
    assert all(m.pattern_sink is None for m in model.attention_modules())  # cleared on exit


def test_probabilities_are_causal_rows_summing_to_one() -> None:
    model = _randomise(_model())
    idx = torch.randint(0, CFG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(3))
    chunks: list[tuple[int, torch.Tensor]] = []
    with expose_attention(model, lambda layer, first, p: chunks.append((first, p.clone())), query_chunk=5):
        model(idx)
    for first, probs in chunks:
        B, H, t, T = probs.shape
        assert (B, H, T) == (2, CFG.n_head, 12)
        assert torch.allclose(probs.sum(-1), torch.ones(B, H, t), atol=1e-6)
        q = torch.arange(first, first + t)[:, None]
        k = torch.arange(T)[None, :]
        assert (probs[..., k > q] == 0).all()
        assert (probs[..., k <= q] > 0).all()


def test_explicit_attention_equals_float64_reference() -> None:
    model = _randomise(_model()).double()
    attn = model.attention_modules()[0]
    x = torch.randn(1, 7, CFG.n_embd, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    got: list[torch.Tensor] = []
    with expose_attention(model, lambda layer, first, p: got.append(p)):
        attn(x)
    D, H = CFG.n_embd, CFG.n_head
    K = D // H
    W, b = attn.c_attn.weight, attn.c_attn.bias
    for h in range(H):
        q = x[0] @ W[h * K:(h + 1) * K].T + b[h * K:(h + 1) * K]
        k = x[0] @ W[D + h * K:D + (h + 1) * K].T + b[D + h * K:D + (h + 1) * K]
        scores = q @ k.T / K ** 0.5
        scores = scores.masked_fill(torch.triu(torch.ones(7, 7, dtype=torch.bool), 1), float("-inf"))
        assert torch.allclose(got[0][0, h], torch.softmax(scores, -1), atol=1e-12)


def test_greedy_generation_same_with_and_without_cache_within_block() -> None:
    model = _randomise(_model())
    idx = torch.tensor([[1, 2, 3]])
    cached = model.generate(idx, CFG.block_size - 3, temperature=0.0, use_cache=True)
    plain = model.generate(idx, CFG.block_size - 3, temperature=0.0, use_cache=False)
    assert cached.shape == (1, CFG.block_size)
    assert torch.equal(cached, plain)


def test_cached_logits_match_full_forward() -> None:
    model = _randomise(_model())
    idx = torch.randint(0, CFG.vocab_size, (2, 10), generator=torch.Generator().manual_seed(5))
    full, _ = model(idx)
    cache = KVCache(CFG.n_layer, 2, CFG.n_head, CFG.block_size, CFG.head_dim, torch.device("cpu"), torch.float32)
    first, _ = model(idx[:, :6], kv_cache=cache)
    rest = [model(idx[:, i:i + 1], kv_cache=cache)[0] for i in range(6, 10)]
    assert torch.allclose(torch.cat([first] + rest, dim=1), full, atol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_past_block_size_sees_at_most_block_size_tokens(use_cache: bool) -> None:
    model = _randomise(_model())
    seen: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(args[0].size(1) + (kwargs["kv_cache"].length
                                                                 if kwargs.get("kv_cache") else 0)),
        with_kwargs=True)
    try:
        out = model.generate(torch.tensor([[0]]), 3 * CFG.block_size, temperature=1.0, top_k=5,
                             use_cache=use_cache, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert out.shape == (1, 1 + 3 * CFG.block_size)
    assert 0 < max(seen) <= CFG.block_size
    assert out[0, 0] == 0                                       # the prompt is kept in front


def test_forward_rejects_sequences_longer_than_block() -> None:
    with pytest.raises(ValueError, match="exceeds block_size"):
        _model()(torch.zeros(1, CFG.block_size + 1, dtype=torch.long))


def test_nanogpt_state_dict_names_load() -> None:
    """nanoGPT's model.py names (incl. lm_head tied to wte, no attn.bias buffer with SDPA)."""
    expected = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                "transformer.ln_f.bias", "lm_head.weight"}
    for l in range(CFG.n_layer):
        for part in ("ln_1", "ln_2"):
            expected |= {f"transformer.h.{l}.{part}.weight", f"transformer.h.{l}.{part}.bias"}
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            expected |= {f"transformer.h.{l}.{part}.weight", f"transformer.h.{l}.{part}.bias"}
    src = _randomise(_model(0))
    nanogpt_sd = {k: v.clone() for k, v in src.state_dict().items()}
    assert set(nanogpt_sd) == expected
    # a nanoGPT ckpt.pt from torch.compile carries the `_orig_mod.` prefix that nanoGPT strips
    compiled = {"_orig_mod." + k: v for k, v in nanogpt_sd.items()}
    fixed = {k.removeprefix("_orig_mod."): v for k, v in compiled.items()}
    dst = _model(1)
    dst.load_state_dict(fixed)
    idx = torch.tensor([[1, 2, 3, 4]])
    assert torch.equal(dst(idx)[0], src(idx)[0])
    assert dst.lm_head.weight.data_ptr() == dst.transformer.wte.weight.data_ptr()


def test_configure_optimizer_decays_matrices_only() -> None:
    model = _model()
    opt = model.configure_optimizer(0.1, 1e-3, (0.9, 0.99))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    assert opt.defaults["betas"] == (0.9, 0.99)


def test_load_model_round_trip(tmp_path) -> None:
    model = _randomise(_model())
    save_checkpoint(tmp_path, 7, model.state_dict(), {"model_config": CFG.to_dict()})
    loaded = load_model(checkpoint_dir(tmp_path))
    assert loaded.config == CFG and not loaded.training
    idx = torch.tensor([[3, 1, 4, 1, 5]])
    assert torch.equal(loaded(idx)[0], model(idx)[0])
    assert checkpoint_dir(tmp_path, 7) == checkpoint_dir(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint at step 3"):
        checkpoint_dir(tmp_path, 3)


def test_load_model_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="has no checkpoints"):
        checkpoint_dir(tmp_path)
    save_checkpoint(tmp_path, 0, _model().state_dict(), {})
    with pytest.raises(CheckpointError, match="model_config"):
        load_model(checkpoint_dir(tmp_path))
