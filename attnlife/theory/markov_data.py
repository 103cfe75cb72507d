"""First-order Markov chains with a chosen stationary distribution, and a character-text corpus.

`reversible_chain` builds P with stationary distribution exactly pi by detailed balance: on a
symmetric sparse graph with weights W_ij = W_ji (a ring plus `degree` random matchings),
P_ij = W_ij pi_j / c (i != j), P_ii = 1 - sum_{j != i} P_ij, with c = max_i sum_j W_ij pi_j, so
pi_i P_ij = pi_j P_ji and pi P = pi. Sparsity is the number of nonzero off-diagonal entries per row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from attnlife.errors import DataSourceError


def zipf_distribution(vocab_size: int, exponent: float) -> torch.Tensor:
    """pi_i = (i+1)^-s / sum_j (j+1)^-s, float64 [V]; token 0 is the most frequent."""
    weights = torch.arange(1, vocab_size + 1, dtype=torch.float64) ** (-exponent)
    return weights / weights.sum()


def reversible_chain(stationary: torch.Tensor, degree: int = 4, seed: int = 0) -> torch.Tensor:
    """Transition matrix P [V, V] (float64, rows sum to 1) with pi P = pi; see the module docstring."""
    vocab = stationary.numel()
    gen = torch.Generator().manual_seed(seed)
    weights = torch.zeros(vocab, vocab, dtype=torch.float64)
    ring = torch.arange(vocab)
    weights[ring, (ring + 1) % vocab] = 1.0
    for _ in range(max(degree - 2, 0) // 2):
        perm = torch.randperm(vocab, generator=gen)
        w = 0.5 + torch.rand(vocab, generator=gen, dtype=torch.float64)
        weights[ring, perm] = torch.maximum(weights[ring, perm], w)
    weights = torch.maximum(weights, weights.T)
    weights.fill_diagonal_(0.0)
    trans = weights * stationary.view(1, vocab)
    trans = trans / trans.sum(1).max()
    trans += torch.diag((1.0 - trans.sum(1)).clamp_min(0.0))  # clamp: rounding at the fullest row
    return trans


def sample_chain(trans: torch.Tensor, stationary: torch.Tensor, n_seqs: int, seq_len: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Sequences [N, seq_len] (int64) started from pi and run through P."""
    trans32 = trans.float()
    seqs = torch.empty(n_seqs, seq_len, dtype=torch.long)
    seqs[:, 0] = torch.multinomial(stationary.float(), n_seqs, replacement=True, generator=generator)
    for t in range(1, seq_len):
        seqs[:, t] = torch.multinomial(trans32[seqs[:, t - 1]], 1, generator=generator)[:, 0]
    return seqs


@dataclass(frozen=True)
class TextCorpus:
    """A character text as ids [N] with its vocabulary and empirical frequencies [V] (float64)."""

    ids: torch.Tensor
    chars: str
    freqs: torch.Tensor


def load_text(path: str | os.PathLike, max_chars: int = 2_000_000) -> TextCorpus:
    """Read a UTF-8 text file as characters, vocabulary sorted by descending frequency (id 0 = most common)."""
    p = Path(path)
    if not p.is_file():
        raise DataSourceError(f"text file {p} not found; pass --text PATH to a UTF-8 text file")
    try:
        text = p.read_text(encoding="utf-8")[:max_chars]
    except UnicodeDecodeError as err:
        raise DataSourceError(f"{p} is not UTF-8 text ({err.reason}); pass a plain text file") from err
    if len(set(text)) < 2 or len(text) < 1000:
        raise DataSourceError(f"{p} has fewer than 1000 characters or 2 symbols; pass a longer text")
    counts: dict[str, int] = {}
    for ch in text:
        counts[ch] = counts.get(ch, 0) + 1
    chars = "".join(sorted(counts, key=lambda c: (-counts[c], c)))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    freqs = torch.tensor([counts[c] for c in chars], dtype=torch.float64)
    return TextCorpus(ids, chars, freqs / freqs.sum())


def text_windows(corpus: TextCorpus, n_seqs: int, seq_len: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """`n_seqs` random windows [N, seq_len] of the corpus."""
    starts = torch.randint(corpus.ids.numel() - seq_len, (n_seqs,), generator=generator)
    return corpus.ids[starts.view(-1, 1) + torch.arange(seq_len)]
