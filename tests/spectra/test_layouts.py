"""Each weight layout reproduces the attention logits of the real module (tiny random models, float64)."""
from __future__ import annotations

import pytest
import torch

from attnlife.errors import UnsupportedModelError
from attnlife.model.attention_probe import expose_attention
from attnlife.model.gpt import GPT, GPTConfig
from attnlife.spectra.layouts import LayerHeads, extract_layer, spec_from_gpt_config, spec_from_hf_config
from attnlife.series.refs import nanogpt_series
from attnlife.spectra.analyse import open_weights

T = 7


def _log_probs_from_heads(x: torch.Tensor, heads: LayerHeads) -> torch.Tensor:
    """log softmax of causal logits (x q^T + b_q)(x k^T + b_k)^T / sqrt(K): x [B, T, D] -> [B, H, T, T]."""
    q = torch.einsum("btd,hkd->bhtk", x, heads.q.double())
    k = torch.einsum("btd,hkd->bhtk", x, heads.k.double())
    if heads.q_bias is not None:
        q = q + heads.q_bias.double()[None, :, None]
    if heads.k_bias is not None:
        k = k + heads.k_bias.double()[None, :, None]
    logits = q @ k.transpose(-1, -2) / heads.q.shape[1] ** 0.5
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.log_softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)


def _assert_matches(inputs: list[torch.Tensor], probs: list[torch.Tensor], get, keys, spec) -> None:
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    assert len(inputs) == spec.n_layer and len(probs) == spec.n_layer
    for layer in range(spec.n_layer):
        mine = _log_probs_from_heads(inputs[layer], extract_layer(get, keys, spec, layer))
        theirs = torch.log(probs[layer])
        assert mine.shape == theirs.shape
        assert (mine - theirs)[..., mask].abs().max() < 1e-5


def _capture_inputs(modules) -> tuple[list, list]:
    seen: list[torch.Tensor] = []

    def hook(_mod, args, kwargs):
        seen.append((args[0] if args else kwargs["hidden_states"]).detach())

    return seen, [m.register_forward_pre_hook(hook, with_kwargs=True) for m in modules]


def _our_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=3, n_embd=24)).double().eval()


def test_our_gpt_layout_matches_module_logits() -> None:
    model = _our_model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-trivial biases and weights
    inputs, handles = _capture_inputs(model.attention_modules())
    probs: list[torch.Tensor] = []
    with torch.no_grad(), expose_attention(model, lambda layer, row, p: probs.append(p)):
        model(torch.randint(0, 11, (2, T)))
    for h in handles:
        h.remove()
    sd = model.state_dict()
    spec = spec_from_gpt_config(model.config.to_dict())
    _assert_matches(inputs, probs, sd.__getitem__, set(sd), spec)


def test_nanogpt_ckpt_with_orig_mod_prefix(tmp_path) -> None:
    model = _our_model()
    state = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    args = dict(n_layer=2, n_head=3, n_embd=24, block_size=16, bias=True, vocab_size=11, dropout=0.0)
    torch.save({"model": state, "model_args": args, "iter_num": 250, "config": {}}, tmp_path / "ckpt.pt")
    (ref,) = nanogpt_series([str(tmp_path / "ckpt.pt")])
    assert ref.step == 250
    spec, get, keys = open_weights(ref)
    inputs, handles = _capture_inputs(model.attention_modules())
    probs: list[torch.Tensor] = []
    with torch.no_grad(), expose_attention(model, lambda layer, row, p: probs.append(p)):
        model(torch.randint(0, 11, (1, T)))
    _assert_matches(inputs, probs, get, keys, spec)


def _hf_case(family: str):
    transformers = pytest.importorskip("transformers")
    if family == "gpt2":
        cfg = transformers.GPT2Config(n_embd=24, n_layer=2, n_head=3, n_positions=16, vocab_size=13)
        model = transformers.GPT2Model(cfg)
        modules = [blk.attn for blk in model.h]
    elif family == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                         intermediate_size=48, vocab_size=13, max_position_embeddings=16,
                                         attention_bias=True)
        model = transformers.GPTNeoXModel(cfg)
        modules = [layer.attention for layer in model.layers]
    else:
        cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, intermediate_size=48, vocab_size=13,
                                       max_position_embeddings=16, attention_bias=True)
        model = transformers.LlamaModel(cfg)
        modules = [layer.self_attn for layer in model.layers]
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.double().eval(), modules


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama"])
def test_hf_layouts_match_module_logits(family: str) -> None:
    torch.manual_seed(1)
    model, modules = _hf_case(family)
    inputs, handles = _capture_inputs(modules)
    ids = torch.randint(0, 13, (2, T))
    with torch.no_grad():  # position ids 0: rotary embeddings are the identity
        out = model(input_ids=ids, position_ids=torch.zeros_like(ids), output_attentions=True)
    for h in handles:
        h.remove()
    sd = model.state_dict()
    spec = spec_from_hf_config(model.config.to_dict())
    assert spec.family == family
    _assert_matches(inputs, list(out.attentions), sd.__getitem__, set(sd), spec)


def test_llama_gqa_shares_key_heads() -> None:
    model, _ = _hf_case("llama")
    sd = model.state_dict()
    spec = spec_from_hf_config(model.config.to_dict())
    heads = extract_layer(sd.__getitem__, set(sd), spec, 0)
    assert spec.n_kv_head == 2 and heads.k.shape == heads.q.shape == (4, 8, 32)
    assert torch.equal(heads.k[0], heads.k[1]) and not torch.equal(heads.k[1], heads.k[2])


def test_unknown_architecture_names_supported_ones() -> None:
    with pytest.raises(UnsupportedModelError, match="gpt2, gpt_neox, llama"):
        spec_from_hf_config({"model_type": "bert", "hidden_size": 8})


def _ov_output(x: torch.Tensor, probs: torch.Tensor, heads: LayerHeads) -> torch.Tensor:
    """sum_h P_h (x v_h^T) o_h: x [B, T, D], probs [B, H, T, T] -> [B, T, D] (no biases)."""
    values = torch.einsum("btd,hkd->bhtk", x, heads.v.double())
    return torch.einsum("bhts,bhsk,hkd->btd", probs, values, heads.o.double())


def _capture_outputs(modules) -> tuple[list, list]:
    seen: list[torch.Tensor] = []

    def hook(_mod, _args, out):
        seen.append((out[0] if isinstance(out, tuple) else out).detach())

    return seen, [m.register_forward_hook(hook) for m in modules]


@pytest.mark.parametrize("family", ["ours", "gpt2", "gpt_neox", "llama"])
def test_value_output_layout_reproduces_head_outputs(family: str) -> None:
    torch.manual_seed(3)
    if family == "ours":
        model = GPT(GPTConfig(block_size=16, vocab_size=11, n_layer=2, n_head=3, n_embd=24,
                              bias=False)).double().eval()
        modules = model.attention_modules()
        spec = spec_from_gpt_config(model.config.to_dict())
    else:
        model, modules = _hf_case(family)
        with torch.no_grad():  # projection biases off: the output is then exactly bilinear
            for m in modules:
                for name, p in m.named_parameters():
                    if name.endswith("bias"):
                        p.zero_()
        spec = spec_from_hf_config(model.config.to_dict())
    inputs, h1 = _capture_inputs(modules)
    outputs, h2 = _capture_outputs(modules)
    ids = torch.randint(0, 11, (2, T))
    with torch.no_grad():
        if family == "ours":
            probs: list[torch.Tensor] = []
            with expose_attention(model, lambda layer, row, p: probs.append(p)):
                model(ids)
        else:
            probs = list(model(input_ids=ids, position_ids=torch.zeros_like(ids), output_attentions=True).attentions)
    sd = model.state_dict()
    for layer in range(spec.n_layer):
        heads = extract_layer(sd.__getitem__, set(sd), spec, layer)
        mine = _ov_output(inputs[layer], probs[layer], heads)
        assert (mine - outputs[layer]).abs().max() < 1e-10
