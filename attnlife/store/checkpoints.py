"""Checkpoint series on disk: `RUN/checkpoints/step_XXXXXXX/{model.safetensors, meta.json}`.

Each checkpoint directory is written to a temp directory and renamed into place whole, so a
listed checkpoint is always complete. Tied weights (`lm_head.weight` == `transformer.wte.weight`)
are stored once. Optional `trainer_state.pt` holds optimizer and RNG state for exact resume.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional

import torch
from safetensors.torch import load_file, save_file

from attnlife.errors import CheckpointError
from attnlife.store.atomic import atomic_dir
from attnlife.store.run_dir import RunPaths, list_checkpoints

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
TRAINER_STATE_FILE = "trainer_state.pt"
TIED_KEYS = {"lm_head.weight": "transformer.wte.weight"}


def save_checkpoint(run_dir: str | os.PathLike, step: int, state_dict: Mapping[str, torch.Tensor],
                    meta: Mapping, trainer_state: Optional[Mapping] = None) -> Path:
    """Write the checkpoint at `step` atomically; returns its directory.

    `meta` must be JSON-serialisable (step, losses, config, ...); `trainer_state` (optimizer,
    RNG states, data position) is pickled with torch.save for resume.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()
               if not (k in TIED_KEYS and TIED_KEYS[k] in state_dict)}
    final = RunPaths(Path(run_dir)).checkpoint(step)
    with atomic_dir(final) as tmp:
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"step": str(int(step))})
        (tmp / META_FILE).write_text(json.dumps(dict(meta, step=int(step)), indent=2, default=str))
        if trainer_state is not None:
            torch.save(dict(trainer_state), tmp / TRAINER_STATE_FILE)
    return final


def load_state_dict(checkpoint_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint, with tied keys restored (lm_head.weight)."""
    path = Path(checkpoint_dir) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no {MODEL_FILE} in {checkpoint_dir}; pass a checkpoints/step_* directory")
    state = load_file(str(path))
    for tied, source in TIED_KEYS.items():
        if tied not in state and source in state:
            state[tied] = state[source]
    return state


def load_meta(checkpoint_dir: str | os.PathLike) -> dict:
    """The checkpoint's meta.json as a dict."""
    path = Path(checkpoint_dir) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"no {META_FILE} in {checkpoint_dir}; the checkpoint is incomplete")
    return json.loads(path.read_text())


def load_trainer_state(checkpoint_dir: str | os.PathLike) -> Optional[dict]:
    """The pickled trainer state of a checkpoint, or None if it was saved without one."""
    path = Path(checkpoint_dir) / TRAINER_STATE_FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def latest_checkpoint(run_dir: str | os.PathLike) -> Optional[tuple[int, Path]]:
    """(step, directory) of the newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None
