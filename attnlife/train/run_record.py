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

from attnlife.config import RunConfig, validate_values
from attnlife.errors import ProvenanceError

_META_VALUE_MAX_CHARS = 4096


def validate_config(config: RunConfig) -> None:
    """Raise ConfigError naming the first non-finite or out-of-range training or model value
    (the ranges of the config fields' metadata, `attnlife.config.FIELD_RANGES`)."""
    validate_values(config)


def run_record(config: RunConfig, data: Any, info: Any, device: str, dtype: torch.dtype,
               model: torch.nn.Module) -> dict:
    """The run.json body for a run of `config` on dataset `data` (a PreparedDataset)."""
    return {"config": config.to_dict(), "dataset": dataset_record(config, data), "seed": config.train.seed,
            "world_size": info.world_size, "device": device, "dtype": str(dtype).replace("torch.", ""),
            "n_params": int(sum(p.numel() for p in model.parameters()))}


def dataset_record(config: RunConfig, data: Any) -> dict:
    """run.json's `dataset`: name, absolute data_dir, vocab_size, split sizes in tokens and the
    small entries of the dataset's meta.json (source sha256, itos, ...)."""
    splits = {name: int(len(ids)) for name, ids in data.splits.items() if ids is not None}
    return {"name": config.data.dataset, "data_dir": str(Path(config.data.data_dir).resolve()),
            "vocab_size": int(data.vocab_size), "split_tokens": splits,
            "meta": _small_entries(dict(data.meta))}


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


def dataset_fingerprint(dataset: dict) -> dict:
    """What identifies a run's training data in its run.json `dataset` entry: the dataset name,
    the source file's sha256, the vocabulary size and the vocabulary itself (itos)."""
    meta = dataset.get("meta", {}) or {}
    return {"name": dataset.get("name"), "source sha256": (meta.get("source") or {}).get("sha256"),
            "vocab_size": dataset.get("vocab_size"), "vocabulary": meta.get("itos")}


RESUME_FIX = ("re-prepare the original data, pass a new --out, or pass --allow-data-change to "
              "continue on the new data")


def check_same_dataset(recorded: dict, current: dict, allow_change: bool = False, *,
                       keys: tuple[str, ...] = ("name", "source sha256", "vocab_size", "vocabulary"),
                       fix: str = RESUME_FIX) -> None:
    """Raise ProvenanceError when `current` (a run_record `dataset`) is not the data `recorded`
    in run.json (the `keys` of `dataset_fingerprint`); fields missing on either side are not
    compared. `allow_change` accepts the change (run.json then records it in its segments);
    `fix` ends the message."""
    before, after = dataset_fingerprint(recorded), dataset_fingerprint(current)
    differ = [k for k in keys if before[k] is not None and after[k] is not None
              and before[k] != after[k]]
    if not differ or allow_change:
        return
    key = differ[0]
    old, new = before[key], after[key]
    if key == "source sha256":
        change = f"source sha256 {old[:12]}... -> {new[:12]}..."
    elif key == "vocabulary":
        i = next((j for j, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
        pair = [repr(v[i]) if i < len(v) else "none" for v in (old, new)]
        change = f"vocabulary of {len(old)} -> {len(new)} symbols, id {i}: {pair[0]} -> {pair[1]}"
    else:
        change = f"{key} {old} -> {new}"
    raise ProvenanceError(f"the dataset changed since this run was trained ({change}); {fix}")
