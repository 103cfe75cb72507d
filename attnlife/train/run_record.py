"""Checks on a training config and the `run.json` record a training run writes.

run.json (via `attnlife.store.run_dir.write_run_json`) holds: `config` (RunConfig.to_dict()),
`dataset` (name, absolute data_dir, vocab_size, split sizes in tokens, the small entries of the
dataset's meta.json), `seed`, `world_size`, `device`, `dtype`, `n_params`, plus the environment.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from attnlife.config import RunConfig
from attnlife.errors import ConfigError

_META_VALUE_MAX_CHARS = 4096


def validate_config(config: RunConfig) -> None:
    """Raise ConfigError naming the first out-of-range training or model value."""
    tc, m = config.train, config.model
    positive = {"train.batch_size": tc.batch_size, "train.eval_interval": tc.eval_interval,
                "train.eval_iters": tc.eval_iters,
                "train.gradient_accumulation_steps": tc.gradient_accumulation_steps,
                "model.block_size": m.block_size, "model.n_layer": m.n_layer,
                "model.n_head": m.n_head, "model.n_embd": m.n_embd}
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name} = {value} must be >= 1; set it with --set {name}=N")
    non_negative = {"train.max_iters": tc.max_iters, "train.warmup_iters": tc.warmup_iters,
                    "train.ckpt_every": tc.ckpt_every, "train.ckpt_keep": tc.ckpt_keep,
                    "train.ckpt_log_max": tc.ckpt_log_max, "train.learning_rate": tc.learning_rate,
                    "train.min_lr": tc.min_lr, "train.grad_clip": tc.grad_clip}
    for name, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{name} = {value} must be >= 0; set it with --set {name}=VALUE")
    if m.n_embd % m.n_head:
        raise ConfigError(f"model.n_embd = {m.n_embd} is not divisible by model.n_head = "
                          f"{m.n_head}; change one of them")
    if not 0.0 <= m.dropout < 1.0:
        raise ConfigError(f"model.dropout = {m.dropout} must be in [0, 1)")


def run_record(config: RunConfig, data: Any, info: Any, device: str, dtype: torch.dtype,
               model: torch.nn.Module) -> dict:
    """The run.json body for a run of `config` on dataset `data` (a PreparedDataset)."""
    splits = {name: int(len(ids)) for name, ids in data.splits.items() if ids is not None}
    dataset = {"name": config.data.dataset,
               "data_dir": str(Path(config.data.data_dir).resolve()),
               "vocab_size": int(data.vocab_size), "split_tokens": splits,
               "meta": _small_entries(dict(data.meta))}
    return {"config": config.to_dict(), "dataset": dataset, "seed": config.train.seed,
            "world_size": info.world_size, "device": device, "dtype": str(dtype).replace("torch.", ""),
            "n_params": int(sum(p.numel() for p in model.parameters()))}


def _small_entries(meta: dict) -> dict:
    out = {}
    for key, value in meta.items():
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            continue
        if len(text) <= _META_VALUE_MAX_CHARS:
            out[key] = value
    return out
