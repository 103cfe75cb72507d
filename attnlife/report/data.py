"""What the figures read: one run directory through the store's readers, loaded once and cached.

`ReportRun(path)` wraps `attnlife.load_run(path)`; every accessor returns numbers exactly as the
store holds them (nothing is recomputed from raw weights or patterns) and raises `MissingData`,
whose message names the command that writes the data, when they are absent.

Shapes: per-head cubes are [S, L, H] (S steps ascending, L layers, H heads) with NaN where a head
has no row; histograms are [S, L, H, B] counts on B + 1 edges in units of sigma.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from attnlife.store.run_dir import Run, load_run

ATTENTION_SPLITS = ("probe", "train")  # the post-hoc probe pass first, then the tracker


class MissingData(Exception):
    """A figure's data is absent; the message says which command produces it."""


def cube(frame: pd.DataFrame, value: str = "value") -> tuple[np.ndarray, np.ndarray]:
    """(steps [S], values [S, L, H]) from rows with columns step, layer, head_index, `value`."""
    steps = np.sort(frame["step"].unique())
    n_layer = int(frame["layer"].max()) + 1
    n_head = int(frame["head_index"].max()) + 1
    out = np.full((len(steps), n_layer, n_head), np.nan)
    s_idx = np.searchsorted(steps, frame["step"].to_numpy())
    out[s_idx, frame["layer"].to_numpy(int), frame["head_index"].to_numpy(int)] = frame[value].to_numpy(float)
    return steps, out


class ReportRun:
    """Cached read access to one run for the figures (see module docstring)."""

    def __init__(self, path: str | os.PathLike, heads: list[tuple[int, int]] | None = None,
                 group: str | None = None) -> None:
        self.run: Run = load_run(path)
        self.heads = heads  # exemplar heads chosen by the user (`--heads`), else automatic
        self.group = group  # a caller-given group label (runs sharing it are seeds of one line)

    @property
    def root(self) -> Path:
        return self.run.root

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def kind(self) -> str:
        """run.json `kind` ('' for training runs and spectra-only directories)."""
        return str(self.run.record.get("kind", ""))

    @property
    def dataset(self) -> str:
        """Dataset name from run.json (config.data.dataset), else the run's name."""
        cfg = self.run.config
        data = cfg.get("data", {}) if isinstance(cfg, dict) else {}
        return str(data.get("dataset") or self.run.record.get("dataset", {}).get("name") or self.name)

    @property
    def seed(self) -> int | None:
        seed = self.run.config.get("train", {}).get("seed", self.run.record.get("seed"))
        return None if seed is None else int(seed)

    def config_key(self) -> str:
        """The run's config without seed and output paths: runs sharing it are seeds of one config."""
        import json

        cfg = {k: v for k, v in self.run.config.items() if k not in ("out_dir",)}
        train = {k: v for k, v in cfg.get("train", {}).items() if k != "seed"}
        cfg["train"] = train
        data = {k: v for k, v in cfg.get("data", {}).items() if k != "data_dir"}
        cfg["data"] = data
        return json.dumps(cfg, sort_keys=True, default=str)

    # ---- metric table -------------------------------------------------------------------
    @functools.cached_property
    def metrics(self) -> pd.DataFrame:
        return self.run.metrics()

    def model_series(self, metric: str, split: str) -> pd.DataFrame:
        """Model-level rows (step, value, stderr) of one metric and split, ascending by step."""
        m = self.metrics
        rows = m[(m.metric == metric) & (m.split == split) & (m.layer == -1) & (m.head_index == -1)]
        return rows[["step", "value", "stderr"]].sort_values("step").reset_index(drop=True)

    def head_rows(self, metric: str) -> pd.DataFrame:
        """Per-head rows of an attention metric from the first split that has them (probe, train)."""
        m = self.metrics
        for split in ATTENTION_SPLITS:
            rows = m[(m.metric == metric) & (m.split == split) & (m.layer >= 0) & (m.head_index >= 0)
                     & (m.layer_b < 0)]
            if len(rows):
                return rows
        raise MissingData(f"no per-head {metric!r} rows; run `attnlife train` with tracking on, "
                          f"or `attnlife track {self.root}`")

    def head_cube(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps [S], values [S, L, H]) of a per-head attention metric."""
        return cube(self.head_rows(metric))

    def attention_metrics(self) -> list[str]:
        """Names of per-head attention metrics present (any split)."""
        m = self.metrics
        rows = m[(m.layer >= 0) & (m.head_index >= 0) & (m.layer_b < 0) & m.split.isin(ATTENTION_SPLITS)]
        return sorted(x for x in rows.metric.unique() if not x.startswith("alert_"))  # alerts: events

    # ---- spectra ---------------------------------------------------------------------------
    @functools.cached_property
    def spectra(self) -> pd.DataFrame:
        return self.run.spectra()

    @property
    def spectra_model(self) -> str:
        """The series name in the spectra table (the first, when several were swept here)."""
        models = sorted(self.spectra["model"].unique())
        if not models:
            raise MissingData(f"no weight spectra; run `attnlife spectra {self.root}`")
        return models[0]

    def weight_cube(self, stat: str, matrix: str = "qk") -> tuple[np.ndarray, np.ndarray]:
        """(steps [S], values [S, L, H]) of a per-head weight statistic of `matrix`."""
        s = self.spectra
        rows = s[(s.model == self.spectra_model) & (s.matrix == matrix) & (s.stat == stat) & (s.head_index >= 0)]
        if rows.empty:
            raise MissingData(f"no {matrix} {stat!r} in the spectra table; run `attnlife spectra {self.root}`")
        return cube(rows)

    def weight_stats(self, matrix: str = "qk") -> list[str]:
        s = self.spectra
        if s.empty:
            return []
        rows = s[(s.model == self.spectra_model) & (s.matrix == matrix) & (s.head_index >= 0)]
        return sorted(rows.stat.unique())

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one ReportRun lives for one report
    def arrays(self, step: int) -> dict:
        return {k: v.numpy() for k, v in self.run.spectra_arrays(self.spectra_model, int(step)).items()}

    def array_series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps [S], stacked array [S, ...]) of one stored spectra array over the checkpoints;
        a checkpoint whose arrays file is damaged is left out with one warning."""
        from attnlife.store.damage import warn_damaged_text
        from attnlife.store.spectra_arrays import DamagedArraysError

        steps, got = [], []
        for s in np.sort(self.spectra[self.spectra.model == self.spectra_model]["step"].unique()):
            try:
                got.append(self.arrays(int(s)))
                steps.append(s)
            except DamagedArraysError as err:
                warn_damaged_text(f"{err}; skipped until then")
        steps = np.asarray(steps, dtype=np.int64)
        if not got or any(key not in a for a in got):
            raise MissingData(f"spectra arrays lack {key!r} (written before it was stored); delete "
                              f"{self.root}/spectra and run `attnlife spectra {self.root}`")
        return steps, np.stack([a[key] for a in got])

    def histograms(self, matrix: str = "qk") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps [S], edges_sigma [B + 1], counts [S, L, H, B]) of the element histograms."""
        steps, counts = self.array_series(f"{matrix}.elem_hist")
        return steps, self.arrays(int(steps[0]))["elem_hist_edges_sigma"], counts

    def meetings(self) -> pd.DataFrame:
        """Eigenvalue near-meetings (crossing / repulsion) of the spectra sweep; may be empty."""
        return self.run.meetings()

    # ---- analysis, snapshots ----------------------------------------------------------------
    @functools.cached_property
    def analysis(self) -> dict[str, pd.DataFrame]:
        """Analysis tables by name (`Run.analysis()`; {} when the run was never analysed)."""
        return dict(self.run.analysis())

    @functools.cached_property
    def summary(self) -> dict:
        """RUN/analysis/summary.json ({} when the run was never analysed)."""
        return self.run.analysis_summary()

    def analysis_table(self, name: str, empty_hint: str = "") -> pd.DataFrame:
        """A non-empty analysis table; `empty_hint` names what an empty one lacks."""
        table = self.analysis.get(name)
        if table is None:
            raise MissingData(f"no analysis table {name!r}; run `attnlife analyze {self.root}`")
        if len(table) == 0:
            raise MissingData(f"analysis table {name!r} is empty{empty_hint}; "
                              f"run `attnlife analyze {self.root}` after producing it")
        return table

    def snapshot_store(self):  # noqa: ANN201 - attnlife.store.snapshots.SnapshotStore
        store = self.run.snapshots()
        if not store.names():
            raise MissingData("no attention snapshots: the tracker stores them during `attnlife train` "
                              "(tracking on: every checkpoint, or track.snapshot_every); the probe pass "
                              "(`attnlife track`) and probe-only directories store none")
        return store

