"""Entropy, mean distance and sink mass of every attention row at the cost of one fused attention call.

For query row i with scores s_ij = scale * q_i . k_j over the keys it may see, a_ij = softmax_j s_ij
and LSE_i = logsumexp_j s_ij, three statistics need no attention matrix (exact identities):

  entropy (nats)   H_i = -sum_j a_ij log a_ij = LSE_i - sum_j a_ij s_ij = LSE_i - scale * q_i . o^K_i
  mean distance    sum_j a_ij (i - j)          = i - o^J_i                              (tokens)
  sink mass        a_i0                         = exp(s_i0 - LSE_i)                     (probability)
  logit bound      max_j s_ij <= LSE_i <= max_j s_ij + log(n_i)    (n_i = keys row i sees) (nats)

where o^K = attention output with V = K and o^J = attention output with V = key positions j. One
call with V = [K | j] (value width K + 1; q and k are zero-padded to the same width, which leaves
every score unchanged) plus its LSE gives all three for every head and row in O(T * K) memory. The LSE itself is kept too: its maximum over a sequence's
rows bounds the sequence's largest attention logit from above within log T (the quantity max-logit
monitors and QK-clip style fixes act on), so logit growth is seen without the scores.

Where LSE comes from (`lse_backend`, chosen per device):
  cpu    `aten._scaled_dot_product_flash_attention_for_cpu` returns (output, logsumexp) (torch >= 2.3)
  cuda   `aten._scaled_dot_product_efficient_attention(..., compute_log_sumexp=True)` in float32
         (not exercised on this project's CPU machines; falls back to `chunked` if it raises)
  other  `chunked`: output from `F.scaled_dot_product_attention`, LSE from an explicit logsumexp
         over blocks of query rows (memory O(rows_per_block * T), bounded by `CHUNK_ELEMENTS`)
All arithmetic runs in float32 (float64 inputs stay float64), whatever the model's dtype.

Positions: queries are the last Tq of the Tk key positions (i = Tk - Tq + r), as in a causal LM
with a cache. Without a mask the attention is causal (key j visible to query i iff j <= i); a
boolean mask (True = visible) or an additive one (0 / large negative, not a learned bias) may be
given instead, broadcastable to [B, H, Tq, Tk]. Imports only torch (pure math layer).
"""
from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)
CHUNK_ELEMENTS = 1 << 22          # scores held at once by the chunked LSE (16 MiB of float32)
BACKENDS = ("auto", "cpu_flash", "cuda_efficient", "chunked")


@dataclass(frozen=True)
class RowStats:
    """Per-row statistics, each [B, H, Tq] (float32, or float64 for float64 inputs).

    entropy_bits          H_i / ln 2                          (bits, >= 0)
    mean_distance_tokens  sum_j a_ij (i - j)                  (tokens, >= 0)
    sink_mass             a_i0, NaN for row i = 0 (always 1)  (probability)
    logsumexp_nats        LSE_i = log sum_j exp(s_ij)         (nats; masked keys left out)
    """

    entropy_bits: torch.Tensor
    mean_distance_tokens: torch.Tensor
    sink_mass: torch.Tensor
    logsumexp_nats: torch.Tensor

    def sequence_means(self) -> dict[str, torch.Tensor]:
        """name -> [B, H]: each sequence's mean over its defined rows (NaN rows left out) of the
        three attention statistics, and `lse_max_nats` = the largest LSE_i over its rows."""
        out = {name: torch.nanmean(getattr(self, name), dim=-1) for name in STAT_NAMES[:3]}
        out["lse_max_nats"] = self.logsumexp_nats.amax(dim=-1)
        return out


# per-sequence statistics, in the light tier's row order; lse_max_nats = max_i LSE_i (nats), an
# upper bound on the sequence's largest attention logit scale * q_i . k_j, at most log T above it
STAT_NAMES = ("entropy_bits", "mean_distance_tokens", "sink_mass", "lse_max_nats")


def lse_backend(device: torch.device | str) -> str:
    """The LSE source for tensors on `device`: 'cpu_flash', 'cuda_efficient' or 'chunked'."""
    kind = torch.device(device).type
    if kind == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        return "cpu_flash"
    if kind == "cuda" and hasattr(torch.ops.aten, "_scaled_dot_product_efficient_attention"):
        return "cuda_efficient"
    return "chunked"


def fused_row_stats(q: torch.Tensor, k: torch.Tensor, scale: Optional[float] = None, *,
                    attn_mask: Optional[torch.Tensor] = None, backend: str = "auto") -> RowStats:
    """Entropy, mean distance and sink mass of every row from q [B, H, Tq, K], k [B, Hkv, Tk, K].

    Grouped-query attention: H must be a multiple of Hkv; query head h uses key head h // (H / Hkv)
    (Hugging Face `repeat_kv` order). `scale` defaults to 1 / sqrt(K). Inputs are not modified
    and no autograd graph is built. See the module docstring for the identities and backends.
    """
    q, k, scale, backend = _prepare(q, k, scale, backend)
    Tq, Tk = q.size(2), k.size(2)
    with torch.no_grad():
        mask = _additive_mask(attn_mask, Tq, Tk, q.dtype, q.device)
        qp, kv, out, lse = _fused_call(q, k, scale, mask, backend)
        rows = torch.arange(Tk - Tq, Tk, device=q.device, dtype=q.dtype)  # absolute positions i
        entropy = (lse - scale * (qp * out).sum(-1)).clamp_min_(0.0) / LOG2  # qp . out = q . o^K
        distance = (rows - _centre(Tk) - out[..., k.size(-1)]).clamp_min_(0.0)
        s0 = scale * (qp * kv[:, :, :1]).sum(-1)                       # [B, H, Tq]
        if mask is not None:
            s0 = s0 + mask[..., 0].expand_as(s0)
        sink = torch.exp(s0 - lse)
        sink = torch.where(rows > 0, sink, torch.full_like(sink, float("nan")))
    return RowStats(entropy, distance, sink, lse)


def fused_sequence_means(q: torch.Tensor, k: torch.Tensor, scale: Optional[float] = None, *,
                         backend: str = "auto") -> dict[str, torch.Tensor]:
    """`fused_row_stats(q, k).sequence_means()` for plain causal attention (Tq = Tk, no mask), with
    fewer tensor ops (the light tier's per-step path): name -> [B, H] means over rows.

    entropy_bits = mean_i (LSE_i - scale q_i . o^K_i) / ln 2 over rows i >= 0, clamped at 0 (a mean
    of exact zeros can round to -1e-7); mean_distance_tokens = (T - 1) / 2 - mean_i o^J_i;
    sink_mass = mean_{i >= 1} exp(s_i0 - LSE_i) (NaN when T = 1); lse_max_nats = max_i LSE_i.
    Grouped-query k [B, Hkv, T, K] is accepted. One copy each of q and k (into `padded_qk`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    if k.size(2) != q.size(2):
        raise ValueError(f"fused_sequence_means needs Tq == Tk (got {q.size(2)} and {k.size(2)}); "
                         f"use fused_row_stats for queries with a cache")
    backend = lse_backend(q.device) if backend == "auto" else backend
    qp, kv = padded_qk(q, k, backend)
    return padded_sequence_means(qp, kv, q.size(-1), scale, backend)


def fused_width(K: int, backend: str) -> int:
    """Width W of the padded q and [k | j - c] (K + 1; a multiple of 8 for the CUDA kernel)."""
    return K + 1 if backend != "cuda_efficient" else 8 * math.ceil((K + 1) / 8)


def padded_qk(q: torch.Tensor, k: torch.Tensor, backend: str = "cpu_flash",
              out: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """qp = [q | 0...] and kv = [k | j - c | 0...] [B, H, T, W] float32 (float64 for float64 q),
    each written with one copy (any input dtype; grouped-query k [B, Hkv, T, K] is broadcast to
    its query heads, Hugging Face `repeat_kv` order). `out` = (qp, kv) buffers to fill in place."""
    B, H, T, K = q.shape
    Hkv = k.size(1)
    if H % Hkv or k.size(-1) != K or k.size(2) != T or k.size(0) != B:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} do not form a (grouped) "
                         f"causal attention with Tq == Tk: need H % Hkv == 0 and equal B, T, K")
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    W = fused_width(K, backend)
    if out is None:
        qp = q.new_zeros((B, H, T, W), dtype=dtype)
        kv = q.new_empty((B, H, T, W), dtype=dtype)
        kv[..., K + 1:] = 0
        kv[..., K] = torch.arange(T, device=q.device, dtype=dtype) - _centre(T)
    else:
        qp, kv = out
    with torch.no_grad():
        qp[..., :K].copy_(q.detach())
        kv.view(B, Hkv, H // Hkv, T, W)[..., :K].copy_(k.detach().unsqueeze(2))
    return qp, kv


def padded_sequence_means(qp: torch.Tensor, kv: torch.Tensor, K: int, scale: Optional[float] = None,
                          backend: str = "cpu_flash") -> dict[str, torch.Tensor]:
    """`fused_sequence_means` from `padded_qk` tensors qp, kv [B, H, T, W] (K = the head dim):
    one attention call, then per-head means by flat dot products (no [B, H, T, W] temporaries)."""
    B, H, T, W = qp.shape
    scale = 1.0 / math.sqrt(K) if scale is None else float(scale)
    with torch.no_grad():
        out, lse = _padded_call(qp, kv, scale, None, backend, K)
        qo = torch.linalg.vecdot(qp.reshape(B, H, T * W), out.reshape(B, H, T * W)) / T   # mean_i q_i . o^K_i
        entropy = (lse.mean(-1) - scale * qo).clamp_min_(0.0) / LOG2
        distance = (T - 1) / 2 - _centre(T) - out[..., K].mean(-1)
        s0 = scale * (qp[:, :, 1:] @ kv[:, :, 0, :, None]).squeeze(-1)  # [B, H, T - 1]
        sink = torch.exp(s0 - lse[..., 1:]).mean(-1)
    return {"entropy_bits": entropy, "mean_distance_tokens": distance, "sink_mass": sink,
            "lse_max_nats": lse.amax(-1)}


def _prepare(q: torch.Tensor, k: torch.Tensor, scale: Optional[float],
             backend: str) -> tuple[torch.Tensor, torch.Tensor, float, str]:
    """Validated float32/float64 q [B, H, Tq, K], k expanded to [B, H, Tk, K], scale, backend."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    B, H, Tq, K = q.shape
    Hkv, Tk = k.size(1), k.size(2)
    if H % Hkv or k.size(-1) != K or Tq > Tk:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} do not form a (grouped) "
                         f"causal attention: need H % Hkv == 0, equal head dims and Tq <= Tk")
    scale = 1.0 / math.sqrt(K) if scale is None else float(scale)
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    k = k.detach().to(dtype)
    if Hkv != H:
        k = k.repeat_interleave(H // Hkv, dim=1)
    return q.detach().to(dtype), k, scale, lse_backend(q.device) if backend == "auto" else backend


def _centre(Tk: int) -> float:
    """Offset c subtracted from key positions in V (o^J = sum_j a_ij (j - c)); halves |values|."""
    return float((Tk - 1) // 2)


def _additive_mask(mask: Optional[torch.Tensor], Tq: int, Tk: int, dtype: torch.dtype,
                   device: torch.device) -> Optional[torch.Tensor]:
    """None for plain causal (Tq == Tk), else an additive float mask [*, *, Tq, Tk] (0 / -inf)."""
    if mask is None:
        if Tq == Tk:
            return None
        mask = torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(Tk - Tq)
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=dtype, device=device)
        mask = torch.where(mask.to(device), zero, torch.full_like(zero, float("-inf")))
    mask = mask.to(device=device, dtype=dtype)
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask


def _fused_call(q: torch.Tensor, k: torch.Tensor, scale: float, mask: Optional[torch.Tensor],
                backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One attention call with keys = values = kv = [k | j - c | 0...] and queries qp = [q | 0...]
    (the zero columns leave every score q . k unchanged): (qp, kv, out, lse), out = attention
    output [B, H, Tq, W] (out[..., :K] = o^K, out[..., K] = o^J - c), lse [B, H, Tq] natural log.
    W = K + 1, rounded up to a multiple of 8 for the CUDA kernel's alignment.
    """
    B, H, Tq, K = q.shape
    Tk = k.size(2)
    width = fused_width(K, backend)
    pos = torch.arange(Tk, device=q.device, dtype=q.dtype) - _centre(Tk)  # centred: less rounding
    kv = torch.cat([k, pos.view(1, 1, Tk, 1).expand(B, H, Tk, 1)], dim=-1)
    if width > K + 1:
        kv = F.pad(kv, (0, width - K - 1))
    qp = F.pad(q, (0, width - K))
    out, lse = _padded_call(qp, kv, scale, mask, backend, K)
    return qp, kv, out, lse


def _padded_call(qp: torch.Tensor, kv: torch.Tensor, scale: float, mask: Optional[torch.Tensor],
                 backend: str, K: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(out [B, H, Tq, W], lse [B, H, Tq]) of attention with queries qp, keys = values = kv."""
    B, H, Tq, _ = qp.shape
    Tk = kv.size(2)
    causal = mask is None
    m = None if mask is None else mask.expand(B, H, Tq, Tk)
    if backend == "cpu_flash":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            qp, kv, kv, 0.0, causal, attn_mask=m, scale=scale)
        return out, lse
    if backend == "cuda_efficient":
        try:
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                qp, kv, kv, m, True, 0.0, causal, scale=scale)[:2]
            return out, lse[..., :Tq]
        except RuntimeError as err:  # kernel not built for this GPU / shape: exact fallback
            warnings.warn(f"efficient attention with LSE unavailable ({err}); using chunked LSE",
                          RuntimeWarning, stacklevel=_outside_this_module())
    out = F.scaled_dot_product_attention(qp, kv, kv, attn_mask=mask, is_causal=causal, scale=scale)
    return out, chunked_logsumexp(qp[..., :K], kv[..., :K], scale, mask)


def _outside_this_module() -> int:
    """The warnings stacklevel, seen from the caller of this function, of the first frame outside
    this module (a warning points at the user's call whichever public function led here)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def chunked_logsumexp(q: torch.Tensor, k: torch.Tensor, scale: float,
                      mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LSE_i = logsumexp_j (scale * q_i . k_j + mask_ij) over blocks of query rows: [B, H, Tq].

    q [B, H, Tq, K], k [B, H, Tk, K]; mask additive [*, *, Tq, Tk] or None for causal (Tq == Tk).
    A block of t rows holds at most [B, H, t, Tk] scores, t chosen so that is <= CHUNK_ELEMENTS.
    """
    B, H, Tq, _ = q.shape
    Tk = k.size(2)
    t = max(1, CHUNK_ELEMENTS // max(1, B * H * Tk))
    out = []
    for start in range(0, Tq, t):
        stop = min(Tq, start + t)
        keys = Tk if mask is not None else stop                      # causal: keys j < stop suffice
        s = (q[:, :, start:stop] @ k[:, :, :keys].transpose(-2, -1)) * scale
        if mask is not None:
            s = s + mask[..., start:stop, :]
        else:
            hidden = torch.ones(stop - start, keys, dtype=torch.bool, device=q.device).triu(start + 1)
            s = s.masked_fill(hidden, float("-inf"))
        out.append(torch.logsumexp(s, dim=-1))
    return torch.cat(out, dim=-1)
