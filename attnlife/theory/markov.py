"""Focus-dilution experiment: a one-layer transformer trained on Markov chains (or a char text)
with a small learning rate, recording each stage's signature.

Model (one head, no MLP, no norm): h = E[x] + P[t]; a = causal softmax((h W_Q^T)(h W_K^T)^T / sqrt(D));
out = h + a (h W_V^T) (`residual`; without it out = a (h W_V^T)); logits = out W_O^T. Shapes: x [B, T], E [V, D], P [T, D], W_* [D, D], W_O [V, D].

Metrics (layer -1 model level, layer 0 head 0 the head), every `log_every` steps and at `log_points`
log-spaced steps (the stages are spread over decades of steps), on a fixed eval batch:
`loss` (nats, train split; eval batch on split val), `stable_rank_embedding`, `stable_rank_out_proj`
(||W||_F^2 / ||W||_2^2), `attn_param_norm` (sqrt(|W_Q|^2+|W_K|^2+|W_V|^2)_F), `attn_param_rel_change`
(|theta - theta_0| / |theta_0|), `attn_qk_rel_change` (the same for W_Q, W_K only), `attn_focus_mass` (mean over query rows of the attention on keys
that are top-frequency tokens), `attn_focus_uniform` (the same under uniform causal attention),
`attn_focus_excess` (their difference: the focus signal), `attn_token_excess_max` and
`attn_token_excess_argmax` (the largest excess attention mass over uniform on any one key token, and
that token's id = frequency rank: where the focus sits when it leaves the top tokens),
`attn_entropy_bits`.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from attnlife import measures
from attnlife.errors import DivergenceError, TheoryConfigError
from attnlife.measures import log_spaced_steps
from attnlife.store.metrics_table import MetricWriter
from attnlife.store.lock import run_lock
from attnlife.store.run_dir import write_run_json
from attnlife.theory.markov_data import (
    load_text, reversible_chain, sample_chain, text_windows, zipf_distribution,
)

HEAD = {"layer": 0, "head_index": 0}


@dataclass
class MarkovConfig:
    """Settings of `attnlife theory markov`; `text` switches to a character text instead of a chain."""

    vocab_size: int = 50        # V 50, Zipf 1.5, 20 000 steps: the searched setting that closes a
    zipf_exponent: float = 1.5  # cycle (docs/theory.md, "The search")
    degree: int = 4
    text: str | None = None
    seq_len: int = 64
    n_embd: int = 32
    init_std: float = 0.002
    attn_init_std: float | None = 0.2
    lr: float = 0.5
    steps: int = 20000
    batch_size: int = 32
    n_train_seqs: int = 4096
    top_tokens: int = 2
    log_every: int = 200
    log_points: int = 200
    residual: bool = True
    seed: int = 0


class OneLayerTransformer(nn.Module):
    """Embedding + learned positions, one causal attention head with residual, output projection.

    E, P and W_O start at N(0, init_std^2); W_Q, W_K, W_V at N(0, attn_init_std^2) (None: init_std).
    """

    def __init__(self, vocab_size: int, seq_len: int, n_embd: int, init_std: float, seed: int = 0,
                 attn_init_std: float | None = None, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        gen = torch.Generator().manual_seed(seed)
        attn_std = init_std if attn_init_std is None else attn_init_std

        def init(*shape: int, std: float = init_std) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=gen) * std)

        self.wte, self.wpe = init(vocab_size, n_embd), init(seq_len, n_embd)
        self.w_q, self.w_k = init(n_embd, n_embd, std=attn_std), init(n_embd, n_embd, std=attn_std)
        self.w_v = init(n_embd, n_embd, std=attn_std)
        self.w_o = init(vocab_size, n_embd)

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """idx [B, T] -> (logits [B, T, V], attention probabilities [B, T, T])."""
        t = idx.shape[1]
        h = self.wte[idx] + self.wpe[:t]
        scores = (h @ self.w_q.T) @ (h @ self.w_k.T).transpose(1, 2) / math.sqrt(h.shape[-1])
        causal = torch.ones(t, t, dtype=torch.bool, device=idx.device).tril()
        attn = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        out = attn @ (h @ self.w_v.T)
        return ((h + out) if self.residual else out) @ self.w_o.T, attn

    def attn_params(self) -> torch.Tensor:
        """W_Q, W_K, W_V flattened into one vector [3 D^2] (W_Q, W_K first)."""
        return torch.cat([self.w_q.reshape(-1), self.w_k.reshape(-1), self.w_v.reshape(-1)])


def stable_rank(weight: torch.Tensor) -> float:
    """||W||_F^2 / ||W||_2^2 (in [1, rank W])."""
    return float(measures.stable_rank(weight))


def focus_signals(attn: torch.Tensor, keys: torch.Tensor, top: torch.Tensor) -> dict[str, float]:
    """Attention mass on top-frequency keys and on the single most-attended key token.
    attn [B, T, T] causal rows; keys [B, T] ids; top [V] bool.

    focus = mean_{b,i} sum_{j<=i} a_bij 1[top(x_bj)]; uniform = same with a_bij = 1/(i+1);
    per token v: excess_v = mean_{b,i} sum_{j<=i} (a_bij - 1/(i+1)) 1[x_bj = v] (sums to 0 over v);
    token_excess_max = max_v excess_v, token_excess_argmax = its id (ids are frequency ranks);
    entropy_bits = mean_{b,i} -sum_j a_bij log2 a_bij.
    """
    is_top = top[keys].to(attn.dtype).unsqueeze(1)                     # [B, 1, T]
    t = attn.shape[-1]
    uniform = torch.ones(t, t, dtype=attn.dtype).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    focus = float((attn * is_top).sum(-1).mean())
    base = float((uniform * is_top).sum(-1).mean())
    onehot = F.one_hot(keys, top.numel()).to(attn.dtype)               # [B, T, V]
    excess = torch.einsum("bij,bjv->v", attn - uniform, onehot) / (attn.shape[0] * t)
    return {"attn_focus_mass": focus, "attn_focus_uniform": base, "attn_focus_excess": focus - base,
            "attn_token_excess_max": float(excess.max()), "attn_token_excess_argmax": float(excess.argmax()),
            "attn_entropy_bits": float(measures.entropy_bits(attn).mean())}


def _data(cfg: MarkovConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """(train sequences [N, T+1], eval sequences [256, T+1], frequencies [V], data record)."""
    if cfg.text is not None:
        corpus = load_text(cfg.text)
        train = text_windows(corpus, cfg.n_train_seqs, cfg.seq_len + 1, gen)
        held = text_windows(corpus, 256, cfg.seq_len + 1, gen)
        return train, held, corpus.freqs, {"source": str(cfg.text), "vocab": corpus.chars}
    pi = zipf_distribution(cfg.vocab_size, cfg.zipf_exponent)
    trans = reversible_chain(pi, cfg.degree, cfg.seed)
    train = sample_chain(trans, pi, cfg.n_train_seqs, cfg.seq_len + 1, gen)
    held = sample_chain(trans, pi, 256, cfg.seq_len + 1, gen)
    nonzero = int((trans > 0).sum() - (trans.diagonal() > 0).sum())
    return train, held, pi, {"source": "markov", "offdiag_nonzeros_per_row": nonzero / cfg.vocab_size}


def _validate(cfg: MarkovConfig) -> None:
    if cfg.text is None and (cfg.vocab_size < 3 or cfg.degree < 2):
        raise TheoryConfigError("--vocab-size must be >= 3 and --degree >= 2")
    sizes = (cfg.seq_len, cfg.n_embd, cfg.steps, cfg.batch_size, cfg.log_every, cfg.top_tokens, cfg.n_train_seqs)
    if min(sizes) < 1:
        raise TheoryConfigError("--seq-len, --n-embd, --steps, --batch-size, --log-every, --top-tokens, "
                                "--n-train-seqs must be >= 1")
    scales = [cfg.lr, cfg.init_std] + ([] if cfg.attn_init_std is None else [cfg.attn_init_std])
    if not all(math.isfinite(v) and v > 0 for v in scales):
        raise TheoryConfigError("--lr, --init-std and --attn-init-std must be finite numbers > 0")
    if not math.isfinite(cfg.zipf_exponent) or cfg.zipf_exponent < 0:
        raise TheoryConfigError(f"--zipf {cfg.zipf_exponent} must be a finite number >= 0")
    if cfg.log_points < 0:
        raise TheoryConfigError("--log-points must be >= 0")


def run_markov(cfg: MarkovConfig, out_dir: str | os.PathLike, quiet: bool = False) -> Path:
    """Train the one-layer model with SGD at rate `lr`; write RUN/run.json and RUN/metrics; return RUN."""
    _validate(cfg)
    with run_lock(out_dir, "theory markov", reenter=True):  # one writer per run directory
        return _run_markov(cfg, out_dir, quiet)


def _run_markov(cfg: MarkovConfig, out_dir: str | os.PathLike, quiet: bool = False) -> Path:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train, held, freqs, data_record = _data(cfg, gen)
    vocab = freqs.numel()
    top = torch.zeros(vocab, dtype=torch.bool)
    top[torch.argsort(freqs, descending=True)[: min(cfg.top_tokens, vocab)]] = True
    model = OneLayerTransformer(vocab, cfg.seq_len, cfg.n_embd, cfg.init_std, cfg.seed, cfg.attn_init_std,
                                cfg.residual)
    log_at = set(range(0, cfg.steps + 1, cfg.log_every)) | {cfg.steps}
    if cfg.log_points:
        log_at |= set(log_spaced_steps(cfg.steps, cfg.log_points))
    theta0 = model.attn_params().detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    out = Path(out_dir)
    write_run_json(out, {"kind": "theory-markov", "config": asdict(cfg), "seed": cfg.seed,
                         "dataset": data_record, "top_token_ids": top.nonzero().view(-1).tolist()})
    with MetricWriter(out) as writer, tqdm(total=cfg.steps, disable=quiet, desc="markov") as bar:
        for step in range(cfg.steps + 1):
            if step in log_at:
                _log(writer, step, model, held, top, theta0)
            if step == cfg.steps:
                break
            batch = train[torch.randint(train.shape[0], (cfg.batch_size,), generator=gen)]
            logits, _ = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
            if not torch.isfinite(loss):
                raise DivergenceError(f"theory markov run diverged at step {step}: the loss is "
                                      f"{float(loss.detach())}; lower --lr (now {cfg.lr:g}) or --init-std")
            opt.zero_grad()
            loss.backward()
            opt.step()
            writer.log(step + 1, "loss", float(loss.detach()))
            bar.update(1)
    return out


@torch.no_grad()
def _log(writer: MetricWriter, step: int, model: OneLayerTransformer, held: torch.Tensor,
         top: torch.Tensor, theta0: torch.Tensor) -> None:
    logits, attn = model(held[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), held[:, 1:].reshape(-1))
    writer.log(step, "loss", float(loss), split="val")
    writer.log(step, "stable_rank_embedding", stable_rank(model.wte))
    writer.log(step, "stable_rank_out_proj", stable_rank(model.w_o))
    theta = model.attn_params()
    writer.log(step, "attn_param_norm", float(theta.norm()), **HEAD)
    writer.log(step, "attn_param_rel_change", float((theta - theta0).norm() / theta0.norm()), **HEAD)
    n_qk = 2 * model.w_q.numel()
    qk_change = (theta[:n_qk] - theta0[:n_qk]).norm() / theta0[:n_qk].norm()
    writer.log(step, "attn_qk_rel_change", float(qk_change), **HEAD)
    for name, value in focus_signals(attn, held[:, :-1], top).items():
        writer.log(step, name, value, **HEAD)
