"""Per-head W_Q, W_K, W_V, W_O from a state dict, with the exact layout of each architecture.

Every layout returns, per layer, `LayerHeads` with q, k, v, o [H, K, D] such that for head h
and residual-stream rows x [T, D] (after the layer norm):

  q_h = x q[h]^T + q_bias[h],  k_h = x k[kv(h)]^T + k_bias[kv(h)],  logits = q_h k_h^T / sqrt(K)
  head output contribution = (x v[h]^T) o[h]            (o[h] = (W_O[:, hK:(h+1)K])^T, [K, D])

so W_QK = q[h]^T k[h] and W_OV = v[h]^T o[h] (both D x D, never formed). Grouped-query
models (Llama/Mistral/Qwen2) repeat each key/value head for the query heads that share it:
query head h uses kv head h // (H / H_kv). Biases are returned for the logit check; the
bilinear W_QK ignores them.

Registry `LAYOUTS`: family name -> layout function. Families: attnlife (our GPT), nanogpt
(same names, `_orig_mod.` prefix from torch.compile tolerated), gpt2 (Conv1D: weights stored
[in, out], fused q|k|v along out), gpt_neox (Pythia; fused qkv interleaved per head: rows
h*3K + [0:K | K:2K | 2K:3K] = q | k | v of head h), llama (q/k/v/o_proj; also mistral, qwen2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from attnlife.errors import UnsupportedModelError

TensorGetter = Callable[[str], torch.Tensor]


@dataclass(frozen=True)
class ArchSpec:
    """Shape of a model's attention: family, L layers, H query heads, H_kv key heads, D, K."""

    family: str
    n_layer: int
    n_head: int
    n_kv_head: int
    n_embd: int
    head_dim: int


@dataclass(frozen=True)
class LayerHeads:
    """One layer's per-head factors, each [H, K, D]; biases [H, K] or None."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    o: torch.Tensor
    q_bias: Optional[torch.Tensor] = None
    k_bias: Optional[torch.Tensor] = None


class WeightKeyError(UnsupportedModelError):
    """The state dict lacks the attention weights the layout expects."""


class WeightShapeError(UnsupportedModelError):
    """The weights do not have the shapes the model config (nanoGPT model_args, config.json) declares."""


def _find_prefix(keys: Iterable[str], suffix: str, prefixes: tuple[str, ...]) -> str:
    keyset = set(keys)
    for p in prefixes:
        if p + suffix in keyset:
            return p
    raise WeightKeyError(f"no weight named '{suffix}' (tried prefixes {list(prefixes)}); "
                         f"the checkpoint is not of the declared architecture or is truncated")


def _heads(w: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Rows of an out x in projection [n*K, D] -> [n, K, D]."""
    return w.reshape(n, k, w.shape[-1])


def _o_heads(w_o: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """W_O [D, n*K] (out x in) -> per head (W_O[:, hK:(h+1)K])^T, [n, K, D]."""
    return w_o.t().reshape(n, k, w_o.shape[0])


def _bias_heads(b: Optional[torch.Tensor], n: int, k: int) -> Optional[torch.Tensor]:
    return None if b is None else b.reshape(n, k)


def _optional(get: TensorGetter, keys: set[str], name: str) -> Optional[torch.Tensor]:
    return get(name) if name in keys else None


def layout_gpt(get: TensorGetter, keys: set[str], spec: ArchSpec, layer: int) -> LayerHeads:
    """attnlife / nanoGPT: c_attn.weight [3D, D] rows q|k|v, head h rows hK:(h+1)K of each."""
    pre = _find_prefix(keys, f"transformer.h.{layer}.attn.c_attn.weight",
                       ("", "_orig_mod.", "module.", "module._orig_mod."))
    base = f"{pre}transformer.h.{layer}.attn."
    d, h, k = spec.n_embd, spec.n_head, spec.head_dim
    w = get(base + "c_attn.weight")
    b = _optional(get, keys, base + "c_attn.bias")
    return LayerHeads(q=_heads(w[:d], h, k), k=_heads(w[d:2 * d], h, k), v=_heads(w[2 * d:], h, k),
                      o=_o_heads(get(base + "c_proj.weight"), h, k),
                      q_bias=None if b is None else _bias_heads(b[:d], h, k),
                      k_bias=None if b is None else _bias_heads(b[d:2 * d], h, k))


def layout_gpt2(get: TensorGetter, keys: set[str], spec: ArchSpec, layer: int) -> LayerHeads:
    """HF GPT-2: Conv1D c_attn.weight stored [D, 3D] (in x out); transpose, then as nanoGPT."""
    pre = _find_prefix(keys, f"h.{layer}.attn.c_attn.weight", ("", "transformer."))
    base = f"{pre}h.{layer}.attn."
    d, h, k = spec.n_embd, spec.n_head, spec.head_dim
    w = get(base + "c_attn.weight").t()  # [3D, D]
    b = _optional(get, keys, base + "c_attn.bias")
    w_o = get(base + "c_proj.weight").t()  # Conv1D [in, out] -> [out, in]
    return LayerHeads(q=_heads(w[:d], h, k), k=_heads(w[d:2 * d], h, k), v=_heads(w[2 * d:], h, k),
                      o=_o_heads(w_o, h, k),
                      q_bias=None if b is None else _bias_heads(b[:d], h, k),
                      k_bias=None if b is None else _bias_heads(b[d:2 * d], h, k))


def layout_gpt_neox(get: TensorGetter, keys: set[str], spec: ArchSpec, layer: int) -> LayerHeads:
    """GPT-NeoX / Pythia: query_key_value.weight [3D, D] viewed [H, 3, K, D] (interleaved per head)."""
    pre = _find_prefix(keys, f"layers.{layer}.attention.query_key_value.weight", ("gpt_neox.", ""))
    base = f"{pre}layers.{layer}.attention."
    h, k = spec.n_head, spec.head_dim
    w = get(base + "query_key_value.weight").reshape(h, 3, k, spec.n_embd)
    b = _optional(get, keys, base + "query_key_value.bias")
    bb = None if b is None else b.reshape(h, 3, k)
    return LayerHeads(q=w[:, 0], k=w[:, 1], v=w[:, 2], o=_o_heads(get(base + "dense.weight"), h, k),
                      q_bias=None if bb is None else bb[:, 0], k_bias=None if bb is None else bb[:, 1])


def layout_llama(get: TensorGetter, keys: set[str], spec: ArchSpec, layer: int) -> LayerHeads:
    """Llama / Mistral / Qwen2: separate q/k/v/o_proj; k, v have H_kv heads, repeated per group."""
    pre = _find_prefix(keys, f"layers.{layer}.self_attn.q_proj.weight", ("model.", ""))
    base = f"{pre}layers.{layer}.self_attn."
    h, hkv, k = spec.n_head, spec.n_kv_head, spec.head_dim
    if h % hkv:
        raise UnsupportedModelError(f"{h} query heads are not a multiple of {hkv} key heads")
    group = torch.arange(h) // (h // hkv)  # kv head of each query head
    kw, vw = _heads(get(base + "k_proj.weight"), hkv, k), _heads(get(base + "v_proj.weight"), hkv, k)
    qb, kb = _optional(get, keys, base + "q_proj.bias"), _optional(get, keys, base + "k_proj.bias")
    return LayerHeads(q=_heads(get(base + "q_proj.weight"), h, k), k=kw[group], v=vw[group],
                      o=_o_heads(get(base + "o_proj.weight"), h, k),
                      q_bias=_bias_heads(qb, h, k),
                      k_bias=None if kb is None else _bias_heads(kb, hkv, k)[group])


LAYOUTS: dict[str, Callable[[TensorGetter, set[str], ArchSpec, int], LayerHeads]] = {
    "attnlife": layout_gpt,
    "nanogpt": layout_gpt,
    "gpt2": layout_gpt2,
    "gpt_neox": layout_gpt_neox,
    "llama": layout_llama,
    "mistral": layout_llama,
    "qwen2": layout_llama,
}


def supported_families() -> str:
    return ", ".join(sorted(LAYOUTS))


def extract_layer(get: TensorGetter, keys: Iterable[str], spec: ArchSpec, layer: int) -> LayerHeads:
    """Per-head factors of one layer ([H, K, D] each) via the family's layout."""
    if spec.family not in LAYOUTS:
        raise UnsupportedModelError(f"no weight layout for architecture '{spec.family}'; "
                                    f"supported: {supported_families()}")
    want = (spec.n_head, spec.head_dim, spec.n_embd)
    try:
        heads = LAYOUTS[spec.family](get, set(keys), spec, layer)
    except RuntimeError as err:  # a reshape that the declared shape does not fit
        raise WeightShapeError(f"layer {layer} weights do not fit the declared shape n_head={spec.n_head}, "
                               f"n_embd={spec.n_embd} ({' '.join(str(err).split())[:160]}); the model "
                               f"config contradicts the weights") from None
    for name in ("q", "k", "v", "o"):
        got = tuple(getattr(heads, name).shape)
        if got != want:
            raise WeightShapeError(f"layer {layer} W_{name.upper()} has per-head shape {list(got)}, the "
                                   f"config declares {list(want)} (n_head, head_dim, n_embd); the model "
                                   f"config contradicts the weights")
    return heads


def spec_from_gpt_config(cfg: dict, family: str = "attnlife") -> ArchSpec:
    """ArchSpec from our run.json `config.model` or nanoGPT `model_args` (n_layer, n_head, n_embd)."""
    try:
        n_layer, n_head, n_embd = int(cfg["n_layer"]), int(cfg["n_head"]), int(cfg["n_embd"])
    except (KeyError, TypeError, ValueError) as err:
        raise UnsupportedModelError(f"model config lacks n_layer/n_head/n_embd ({err}); "
                                    f"pass a run directory or nanoGPT ckpt.pt with model_args") from None
    if min(n_layer, n_head, n_embd) < 1 or n_embd % n_head:
        raise WeightShapeError(f"model config n_layer={n_layer}, n_head={n_head}, n_embd={n_embd} is not a "
                               f"valid shape (sizes >= 1, n_head divides n_embd); the config is corrupt")
    return ArchSpec(family, n_layer, n_head, n_head, n_embd, n_embd // n_head)


def spec_from_hf_config(cfg: dict) -> ArchSpec:
    """ArchSpec from a Hugging Face config.json dict (model_type selects the layout)."""
    if not isinstance(cfg, dict):
        raise UnsupportedModelError(f"config.json holds a JSON {type(cfg).__name__}, not an object; "
                                    f"download the model again")
    family = str(cfg.get("model_type", "?"))
    if family not in LAYOUTS or family in ("attnlife", "nanogpt"):
        raise UnsupportedModelError(
            f"unsupported Hugging Face architecture '{family}'; supported model_type values: "
            f"gpt2, gpt_neox, llama, mistral, qwen2")
    if family == "gpt2":
        return spec_from_gpt_config(cfg, "gpt2")
    try:
        d, h = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        hkv = int(cfg.get("num_key_value_heads") or h)
        head_dim = int(cfg.get("head_dim") or d // h)
        n_layer = int(cfg["num_hidden_layers"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
        raise UnsupportedModelError(
            f"config.json of this {family} model lacks a usable {err.args[0] if isinstance(err, KeyError) else 'size'} "
            f"(needs hidden_size, num_attention_heads, num_hidden_layers); download the model again") from None
    if min(d, h, hkv, head_dim, n_layer) < 1:
        raise UnsupportedModelError(f"config.json of this {family} model declares a size < 1; download it again")
    return ArchSpec(family, n_layer, h, hkv, d, head_dim)
