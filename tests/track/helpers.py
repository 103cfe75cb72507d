"""Shared builders for the tracking tests: random causal patterns and float64 references."""
from __future__ import annotations

import math

import torch


def random_causal(B: int, H: int, T: int, seed: int = 0, dtype=torch.float32, sharp: float = 3.0) -> torch.Tensor:
    """Softmax of random scores under a causal mask: [B, H, T, T]."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, H, T, T, generator=g, dtype=torch.float64) * sharp
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1).to(dtype)


def reference_rows(p, threshold: float = 0.01) -> dict:
    """Loop-based float64 reference of every per-row metric and head-type score for one [T, T]
    pattern (lists per row; NaN where a row has no value)."""
    T = len(p)
    out = {k: [] for k in ("entropy_bits", "entropy_norm", "span_tokens", "mean_distance_tokens", "sink_mass",
                           "prev_token_score", "local_score", "self_score", "induction_score")}
    nan, n = float("nan"), T // 2
    for i in range(T):
        out["prev_token_score"].append(float(p[i][i - 1]) if i >= 1 else nan)
        out["local_score"].append(sum(float(p[i][j]) for j in range(max(0, i - 3), i + 1)) if i >= 3 else nan)
        out["self_score"].append(float(p[i][i]) if i >= 1 else nan)
        out["induction_score"].append(float(p[i][i - n + 1]) if i >= n else nan)
        row = [float(p[i][j]) for j in range(i + 1)]
        h = -sum(a * math.log2(a) for a in row if a > 0)
        out["entropy_bits"].append(h)
        out["entropy_norm"].append(h / math.log2(i + 1) if i > 0 else float("nan"))
        kept = [abs(i - j) for j, a in enumerate(row) if a > threshold]
        out["span_tokens"].append(sum(kept) / len(kept) if kept else float("nan"))
        out["mean_distance_tokens"].append(sum(a * abs(i - j) for j, a in enumerate(row)))
        out["sink_mass"].append(row[0] if i > 0 else float("nan"))  # rows i >= 1
    return out


def reference_jsd(p, q) -> float:
    """float64 loop JSD in bits between two distributions."""
    def h(x):
        return -sum(a * math.log2(a) for a in x if a > 0)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return h(m) - (h(p) + h(q)) / 2


def tiny_gpt():
    """A seeded 2-layer, 2-head attnlife GPT over 32 tokens, block 16."""
    from attnlife.model.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=2, n_head=2, n_embd=16))


def gpt_lightning_module():
    """A LightningModule training `tiny_gpt` on dict batches (input_ids, labels); logs val_loss."""
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.gpt = tiny_gpt()

        def training_step(self, batch, batch_idx):
            return self.gpt(batch["input_ids"], batch["labels"])[1]

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.gpt(batch["input_ids"], batch["labels"])[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    return Module()
