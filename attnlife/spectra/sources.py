"""Checkpoint series for the spectra sweep: the series itself lives in `attnlife.model.series`
(shared with the attention probe pass); this module adds the per-architecture weight layout.

`open_weights(ref)` returns the architecture and a lazy tensor getter, so only the attention
weights are read from disk (safetensors are opened with `safe_open`).
"""
from __future__ import annotations

from typing import Callable

import torch

from attnlife.model.series import (CheckpointRef, SeriesSourceError, hf_config, hf_series,
                                   nanogpt_series, open_state, run_series)
from attnlife.spectra.layouts import ArchSpec, spec_from_gpt_config, spec_from_hf_config

SpectraSourceError = SeriesSourceError  # the name spectra callers and tests know

__all__ = ["CheckpointRef", "SpectraSourceError", "hf_series", "nanogpt_series", "open_weights",
           "run_series"]


def open_weights(ref: CheckpointRef) -> tuple[ArchSpec, Callable[[str], torch.Tensor], set[str]]:
    """(architecture, name -> tensor getter, available names) of one checkpoint."""
    if ref.kind == "hf":
        spec = spec_from_hf_config(hf_config(ref))
    elif ref.kind in ("run", "nanogpt"):
        spec = spec_from_gpt_config(ref.config, "attnlife" if ref.kind == "run" else "nanogpt")
    else:
        raise SeriesSourceError(f"unknown checkpoint kind '{ref.kind}'")
    get, keys = open_state(ref)
    return spec, get, keys
