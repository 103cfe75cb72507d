"""Readers of the spectra sweep's arrays and near-meetings (`attnlife spectra` writes them).

  spectra/arrays/<model>/step_XXXXXXX.safetensors   per checkpoint (the sweep's done marker):
      '{qk,ov}.lambda' [L, H, K] float64, '{qk,ov}.{u,v}_top' [L, H, k, D] float32,
      '{qk,ov}.elem_hist' [L, H, bins + 2] counts on 'elem_hist_edges_sigma' [bins + 3]
  spectra/meetings/<model>.parquet                  near-meetings (MEETING_COLUMNS)
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import torch

from attnlife.errors import CheckpointError
from attnlife.store.damage import first_line, warn_damaged
from attnlife.store.layout import RunPaths

MEETING_COLUMNS = ["model", "matrix", "layer", "head_index", "step", "rank", "gap_rel",
                   "overlap_stay", "overlap_swap", "label"]


def read_spectra_arrays(run_dir: str | os.PathLike, model: str, step: int) -> dict[str, torch.Tensor]:
    """The arrays of one checkpoint of series `model` (module docstring for names and shapes)."""
    from safetensors.torch import load_file

    path = RunPaths(Path(run_dir)).spectra_arrays(model, step)
    if not path.is_file():
        raise CheckpointError(f"no spectra arrays for {model} step {step} at {path}; run `attnlife spectra` first")
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own (Rust) error types
        if isinstance(err, MemoryError):
            raise
        raise DamagedArraysError(f"{path} is damaged ({first_line(err)}); `attnlife spectra "
                                 f"{run_dir} --force` rebuilds it") from None


class DamagedArraysError(CheckpointError):
    """A spectra arrays file cannot be read (truncated or not safetensors)."""


def read_meetings(run_dir: str | os.PathLike) -> pd.DataFrame:
    """All near-meetings found so far (columns MEETING_COLUMNS); empty frame if none. A damaged
    file is left out with one DamagedFileWarning naming it."""
    d = RunPaths(Path(run_dir)).spectra / "meetings"
    files = sorted(d.glob("*.parquet")) if d.is_dir() else []
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as err:
            warn_damaged(f, first_line(err), f"skipped; `attnlife spectra {run_dir}` rebuilds it")
    if not frames:
        return pd.DataFrame({c: [] for c in MEETING_COLUMNS})
    return pd.concat(frames, ignore_index=True)
