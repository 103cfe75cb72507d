"""The run directory: the one on-disk format every part of attnlife reads and writes.

```
RUN/
  run.json                   config, dataset, seed, versions, git commit, start time
  metrics/part-*.parquet     tidy metric table (step, split, layer, head_index, layer_b, metric,
                             value, stderr)
  checkpoints/step_XXXXXXX/  model.safetensors + meta.json (+ optimizer state for resume)
  snapshots/                 sampled attention patterns (fp16, delta-encoded)
  spectra/part-*.parquet     per-head weight statistics (model, step, layer, head_index, matrix, stat, value)
  analysis/  report/
```
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from attnlife.errors import RunDirError
from attnlife.store.atomic import write_json_atomic
from attnlife.store import metrics_table
from attnlife.store.metrics_table import read_metrics
from attnlife.store.part_table import SPECTRA_SCHEMA, read_table

RUN_JSON = "run.json"
CHECKPOINT_PREFIX = "step_"


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint at `step`: `step_` + 7-digit zero-padded step."""
    return f"{CHECKPOINT_PREFIX}{int(step):07d}"


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
    def spectra(self) -> Path:
        return self.root / "spectra"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)


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
                if (d / "model.safetensors").is_file() and (d / "meta.json").is_file():
                    try:
                        found.append((int(d.name[len(CHECKPOINT_PREFIX):]), d))
                    except ValueError:
                        continue
    return sorted(found)


def environment_record() -> dict:
    """Versions and provenance stored in run.json: python, torch, attnlife, git commit, host."""
    import attnlife

    record = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "attnlife": attnlife.__version__,
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    try:
        import torch

        record["torch"] = torch.__version__
    except ImportError:  # pragma: no cover - torch is required in practice
        record["torch"] = None
    return record


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_json(run_dir: str | os.PathLike, record: dict) -> Path:
    """Write `record` (config, dataset, seed, ...) plus the environment to RUN/run.json atomically.

    An existing run.json keeps its original `start_time` (a resumed run is the same run) and
    gains a `resumed_at` list entry.
    """
    paths = RunPaths(Path(run_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    env = environment_record()
    merged = dict(record)
    merged["environment"] = env
    if paths.run_json.is_file():
        old = json.loads(paths.run_json.read_text())
        merged["environment"]["start_time"] = old.get("environment", {}).get("start_time", env["start_time"])
        merged["resumed_at"] = list(old.get("resumed_at", [])) + [env["start_time"]]
    return write_json_atomic(paths.run_json, merged)


class Run:
    """Read access to one run directory; every table comes back as a pandas DataFrame."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.paths = RunPaths(Path(root))
        if not self.paths.root.is_dir():
            raise RunDirError(f"run directory {self.paths.root} does not exist; pass the --out "
                              f"directory of a finished or running `attnlife train`")

    @property
    def root(self) -> Path:
        return self.paths.root

    @property
    def record(self) -> dict:
        """The parsed run.json ({} if the run has none yet)."""
        p = self.paths.run_json
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def config(self) -> dict:
        """The run's configuration as stored in run.json under `config`."""
        return self.record.get("config", {})

    def metrics(self) -> pd.DataFrame:
        """The tidy metric table: step, split, layer, head_index, layer_b, metric, value, stderr."""
        return read_metrics(self.root)

    def per_head(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Per-head rows: step, split, layer, head_index, metric, value, stderr."""
        return metrics_table.per_head(self.metrics(), metric, split)

    def per_layer(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Layer-level rows: step, split, layer, metric, value, stderr."""
        return metrics_table.per_layer(self.metrics(), metric, split)

    def cross_layer(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Cross-layer pair rows: step, split, layer, layer_b, metric, value, stderr."""
        return metrics_table.cross_layer(self.metrics(), metric, split)

    def model_level(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Model-level rows (loss, lr, ...): step, split, metric, value, stderr."""
        return metrics_table.model_level(self.metrics(), metric, split)

    def spectra(self) -> pd.DataFrame:
        """Per-head weight statistics: model, step, layer, head_index, matrix, stat, value."""
        return read_table(self.paths.spectra, SPECTRA_SCHEMA)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, directory), ascending."""
        return list_checkpoints(self.root)

    def snapshots(self):  # noqa: ANN201 - attnlife.store.snapshots.SnapshotStore
        """The run's attention snapshots (`.names()`, `.steps(name)`, `.read(name, step)` -> fp16)."""
        from attnlife.store.snapshots import SnapshotStore

        return SnapshotStore(self.root)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"


def load_run(path: str | os.PathLike) -> Run:
    """Open the run directory at `path` for reading (`load_run(p).metrics()` etc.)."""
    return Run(path)
