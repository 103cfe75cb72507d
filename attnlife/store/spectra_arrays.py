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
import torch

from attnlife.errors import CheckpointError
from attnlife.store.layout import RunPaths

MEETING_COLUMNS = ["model", "matrix", "layer", "head_index", "step", "rank", "gap_rel",
                   "overlap_stay", "overlap_swap", "label"]


def read_spectra_arrays(run_dir: str | os.PathLike, model: str, step: int) -> dict[str, torch.Tensor]:
    """The arrays of one checkpoint of series `model` (module docstring for names and shapes)."""
    from safetensors.torch import load_file

    path = RunPaths(Path(run_dir)).spectra_arrays(model, step)
    if not path.is_file():
        raise CheckpointError(f"no spectra arrays for {model} step {step} at {path}; run `attnlife spectra` first")
    return load_file(str(path))


def read_meetings(run_dir: str | os.PathLike) -> pd.DataFrame:
    """All near-meetings found so far (columns MEETING_COLUMNS); empty frame if none."""
    d = RunPaths(Path(run_dir)).spectra / "meetings"
    files = sorted(d.glob("*.parquet")) if d.is_dir() else []
    if not files:
        return pd.DataFrame({c: [] for c in MEETING_COLUMNS})
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
