"""The run directory of an own training loop: its run.json, and refusing to mix two runs.

A `Tracker(run_dir=...)` in a user's loop writes `RUN/run.json` before its first row:
`{"config": {"model": {...}}, "tracker_run": {...}}`, where `config.model` holds the model's shape
when it can be read (attnlife `GPT`: its `GPTConfig`; Hugging Face: n_layer, n_head, n_embd,
vocab_size, block_size from the config, plus the full HF config under `hf_config`). That is
enough for `attnlife spectra` / `attnlife track` to accept the directory.

A directory that already holds a different run is refused (`RunDirError`, one line):
- run.json written by something else (`attnlife train`: no `tracker_run`), or
- run.json of a tracker run whose model config differs from this model's, or
- metric parts but no run.json.
A tracker run with the same model config is a resume of that run: rows of re-tracked steps
replace the old ones on read.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnlife.errors import RunDirError
from attnlife.store.layout import RunPaths
from attnlife.store.run_dir import Run, write_run_json

HF_SHAPE_KEYS = {"n_layer": ("n_layer", "num_hidden_layers"), "n_head": ("n_head", "num_attention_heads"),
                 "n_embd": ("n_embd", "hidden_size"), "vocab_size": ("vocab_size",),
                 "block_size": ("n_positions", "max_position_embeddings")}


def model_config_of(model: Any) -> tuple[dict, dict]:
    """(attnlife-style model config, full HF config or {}) of a model, {} parts when unreadable."""
    from attnlife.model.gpt import GPT

    found = model
    if model is None:
        return {}, {}
    if not isinstance(model, GPT) and hasattr(model, "modules"):
        found = next((m for m in model.modules() if isinstance(m, GPT)), model)
    if isinstance(found, GPT):
        return dict(found.config.to_dict()), {}
    cfg = getattr(found, "config", None)
    if cfg is None and hasattr(found, "modules"):
        cfg = next((getattr(m, "config", None) for m in found.modules()
                    if hasattr(getattr(m, "config", None), "to_dict")), None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        return {}, {}
    full = cfg.to_dict()
    shape = {k: full[next(n for n in names if n in full)] for k, names in HF_SHAPE_KEYS.items()
             if any(n in full for n in names)}
    return shape, json.loads(json.dumps(full, default=str))


def claim_run_dir(run_dir: Path, model: Any, tracker_settings: dict) -> bool:
    """Write or check RUN/run.json for an own-loop tracker run; True when the model config was
    recorded (so later calls can stop checking). Raises RunDirError for a different run."""
    paths = RunPaths(run_dir)
    shape, hf = model_config_of(model)
    if paths.run_json.is_file():
        old = Run(run_dir).record
        old_shape = old.get("config", {}).get("model", {})
        if "tracker_run" not in old:
            raise RunDirError(f"{run_dir} already holds a run not written by a Tracker (its run.json "
                              f"has no tracker_run); pass a new, empty run_dir")
        if shape and old_shape and old_shape != shape:
            raise RunDirError(f"{run_dir} already holds a tracker run of another model ({old_shape}); "
                              f"pass a new, empty run_dir (a resume must use the same model config)")
        if old_shape or not shape:
            return bool(old_shape)
    elif paths.metrics.is_dir() and any(paths.metrics.glob("part-*.parquet")):
        raise RunDirError(f"{run_dir} already holds metric rows but no run.json; pass a new, empty run_dir")
    record = {"config": {"model": shape}, "tracker_run": dict(tracker_settings)}
    if hf:
        record["hf_config"] = hf
    write_run_json(run_dir, record)
    return bool(shape)
