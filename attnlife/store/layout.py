"""Where everything lives inside a run directory: paths and checkpoint naming, nothing else.

```
RUN/
  run.json                   config, dataset, seed, versions, git commit, resume segments
  .attnlife.lock             while a writer runs: its pid, host, start time (attnlife.store.lock)
  metrics/part-*.parquet     tidy metric table (step, split, layer, head_index, layer_b, metric,
                             value, stderr)
  checkpoints/step_XXXXXXX/  model.safetensors + meta.json (+ trainer_state.json/.safetensors:
                             optimizer and RNG state for resume, newest checkpoint only)
  snapshots/<name>/step_XXXXXXX.npz   sampled attention patterns (fp16, delta-encoded)
  probe/                     the fixed probe set of the post-hoc probe pass and its done markers
  spectra/part-*.parquet     per-head weight statistics (model, step, layer, head_index, matrix,
                             stat, value)
  spectra/arrays/<model>/step_XXXXXXX.safetensors   eigenvalues, top vectors, element histograms
  spectra/meetings/<model>.parquet                  eigenvalue near-meetings
  sweep/part-*.parquet       scan-and-snap sweep values, grid parameters as columns
  analysis/                  Parquet analysis tables + summary.json + claims.{csv,md}
  report/                    figures (png/pdf/svg) and dashboard.html
```
Temporary entries `.tmp-<name>~<host>~<pid>~<random>` belong to a writer in progress (or killed:
removed once stale, see attnlife.store.atomic). Every other store module takes its paths from
here, so this module imports nothing of attnlife.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RUN_JSON = "run.json"
CHECKPOINT_PREFIX = "step_"
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint at `step`: `step_` + 7-digit zero-padded step."""
    return f"{CHECKPOINT_PREFIX}{int(step):07d}"


def model_dirname(model: str) -> str:
    """Filesystem-safe series name, always one path component inside its folder:
    'EleutherAI/pythia-160m' -> 'EleutherAI--pythia-160m'; '', '.', '..' (and names of dots) get
    a `_` prefix so a path built from them never leaves the folder it is joined to."""
    name = model.replace("/", "--").replace("\\", "--").replace("\0", "")
    return name if name.strip(".") else f"_{name}"


@dataclass(frozen=True)
class RunPaths:
    """Paths inside one run directory (nothing is created by constructing it)."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / RUN_JSON

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def probe(self) -> Path:
        return self.root / "probe"

    @property
    def spectra(self) -> Path:
        return self.root / "spectra"

    @property
    def sweep(self) -> Path:
        return self.root / "sweep"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def spectra_arrays(self, model: str, step: int) -> Path:
        """spectra/arrays/<model>/step_XXXXXXX.safetensors of one checkpoint of series `model`."""
        return self.spectra / "arrays" / model_dirname(model) / f"{checkpoint_name(step)}.safetensors"

    def meetings(self, model: str) -> Path:
        """spectra/meetings/<model>.parquet: the eigenvalue near-meetings of series `model`."""
        return self.spectra / "meetings" / f"{model_dirname(model)}.parquet"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, directory), ascending by step.

    A checkpoint is complete when its directory holds both `model.safetensors` and `meta.json`
    (checkpoint directories are renamed into place whole, so partial ones never appear).
    """
    ckdir = RunPaths(Path(run_dir)).checkpoints
    found = []
    if ckdir.is_dir():
        for d in ckdir.iterdir():
            if d.is_dir() and d.name.startswith(CHECKPOINT_PREFIX):
                if (d / MODEL_FILE).is_file() and (d / META_FILE).is_file():
                    try:
                        found.append((int(d.name[len(CHECKPOINT_PREFIX):]), d))
                    except ValueError:
                        continue
    return sorted(found)
