"""A nanoGPT-architecture GPT whose attention exposes its probabilities only on demand.

Pre-LayerNorm blocks, causal self-attention with a fused `c_attn` projection, 4x GELU MLP,
learned absolute positions, tied token embedding / output head, dropout, optional biases.
Parameter names follow nanoGPT exactly, so nanoGPT `ckpt.pt` state dicts load as they are.

Weight layout (what `attnlife.spectra` relies on), D = n_embd, K = D / n_head:
  transformer.h.{l}.attn.c_attn.weight  [3D, D]; rows [0:D] = W_Q, [D:2D] = W_K, [2D:3D] = W_V,
                                        head h owns rows h*K:(h+1)*K of each block
  transformer.h.{l}.attn.c_proj.weight  [D, D]; W_O, output = concat_heads @ W_O^T

Normal forward passes use `scaled_dot_product_attention`. When a `pattern_sink` is set on an
attention module (see `attnlife.model.attention_probe.expose_attention`), that module instead
computes softmax probabilities explicitly, in chunks of query rows, hands each chunk to the sink
and uses the same probabilities for its output. No hook runs on untracked steps. When a `qk_sink`
is set, the module also hands detached views of its q and k [B, H, T, K] to it and then runs SDPA
as usual (the light tracking tier reads them; nothing in the forward changes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlife.config import ModelConfig

# sink(layer_index, first_query_row, probs) with probs [B, H, t, T_keys]
PatternSink = Callable[[int, int, torch.Tensor], None]
# sink(layer_index, q, k) with q, k [B, H, T, K] detached views of the forward's own tensors
QKSink = Callable[[int, torch.Tensor, torch.Tensor], None]


@dataclass
class GPTConfig(ModelConfig):
    """The model shape (`attnlife.config.ModelConfig`: n_layer, n_head, n_embd, block_size,
    dropout, bias) plus the vocabulary size, which comes from the dataset."""

    vocab_size: int = 65

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's lacks `bias=False` in older releases)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


@torch.compiler.disable
def _sink_eagerly(attn: "CausalSelfAttention", q: torch.Tensor, k: torch.Tensor) -> None:
    """The light-tier sink called from a compiled forward: it runs eagerly (a graph break), and the
    layer index is read here, not in the compiled frame, so the frame does not guard on it (one
    compiled graph serves every layer instead of one per layer, past dynamo's recompile limit)."""
    attn._qk_sink(attn.layer_index, q, k)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention; SDPA fast path, explicit path only when probed."""

    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.layer_index = layer_index
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.pattern_sink: Optional[PatternSink] = None
        self.query_chunk: int = 1024
        self.qk_sink = None  # light tracking tier (attnlife.track.light_tracker)

    @property
    def qk_sink(self) -> Optional[QKSink]:
        """The light tier's q/k sink (None: nothing is read). Setting it also sets the plain bool
        `qk_armed` that the forward branches on: torch.compile guards on a bool attribute, while a
        frame that graph-breaks at the sink call was seen (torch 2.13) to keep no guard on the sink
        object itself, so an armed graph would run after disarming."""
        return self._qk_sink

    @qk_sink.setter
    def qk_sink(self, sink: Optional[QKSink]) -> None:
        self._qk_sink = sink
        self.qk_armed = sink is not None

    def forward(self, x: torch.Tensor, kv_cache: Optional["LayerKV"] = None) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q = q.view(B, T, self.n_head, D // self.n_head).transpose(1, 2)  # [B, H, T, K]
        k = k.view(B, T, self.n_head, D // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, D // self.n_head).transpose(1, 2)
        if self.qk_armed and kv_cache is None:  # read-only: graph and outputs unchanged
            if torch.compiler.is_compiling():  # the sink runs eagerly (a graph break): hand it
                _sink_eagerly(self, q.detach().clone(), k.detach().clone())  # copies, not views
            else:                              # into the compiled graph's buffers
                self._qk_sink(self.layer_index, q.detach(), k.detach())
        past = 0
        if kv_cache is not None:
            past = kv_cache.length
            k, v = kv_cache.append(k, v)  # [B, H, past + T, K]
        if self.pattern_sink is not None:
            y = self._explicit_attention(q, k, v, past)
        else:
            y = self._sdpa(q, k, v, past)
        y = y.transpose(1, 2).contiguous().view(B, T, D)
        return self.resid_dropout(self.c_proj(y))

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        T = q.size(2)
        if past == 0:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        if T == 1:  # one new query sees every cached key
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        mask = causal_mask(T, past + T, past, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)

    def _explicit_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            past: int) -> torch.Tensor:
        """softmax(q k^T / sqrt(K) + causal mask) v, in chunks of query rows; feeds the sink."""
        T, Tk = q.size(2), k.size(2)
        scale = 1.0 / math.sqrt(q.size(-1))
        out = []
        for start in range(0, T, self.query_chunk):
            stop = min(T, start + self.query_chunk)
            scores = (q[:, :, start:stop] @ k.transpose(-2, -1)) * scale  # [B, H, t, Tk]
            mask = causal_mask(stop - start, Tk, past + start, q.device)
            scores = scores.masked_fill(~mask, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            assert self.pattern_sink is not None
            self.pattern_sink(self.layer_index, past + start, probs)
            out.append(self.attn_dropout(probs) @ v)
        return torch.cat(out, dim=2)


def causal_mask(n_queries: int, n_keys: int, first_query_pos: int, device: torch.device) -> torch.Tensor:
    """Boolean [n_queries, n_keys] mask, True where key j <= query position first_query_pos + i."""
    qpos = torch.arange(first_query_pos, first_query_pos + n_queries, device=device)[:, None]
    kpos = torch.arange(n_keys, device=device)[None, :]
    return kpos <= qpos


class MLP(nn.Module):
    """Two-layer 4x GELU feed-forward block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig, layer_index: int) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_index)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: Optional["LayerKV"] = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), kv_cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Character-level GPT (nanoGPT architecture) with optional KV cache."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def attention_modules(self) -> list[CausalSelfAttention]:
        """The attention module of each layer, in order."""
        return [block.attn for block in self.transformer.h]

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; position embeddings excluded when `non_embedding` (nanoGPT's convention)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None,
                kv_cache: Optional["KVCache"] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx [B, T] token ids -> (logits [B, T, V], mean cross-entropy in nats or None).

        With a `kv_cache`, positions continue from the cache's length and keys/values are appended.
        """
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {self.config.block_size}")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache.layers[i] if kv_cache is not None else None)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None, use_cache: bool = True,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Append `max_new_tokens` sampled tokens to idx [B, T]; see `attnlife.model.generate`."""
        from attnlife.model.generate import generate

        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                        use_cache=use_cache, generator=generator)

    def configure_optimizer(self, weight_decay: float, learning_rate: float,
                            betas: tuple[float, float]) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices (dim >= 2) only, as nanoGPT does."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas)


from attnlife.model.kv_cache import KVCache, LayerKV  # noqa: E402  (type names used above)
