"""Attention metrics as pure functions of (chunks of) causal attention probabilities.

Every per-row function takes `probs` [B, H, t, T] (rows of a causal softmax; query row r of the
chunk sits at absolute position i = first_row + r and sees keys j <= i) and returns one value per
row, [B, H, t], or NaN where the row has no defined value. A head's value is the mean over its
defined rows (and over the batch), so metrics stream over chunks of query rows and never need the
whole [B, H, T, T] pattern. Definitions (design.md):

  entropy_bits          H_i = -sum_j a_ij log2 a_ij                            (bits)
  entropy_norm          H_i / log2(i + 1), rows i >= 1                         (fraction, [0, 1])
  span_tokens           mean |i - j| over keys with a_ij > threshold (seed def) (tokens)
  mean_distance_tokens  sum_j a_ij |i - j|                                    (tokens)
  sink_mass             a_i0, the mass on the first token, rows i >= 1         (probability)

Imports only torch and attnlife.measures (pure math layer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from attnlife import measures


def _distances(first_row: int, t: int, T: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """|i - j| for query positions i = first_row..first_row+t-1 and keys j < T, [t, T] tokens."""
    i = torch.arange(first_row, first_row + t, device=device, dtype=dtype)[:, None]
    j = torch.arange(T, device=device, dtype=dtype)[None, :]
    return (i - j).abs()


def _causal(first_row: int, t: int, T: int, device: torch.device) -> torch.Tensor:
    """Boolean [t, T], True where key j <= query position first_row + r."""
    i = torch.arange(first_row, first_row + t, device=device)[:, None]
    return torch.arange(T, device=device)[None, :] <= i


def entropy_bits(probs: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """Row entropy H_i = -sum_j a_ij log2 a_ij (0 log 0 = 0): [B, H, t, T] -> [B, H, t] bits.

    log is taken of max(a, tiny), so a = 0 contributes exactly 0 (and no NaN appears).
    """
    return measures.entropy_bits(probs)


def entropy_norm(probs: torch.Tensor, first_row: int = 0,
                 entropy: Optional[torch.Tensor] = None) -> torch.Tensor:
    """H_i / log2(i + 1) in [0, 1]: [B, H, t, T] -> [B, H, t]; NaN for row i = 0 (one key).

    `entropy` ([B, H, t] bits of the same rows) may be passed to avoid recomputing it.
    """
    t = probs.size(-2)
    pos = torch.arange(first_row, first_row + t, device=probs.device, dtype=probs.dtype)
    denom = torch.log2(pos + 1.0)
    out = (entropy_bits(probs) if entropy is None else entropy) / denom.clamp_min(1e-30)
    return torch.where(pos > 0, out, torch.full_like(out, float("nan")))


def span_tokens(probs: torch.Tensor, first_row: int = 0, threshold: float = 0.01) -> torch.Tensor:
    """Seed effective span: mean |i - j| over causal keys with a_ij > threshold, [B, H, t] tokens.

    NaN for a row with no entry above the threshold (e.g. a near-uniform row longer than
    1 / threshold keys); such rows are left out of the head's mean.
    """
    t, T = probs.shape[-2:]
    dist = _distances(first_row, t, T, probs.device, probs.dtype)
    keep = (probs > threshold) & _causal(first_row, t, T, probs.device)
    count = keep.sum(-1).to(probs.dtype)
    total = (keep.to(probs.dtype) * dist).sum(-1)
    return torch.where(count > 0, total / count.clamp_min(1.0), torch.full_like(total, float("nan")))


def mean_distance_tokens(probs: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """Attention-weighted mean distance sum_j a_ij |i - j|: [B, H, t, T] -> [B, H, t] tokens."""
    t, T = probs.shape[-2:]
    return (probs * _distances(first_row, t, T, probs.device, probs.dtype)).sum(-1)


def sink_mass(probs: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """Mass on the first token a_i0 (attention sink): [B, H, t, T] -> [B, H, t] probability.

    Row i = 0 sees only key 0, so a_00 = 1 always; it is NaN here and left out of the head's mean
    (keeping it would bias the mean upward: by 25% at T = 64 under uniform attention).
    """
    t = probs.size(-2)
    pos = torch.arange(first_row, first_row + t, device=probs.device)
    out = probs[..., 0]
    return torch.where(pos > 0, out, torch.full_like(out, float("nan")))


def jsd_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in bits along the last axis, in [0, 1]: [..., T] x [..., T] -> [...].

    JSD(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2 with base-2 entropies; symmetric, 0 iff p = q.
    """
    m = 0.5 * (p + q)
    out = entropy_bits(m) - 0.5 * (entropy_bits(p) + entropy_bits(q))
    return out.clamp(0.0, 1.0)


def pairwise_head_jsd_bits(probs: torch.Tensor, entropy: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean JSD over the H(H-1)/2 head pairs of each row: [B, H, t, T] -> [B, t] bits (0 if H = 1).

    Head entropies are computed once; mixtures of head a with all heads b > a are formed together,
    so extra memory is O(B * H * t * T) (one chunk), never all H^2 pairs at once.
    """
    B, H, t, _ = probs.shape
    total = torch.zeros(B, t, dtype=probs.dtype, device=probs.device)
    if H < 2:
        return total
    ent = entropy_bits(probs) if entropy is None else entropy         # [B, H, t]
    for a in range(H - 1):
        mix = entropy_bits(0.5 * (probs[:, a:a + 1] + probs[:, a + 1:]))  # [B, H-a-1, t]
        jsd = mix - 0.5 * (ent[:, a:a + 1] + ent[:, a + 1:])
        total += jsd.clamp(0.0, 1.0).sum(1)
    return total / (H * (H - 1) // 2)


def cosine_similarity(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine of the flattened tensors x and y (same shape) -> scalar; 0 if either is zero."""
    a, b = x.reshape(-1), y.reshape(-1)
    denom = a.norm() * b.norm()
    return torch.where(denom > 0, (a @ b) / denom.clamp_min(1e-30), torch.zeros_like(denom))


def cross_layer_matrices(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """JSD and cosine matrices between layers from head-averaged rows [L, B, R, T].

    jsd[a, b] = mean over (batch, row) of JSD_bits(rows[a], rows[b]) in [0, 1];
    cos[a, b] = cosine similarity of the flattened patterns rows[a] and rows[b] (0 against an all-zero
    layer; NaN, like the JSD, against a layer with NaN rows). Both [L, L].
    """
    L = rows.size(0)
    ent = entropy_bits(rows)                                         # [L, B, R]
    jsd = torch.zeros(L, L, dtype=rows.dtype, device=rows.device)
    for a in range(L - 1):
        mix = entropy_bits(0.5 * (rows[a:a + 1] + rows[a + 1:]))      # [L-a-1, B, R]
        vals = (mix - 0.5 * (ent[a:a + 1] + ent[a + 1:])).clamp(0.0, 1.0).flatten(1).mean(1)
        jsd[a, a + 1:] = vals
        jsd[a + 1:, a] = vals
    flat = rows.reshape(L, -1)
    norms = flat.norm(dim=1)
    cos = (flat @ flat.T) / (norms[:, None] * norms[None, :]).clamp_min(1e-30)  # a zero row: 0 / 1e-30 = 0
    cos.fill_diagonal_(1.0)
    return jsd, cos


RowMetric = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MetricSpec:
    """A registered per-row metric: fn(probs[B, H, t, T], first_row, **params) -> [B, H, t].

    `unit` documents the value; `reduction` is how rows become a head value (only "nanmean").
    `params` names optional keyword inputs the accumulator supplies: "threshold" (span threshold)
    and "entropy" (the rows' entropy_bits [B, H, t], computed once per chunk).
    """

    name: str
    fn: RowMetric
    unit: str
    reduction: str = "nanmean"
    params: tuple[str, ...] = ()


METRIC_REGISTRY: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add a per-row metric to the registry (the extension point); returns the spec."""
    METRIC_REGISTRY[spec.name] = spec
    return spec


for _spec in (MetricSpec("entropy_bits", entropy_bits, "bits"),
              MetricSpec("entropy_norm", entropy_norm, "fraction of log2(i+1)", params=("entropy",)),
              MetricSpec("span_tokens", span_tokens, "tokens", params=("threshold",)),
              MetricSpec("mean_distance_tokens", mean_distance_tokens, "tokens"),
              MetricSpec("sink_mass", sink_mass, "probability")):
    register_metric(_spec)

DEFAULT_METRICS = tuple(METRIC_REGISTRY)
