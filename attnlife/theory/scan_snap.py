"""Scan-and-snap experiments: SGD on the reparameterised (Y, Z) dynamics, vectorised over seeds and
learning-rate grid points, plus the plain nn.Module form (W_Q, W_K, W_V, unembedding).

Each replica r has its own decoder Y_r [V, C], attention logits Z_r [M, V] and rates (eta_Y, eta_Z):
    g_Y = dL/dY,  b_Y <- mu b_Y + g_Y (b_Y = g_Y at the first step),  Y <- Y - eta_Y b_Y
    (the same for Z with eta_Z), L = mean over a batch of cross-entropy(n | x).
mu = 0 is plain SGD; the authors' experiments use torch.optim.SGD with momentum mu = 0.9. The
decoder scores C >= K output classes: C = K (only the next tokens), or the whole vocabulary as in
the authors' code (V contextual + M last + K next tokens; the extra classes are never targets).
Replicas of one seed share the data batch (common random numbers), so grid points differ only in
their rates. Y and Z start at 0 (uniform attention) or, with `init_scale` a > 0, i.i.d. U(-a, a)
per replica (the authors' random start is torch's nn.Linear default, a = 1 / sqrt(V + M + K)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from attnlife.theory.scan_snap_data import (
    SequenceClasses, class_summaries, reparam_logits, sample_counts,
)

Logger = Callable[[int, dict[str, torch.Tensor]], None]


@dataclass(frozen=True)
class SGDSpec:
    """How long and on what batches to train: SGD steps, sequences per batch B, sequence length T,
    seed, heavy-ball momentum mu (torch.optim.SGD convention), decoder output classes C (None: K)
    and the half-width a of the uniform start of Y and Z (0: start at zero)."""

    steps: int
    batch_size: int = 32
    seq_len: int = 128
    seed: int = 0
    momentum: float = 0.0
    n_out: int | None = None
    init_scale: float = 0.0


@dataclass
class ReparamState:
    """Y [G, S, V, K] and Z [G, S, M, V] for G grid points x S seeds."""

    decoder: torch.Tensor
    logits_z: torch.Tensor


def train_reparam(classes: SequenceClasses, eta_y: Iterable[float], eta_z: Iterable[float],
                  n_seeds: int, spec: SGDSpec, log_at: Iterable[int] = (), logger: Logger | None = None,
                  progress: Callable[[int], None] | None = None) -> ReparamState:
    """Run SGD for G = len(eta_y) grid points x `n_seeds` seeds at once; return the final state.

    At every step in `log_at`, `logger(step, summaries)` gets `class_summaries` (each [G, S, K])
    plus "loss" [G, S] (the mean cross-entropy in nats of the batch just used, NaN at step 0).
    """
    eta_y_t = torch.tensor(list(eta_y), dtype=torch.float32)
    eta_z_t = torch.tensor(list(eta_z), dtype=torch.float32)
    grid = eta_y_t.numel()
    if eta_z_t.numel() != grid:
        raise ValueError("eta_y and eta_z need one value per grid point")
    vocab, n_next, n_last = classes.vocab_size, classes.n_next, classes.n_last
    n_out = spec.n_out or n_next
    if n_out < n_next:
        raise ValueError("n_out must be >= K (the next tokens are the first K output classes)")
    steps, batch_size, seq_len = spec.steps, spec.batch_size, spec.seq_len
    gen = torch.Generator().manual_seed(spec.seed)
    y = torch.zeros(grid, n_seeds, vocab, n_out)
    z = torch.zeros(grid, n_seeds, n_last, vocab)
    if spec.init_scale > 0:   # one start per seed, shared by the grid points of that seed
        a = spec.init_scale
        y[:] = (torch.rand(n_seeds, vocab, n_out, generator=gen) * 2 - 1) * a
        z[:] = (torch.rand(n_seeds, n_last, vocab, generator=gen) * 2 - 1) * a
    y.requires_grad_(True)
    z.requires_grad_(True)
    buf_y = buf_z = None
    seed_index = torch.arange(n_seeds).view(n_seeds, 1)
    log_set = set(log_at)
    loss_gs = torch.full((grid, n_seeds), float("nan"))
    for step in range(steps + 1):
        if logger is not None and step in log_set:
            with torch.no_grad():
                summary = class_summaries(classes, z.detach().double())
                summary["loss"] = loss_gs.clone()
                logger(step, summary)
        if step == steps:
            break
        labels = torch.randint(n_next, (n_seeds, batch_size), generator=gen)       # [S, B]
        counts = sample_counts(classes, labels, seq_len, gen)                      # [S, B, V]
        query_z = z[:, seed_index, classes.psi[labels]]                            # [G, S, B, V]
        logits = reparam_logits(counts, query_z, y)                                # [G, S, B, K]
        target = labels.expand(grid, n_seeds, batch_size)
        per = F.cross_entropy(logits.reshape(-1, n_out), target.reshape(-1), reduction="none")
        loss_gs = per.view(grid, n_seeds, batch_size).mean(-1).detach()
        grad_y, grad_z = torch.autograd.grad(per.view(grid, n_seeds, -1).mean(-1).sum(), [y, z])
        if spec.momentum > 0:
            buf_y = grad_y if buf_y is None else buf_y.mul_(spec.momentum).add_(grad_y)
            buf_z = grad_z if buf_z is None else buf_z.mul_(spec.momentum).add_(grad_z)
            grad_y, grad_z = buf_y, buf_z
        with torch.no_grad():
            y -= eta_y_t.view(grid, 1, 1, 1) * grad_y
            z -= eta_z_t.view(grid, 1, 1, 1) * grad_z
        if progress is not None:
            progress(1)
    return ReparamState(y.detach(), z.detach())


class ScanSnapAttention(nn.Module):
    """The plain form: fixed orthonormal embeddings U [V + M, d], trainable W_Q, W_K, W_V [d, d], W_U [K, d].

    For contextual ids x [B, T-1] and query ids m [B]: a_t = softmax_t(q . k_t / sqrt(d)) with
    q = W_Q u_m, k_t = W_K u_{x_t}; h = W_V sum_t a_t u_{x_t}; logits = W_U h / ||h||_2  [B, K].
    With W_V orthogonal this equals `reparam_logits` for Y = (W_U W_V U_C^T)^T, Z = U_Q W_Q^T W_K U_C^T / sqrt(d).
    """

    def __init__(self, vocab_size: int, n_last: int, n_next: int, dim: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        dim = dim or vocab_size + n_last
        if dim < vocab_size + n_last:
            raise ValueError("dim must be >= V + M for orthonormal embeddings")
        gen = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
        self.register_buffer("embed", basis[: vocab_size + n_last].contiguous())    # [V+M, d]
        self.vocab_size = vocab_size
        self.w_q = nn.Parameter(torch.zeros(dim, dim))
        self.w_k = nn.Parameter(torch.zeros(dim, dim))
        self.w_v = nn.Parameter(torch.eye(dim))
        self.w_u = nn.Parameter(torch.zeros(n_next, dim))

    def forward(self, context: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        u_ctx = self.embed[context]                                # [B, T-1, d]
        u_q = self.embed[self.vocab_size + query]                  # [B, d]
        q = u_q @ self.w_q.T
        k = u_ctx @ self.w_k.T
        attn = torch.softmax((k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(q.shape[-1]), dim=-1)
        h = (attn.unsqueeze(-1) * u_ctx).sum(1) @ self.w_v.T      # [B, d]
        return (h / h.norm(dim=-1, keepdim=True)) @ self.w_u.T

    def reparam(self) -> ReparamState:
        """(Y [V, K], Z [M, V]) in the theory's coordinates (exact when W_V is orthogonal)."""
        u_c, u_q = self.embed[: self.vocab_size], self.embed[self.vocab_size:]
        z = u_q @ self.w_q.T @ self.w_k @ u_c.T / math.sqrt(self.embed.shape[1])
        y = (self.w_u @ self.w_v @ u_c.T).T
        return ReparamState(y.detach(), z.detach())


def train_module(classes: SequenceClasses, module: ScanSnapAttention, lr_attn: float, lr_out: float,
                 spec: SGDSpec, log_at: Iterable[int] = (), logger: Logger | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
    """SGD (momentum `spec.momentum`) on the nn.Module form: rate `lr_attn` for W_Q, W_K and
    `lr_out` for W_V, W_U. The decoder W_U scores the K next tokens (`spec.n_out` and
    `spec.init_scale` apply to the reparameterised form only).

    Logs the same summaries as `train_reparam` (shapes [1, 1, K]) from the module's implied Z.
    Zero-initialised W_Q, W_K get no gradient (bilinear saddle), so they start at N(0, 1 / d).
    """
    steps, batch_size, seq_len = spec.steps, spec.batch_size, spec.seq_len
    gen = torch.Generator().manual_seed(spec.seed)
    with torch.no_grad():
        dim = module.w_q.shape[0]
        module.w_q.normal_(0, 1 / math.sqrt(dim), generator=gen)
        module.w_k.normal_(0, 1 / math.sqrt(dim), generator=gen)
    opt = torch.optim.SGD([{"params": [module.w_q, module.w_k], "lr": lr_attn},
                           {"params": [module.w_v, module.w_u], "lr": lr_out}], momentum=spec.momentum)
    log_set, loss = set(log_at), torch.tensor(float("nan"))
    for step in range(steps + 1):
        if logger is not None and step in log_set:
            summary = class_summaries(classes, module.reparam().logits_z.double()[None, None])
            summary["loss"] = loss.view(1, 1)
            logger(step, summary)
        if step == steps:
            break
        labels = torch.randint(classes.n_next, (batch_size,), generator=gen)
        context = torch.multinomial(classes.probs.float()[labels], seq_len - 1, replacement=True,
                                    generator=gen)
        loss = F.cross_entropy(module(context, classes.psi[labels]), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss = loss.detach()
        if progress is not None:
            progress(1)
