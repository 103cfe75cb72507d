"""Per-head type scores as pure per-row functions of causal attention probabilities.

Each function takes `probs` [B, H, t, T] (query rows first_row .. first_row + t - 1 of a causal
softmax, keys j < T) and returns one value per row, [B, H, t], NaN where a row has no defined
value; a head's score is the mean over its defined rows (the accumulator's reduction). Scores
(probabilities, in [0, 1]):

  prev_token_score  a_{i,i-1}, rows i >= 1
  local_score       sum_{j = i-k}^{i} a_ij (self and the k = LOCAL_K previous tokens), rows i >= k
  self_score        a_{i,i}, rows i >= 1
  induction_score   a_{i, i-n+1} on a sequence whose second half repeats its first half
                    (T = 2n, token i = token i - n for i >= n): attention from a token's second
                    occurrence to the token after its first occurrence, rows i >= n

The sink score is the attention metric `sink_mass` (a_{i,0}, rows i >= 1; attnlife.track.metrics).
Model-level summaries: `sink_head_share` (share of heads with sink_mass > SINK_THRESHOLD) and
`induction_loss_drop_nats` (mean next-token loss on the first half minus the second half of the
repeated sequences). Imports only torch (pure math layer).
"""
from __future__ import annotations

import torch

LOCAL_K = 3
SINK_THRESHOLD = 0.3
TYPE_SCORES = ("prev_token_score", "local_score", "self_score")


def _positions(probs: torch.Tensor, first_row: int) -> torch.Tensor:
    """Absolute query positions of the chunk's rows, int64 [t]."""
    return torch.arange(first_row, first_row + probs.size(-2), device=probs.device)


def _gather_keys(probs: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """a[..., r, keys[r]] where valid[r], else NaN: [B, H, t, T] -> [B, H, t]."""
    idx = keys.clamp(0, probs.size(-1) - 1).view(1, 1, -1, 1).expand(*probs.shape[:-1], 1)
    out = probs.gather(-1, idx).squeeze(-1)
    return torch.where(valid, out, torch.full_like(out, float("nan")))


def prev_token_score(probs: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """a_{i,i-1} per row (NaN for i = 0): [B, H, t, T] -> [B, H, t]."""
    pos = _positions(probs, first_row)
    return _gather_keys(probs, pos - 1, pos >= 1)


def self_score(probs: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """a_{i,i} per row (NaN for i = 0, where it is 1 by construction): [B, H, t, T] -> [B, H, t]."""
    pos = _positions(probs, first_row)
    return _gather_keys(probs, pos, pos >= 1)


def local_score(probs: torch.Tensor, first_row: int = 0, k: int = LOCAL_K) -> torch.Tensor:
    """Mass on self and the k previous tokens, sum_{i-k <= j <= i} a_ij, rows i >= k (earlier rows
    are 1 by construction and NaN here): [B, H, t, T] -> [B, H, t]."""
    pos = _positions(probs, first_row)
    j = torch.arange(probs.size(-1), device=probs.device)
    near = (j[None, :] <= pos[:, None]) & (j[None, :] >= pos[:, None] - k)   # [t, T]
    out = (probs * near.to(probs.dtype)).sum(-1)
    return torch.where(pos >= k, out, torch.full_like(out, float("nan")))


def induction_score(probs: torch.Tensor, first_row: int = 0) -> torch.Tensor:
    """a_{i, i-n+1} for rows i >= n of a repeated sequence of length T = 2n (NaN elsewhere):
    [B, H, t, T] -> [B, H, t]."""
    n = probs.size(-1) // 2
    pos = _positions(probs, first_row)
    return _gather_keys(probs, pos - n + 1, pos >= n)


def sink_head_share(sink_mass: torch.Tensor, threshold: float = SINK_THRESHOLD) -> float:
    """Share of heads whose sink_mass exceeds `threshold`: any shape of per-head values -> [0, 1]."""
    ok = ~torch.isnan(sink_mass)
    return float((sink_mass[ok] > threshold).double().mean()) if ok.any() else float("nan")


def repeated_halves_loss_drop(token_loss: torch.Tensor) -> tuple[float, float, float]:
    """(loss on half 1, loss on half 2, drop = half 1 - half 2), nats, from per-position losses.

    token_loss [B, 2n - 1]: loss of predicting token p + 1 at position p of a repeated sequence.
    Half 1 = positions 0 .. n-2 (tokens 1 .. n-1, unpredictable by copying); half 2 = positions
    n .. 2n-2 (tokens n+1 .. 2n-1, each a copy of a token seen n positions earlier). Position
    n - 1 (predicting the start of the repeat) belongs to neither.
    """
    n = (token_loss.size(-1) + 1) // 2
    first = float(token_loss[:, : n - 1].double().mean())
    second = float(token_loss[:, n:].double().mean())
    return first, second, first - second


def repeated_random_tokens(n_seq: int, half: int, vocab_size: int, seed: int = 0) -> torch.Tensor:
    """n_seq sequences of `half` uniform random tokens followed by the same tokens again, int64
    [n_seq, 2 * half] (seeded, so every checkpoint sees the same sequences)."""
    g = torch.Generator().manual_seed(seed)
    first = torch.randint(0, vocab_size, (n_seq, half), generator=g)
    return torch.cat([first, first], dim=1)


def _register() -> None:
    """Make the per-row scores available to `AttentionAccumulator` by name (the metric registry)."""
    from attnlife.track.metrics import MetricSpec, register_metric

    for name, fn in (("prev_token_score", prev_token_score), ("local_score", local_score),
                     ("self_score", self_score),
                     ("induction_score", induction_score)):
        register_metric(MetricSpec(name, fn, "probability"))


_register()
