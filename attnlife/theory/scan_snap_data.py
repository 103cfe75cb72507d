"""Scan-and-snap sequence classes (Tian et al. 2023) and the pure math of the reparameterised model.

A sequence class is a next token n in 0..K-1 with last (query) token m = psi(n) = n mod M. Its
T-1 contextual tokens are drawn i.i.d. from P(l | n) over a vocabulary of V = K * n_distinct +
n_common tokens: `n_distinct` *distinct* tokens belong to class n only and `n_common` *common*
tokens are shared by all classes. Two weightings:

- `distinct_profile="zipf"`: distinct P_d(j) ~ (j+1)^-alpha with total mass 1 - common_mass, common
  tokens uniform with total mass common_mass.
- `distinct_profile="linear"` (the authors' code, facebookresearch/luckmatters
  ssl/real-dataset/decoder_only.py `Dataset2`): unnormalised weight 1 per common token and
  linspace(0.1, 1, n_distinct) for the distinct tokens, normalised per class; `common_mass` is then
  implied, n_common / (n_common + 0.55 n_distinct) (0.645 for 10 and 10), and the argument is ignored.

There is no positional encoding, so attention over
a sequence depends only on the token counts nu_l, and for the query m

    c_l = nu_l exp(z_ml) / sum_l' nu_l' exp(z_ml')          (attention mass on token type l)
    f = c / ||c||_2 ;  logits_k = sum_l Y_lk f_l             (decoder Y [V, K], logits Z [M, V])

The population (T -> infinity) attention of class n replaces nu by P(. | n).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from attnlife.measures import entropy_bits


@dataclass(frozen=True)
class SequenceClasses:
    """The data model: `probs` [K, V] = P(l | n), `psi` [K] = last token of class n, masks [K, V]/[V]."""

    n_last: int
    n_next: int
    n_distinct: int
    n_common: int
    probs: torch.Tensor
    psi: torch.Tensor
    distinct_mask: torch.Tensor
    common_mask: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return self.probs.shape[1]


DISTINCT_PROFILES = ("zipf", "linear")


def build_sequence_classes(n_last: int, n_next: int, n_distinct: int = 10, n_common: int = 20,
                           common_mass: float = 0.5, zipf_alpha: float = 1.0,
                           distinct_profile: str = "zipf") -> SequenceClasses:
    """Sequence classes (M = n_last, K = n_next); see the module docstring. Float64 probabilities.

    Raises ValueError unless 1 <= M <= K, n_distinct >= 1, 0 <= common_mass < 1 and the profile is
    one of DISTINCT_PROFILES.
    """
    if n_last < 1 or n_next < n_last or n_distinct < 1 or n_common < 0:
        raise ValueError("need 1 <= M <= K, n_distinct >= 1, n_common >= 0")
    if distinct_profile not in DISTINCT_PROFILES:
        raise ValueError(f"distinct_profile must be one of {DISTINCT_PROFILES}")
    if distinct_profile == "linear":
        raw = torch.linspace(0.1, 1.0, n_distinct, dtype=torch.float64) if n_distinct > 1 \
            else torch.ones(1, dtype=torch.float64)
        common_mass = n_common / (n_common + float(raw.sum()))
        weights = raw / raw.sum()
    else:
        weights = torch.arange(1, n_distinct + 1, dtype=torch.float64) ** (-zipf_alpha)
        weights = weights / weights.sum()
    if not 0.0 <= common_mass < 1.0 or (n_common == 0 and common_mass > 0):
        raise ValueError("common_mass must be in [0, 1) and 0 when there are no common tokens")
    vocab = n_next * n_distinct + n_common
    probs = torch.zeros(n_next, vocab, dtype=torch.float64)
    distinct = torch.zeros(n_next, vocab, dtype=torch.bool)
    for n in range(n_next):
        block = slice(n * n_distinct, (n + 1) * n_distinct)
        probs[n, block] = (1.0 - common_mass) * weights
        distinct[n, block] = True
    common = torch.zeros(vocab, dtype=torch.bool)
    common[n_next * n_distinct:] = True
    if n_common:
        probs[:, common] = common_mass / n_common
    psi = torch.arange(n_next) % n_last
    return SequenceClasses(n_last, n_next, n_distinct, n_common, probs, psi, distinct, common)


def sample_counts(classes: SequenceClasses, labels: torch.Tensor, seq_len: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Token counts nu [..., V] of the seq_len - 1 contextual tokens of sequences of class `labels` [...]."""
    flat = labels.reshape(-1)
    ids = torch.multinomial(classes.probs.float()[flat], seq_len - 1, replacement=True,
                            generator=generator)                                # [N, T-1]
    counts = torch.zeros(flat.numel(), classes.vocab_size)
    counts.scatter_add_(1, ids, torch.ones(ids.shape))
    return counts.view(*labels.shape, classes.vocab_size)


def reparam_logits(counts: torch.Tensor, query_logits: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
    """Next-token logits of the reparameterised model.

    counts nu [..., B, V]; query_logits z_m [..., B, V] (the row of Z of each sequence's query);
    decoder Y [..., V, K]. c = softmax(log nu + z), f = c / ||c||_2, returns f Y [..., B, K].
    """
    attn = torch.softmax(counts.log() + query_logits, dim=-1)
    feat = attn / attn.norm(dim=-1, keepdim=True)
    return feat @ decoder


def population_attention(classes: SequenceClasses, logits_z: torch.Tensor) -> torch.Tensor:
    """T -> infinity attention of every class: c[..., n, l] = P(l|n) e^{z_psi(n) l} / sum; Z [..., M, V] -> [..., K, V]."""
    rows = logits_z[..., classes.psi, :]
    return torch.softmax(classes.probs.to(rows.dtype).log() + rows, dim=-1)


def distinct_entropy_bits(classes: SequenceClasses, logits_z: torch.Tensor) -> torch.Tensor:
    """Entropy (bits) of each class's attention restricted to and renormalised on its distinct tokens.

    H_n = -sum_{l in D_n} a_l log2 a_l with a = softmax over D_n of (log P(l|n) + z_psi(n) l).
    Z [..., M, V] -> [..., K].
    """
    rows = logits_z[..., classes.psi, :]
    logp = classes.probs.to(rows.dtype).log().masked_fill(~classes.distinct_mask, float("-inf"))
    return entropy_bits(torch.softmax(logp + rows, dim=-1))


def class_summaries(classes: SequenceClasses, logits_z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class signatures, each [..., K]: attention mass on own distinct / common tokens,
    distinct-token entropy and entropy of the whole attention c_n (bits), max and mean logit z on
    own distinct tokens, mean z on common ones."""
    attn = population_attention(classes, logits_z)
    rows = logits_z[..., classes.psi, :]
    dmask = classes.distinct_mask.to(rows.dtype)
    cmask = classes.common_mask.to(rows.dtype)
    n_common = max(int(classes.common_mask.sum()), 1)
    return {
        "attn_distinct": (attn * dmask).sum(-1),
        "attn_common": (attn * cmask).sum(-1),
        "entropy_distinct_bits": distinct_entropy_bits(classes, logits_z),
        "entropy_class_bits": entropy_bits(attn),
        "z_distinct_max": rows.masked_fill(~classes.distinct_mask, float("-inf")).amax(-1),
        "z_distinct_mean": (rows * dmask).sum(-1) / classes.n_distinct,
        "z_common_mean": (rows * cmask).sum(-1) / n_common,
    }
