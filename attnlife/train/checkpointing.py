"""Writing the checkpoint series of a run and reading back the state to resume it.

Disk layout per checkpoint (see `attnlife.store.checkpoints`): `model.safetensors`, `meta.json`
and, **in the newest checkpoint only**, the trainer state `trainer_state.json` +
`trainer_state.safetensors` (optimizer moments, torch / CUDA / numpy / python RNG states and the
batch samplers' generator states of every rank, step; no pickle). When a new checkpoint is in
place the previous one's trainer state is deleted: the optimizer
state is twice the model size, and only the newest one is ever needed to resume. Retention
(`ckpt_keep`) then deletes whole checkpoints, see `checkpoint_series.steps_to_remove`.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from attnlife.errors import CheckpointError
from attnlife.store.checkpoints import (TRAINER_STATE_FILE, load_meta, load_trainer_state,
                                        remove_trainer_state, save_checkpoint)
from attnlife.store.layout import list_checkpoints
from attnlife.train.checkpoint_series import steps_to_remove


def capture_rng_state(device: str) -> dict[str, Any]:
    """The process's RNG states: torch CPU, CUDA (this device, if used), numpy, python `random`."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)  # this rank's device only
    return state


def restore_rng_state(state: Mapping[str, Any], device: str) -> None:
    """Inverse of `capture_rng_state` (the CUDA state goes to `device`)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda"], device)


def write_series_checkpoint(run_dir: Path, step: int, state_dict: Mapping[str, torch.Tensor],
                            meta: Mapping[str, Any], trainer_state: Mapping[str, Any],
                            retention: Mapping[str, int]) -> Path:
    """Save checkpoint `step` with its trainer state, strip older trainer states, apply retention.

    `retention` holds ckpt_keep, ckpt_log_max and ckpt_every. Older checkpoints written only
    to resume after a signal (meta `resume_only`, outside the series) are deleted. Returns the
    checkpoint directory.
    """
    path = save_checkpoint(run_dir, step, state_dict, meta, trainer_state=trainer_state)
    existing = list_checkpoints(run_dir)
    for s, older in existing:
        if s != step:
            remove_trainer_state(older)
            if _resume_only(older):
                shutil.rmtree(older, ignore_errors=True)
    existing = list_checkpoints(run_dir)
    doomed = steps_to_remove([s for s, _ in existing], retention["ckpt_keep"],
                             retention["ckpt_log_max"], retention["ckpt_every"])
    by_step = dict(existing)
    for s in doomed:
        if s != step:
            shutil.rmtree(by_step[s], ignore_errors=True)
    return path


def _resume_only(checkpoint_dir: Path) -> bool:
    try:
        return bool(load_meta(checkpoint_dir).get("resume_only", False))
    except CheckpointError:
        return False


def resume_point(run_dir: Path) -> Optional[tuple[int, Path, dict]]:
    """(step, directory, trainer_state) of the newest checkpoint, or None if the run has none.

    Raises CheckpointError when the newest checkpoint has no trainer state to resume from.
    """
    found = list_checkpoints(run_dir)
    if not found:
        return None
    step, path = found[-1]
    state = load_trainer_state(path)
    if state is None:
        raise CheckpointError(f"newest checkpoint {path} has no {TRAINER_STATE_FILE} to resume "
                              f"from; pass a new --out directory to start a fresh run")
    return step, path, state
