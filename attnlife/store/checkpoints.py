"""Checkpoint series on disk: `RUN/checkpoints/step_XXXXXXX/{model.safetensors, meta.json}`.

Each checkpoint directory is written to a temp directory and renamed into place whole, so a
listed checkpoint is always complete. Tied weights (`lm_head.weight` == `transformer.wte.weight`)
are stored once. The optional trainer state (optimizer and RNG state for exact resume) is stored
without pickle: `trainer_state.json` (the tree) + `trainer_state.safetensors` (its tensors), see
`attnlife.store.safe_state`, so no file a checkpoint holds can run code when read. Damaged files
raise a one-line CheckpointError.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from safetensors.torch import load_file, save_file

from attnlife.errors import CheckpointError
from attnlife.store.atomic import atomic_dir, clean_temp_files
from attnlife.store.layout import RunPaths, list_checkpoints
from attnlife.store.safe_state import StateFormatError, decode_state, encode_state

MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
TRAINER_STATE_FILE = "trainer_state.json"
TRAINER_TENSORS_FILE = "trainer_state.safetensors"
TRAINER_STATE_FILES = (TRAINER_STATE_FILE, TRAINER_TENSORS_FILE)
TIED_KEYS = {"lm_head.weight": "transformer.wte.weight"}


def save_checkpoint(run_dir: str | os.PathLike, step: int, state_dict: Mapping[str, torch.Tensor],
                    meta: Mapping, trainer_state: Optional[Mapping] = None) -> Path:
    """Write the checkpoint at `step` atomically; returns its directory.

    `meta` must be JSON-serialisable (step, losses, config, ...); `trainer_state` (optimizer,
    RNG states, data position: tensors, arrays, numbers, strings, lists, tuples, dicts) is stored
    as JSON + safetensors for resume. Stale temp folders of killed writers are removed first.
    """
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()
               if not (k in TIED_KEYS and TIED_KEYS[k] in state_dict)}
    final = RunPaths(Path(run_dir)).checkpoint(step)
    clean_temp_files(final.parent)
    with atomic_dir(final) as tmp:
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"step": str(int(step))})
        (tmp / META_FILE).write_text(json.dumps(dict(meta, step=int(step)), indent=2, default=str))
        if trainer_state is not None:
            tree, state_tensors = encode_state(dict(trainer_state))
            save_file(state_tensors, str(tmp / TRAINER_TENSORS_FILE))
            (tmp / TRAINER_STATE_FILE).write_text(json.dumps(tree))
    return final


def remove_trainer_state(checkpoint_dir: str | os.PathLike) -> None:
    """Delete a checkpoint's trainer state (every format), keeping its weights and meta."""
    for name in TRAINER_STATE_FILES:
        (Path(checkpoint_dir) / name).unlink(missing_ok=True)


def load_state_dict(checkpoint_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model tensors of a checkpoint, with tied keys restored (lm_head.weight)."""
    path = Path(checkpoint_dir) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no {MODEL_FILE} in {checkpoint_dir}; pass a checkpoints/step_* directory")
    state = _read_safetensors(path)
    for tied, source in TIED_KEYS.items():
        if tied not in state and source in state:
            state[tied] = state[source]
    return state


def load_meta(checkpoint_dir: str | os.PathLike) -> dict:
    """The checkpoint's meta.json as a dict."""
    path = Path(checkpoint_dir) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"no {META_FILE} in {checkpoint_dir}; the checkpoint is incomplete")
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a JSON object; the checkpoint is damaged")
    return meta


def load_trainer_state(checkpoint_dir: str | os.PathLike) -> Optional[dict]:
    """The trainer state of a checkpoint, or None if it was saved without one.

    Reads `trainer_state.json` + `.safetensors` (no unpickling); CheckpointError when they are
    damaged.
    """
    folder = Path(checkpoint_dir)
    tree_path = folder / TRAINER_STATE_FILE
    if tree_path.is_file():
        tensors_path = folder / TRAINER_TENSORS_FILE
        if not tensors_path.is_file():
            raise CheckpointError(f"{tree_path} has no {TRAINER_TENSORS_FILE} beside it; the "
                                  f"checkpoint is damaged, resume is impossible from it")
        try:
            state = decode_state(_read_json(tree_path), _read_safetensors(tensors_path))
        except StateFormatError as err:
            raise CheckpointError(f"{tree_path} is damaged ({err}); resume is impossible from "
                                  f"this checkpoint") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{tree_path} does not hold a trainer state; it is damaged")
        return state
    return None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own (Rust) error types
        if isinstance(err, MemoryError):
            raise
        raise CheckpointError(f"cannot read {path} ({_first_line(err)}); the file is truncated or "
                              f"damaged: delete that checkpoint folder or restore it") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read {path} ({_first_line(err)}); the file is truncated "
                              f"or damaged: delete that checkpoint folder or restore it") from None


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    text = lines[0] if lines else type(err).__name__
    return text[:200]


def latest_checkpoint(run_dir: str | os.PathLike) -> Optional[tuple[int, Path]]:
    """(step, directory) of the newest complete checkpoint, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None
