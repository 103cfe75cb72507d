"""run.json and read access to a run directory (`Run`, `load_run`); the layout is in
`attnlife.store.layout`.

run.json holds `format_version` (`attnlife.store.run_format`), the config, dataset, seed,
versions, git commit and start time, plus one entry per resume segment (`write_run_json`). `Run` returns every table as a pandas DataFrame.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pandas as pd

from attnlife.errors import RunDirError
from attnlife.store.atomic import storage_errors, write_json_atomic
from attnlife.store.layout import RunPaths, list_checkpoints
from attnlife.store import metrics_table
from attnlife.store.metrics_table import read_metrics
from attnlife.store.part_table import SPECTRA_SCHEMA, read_table
from attnlife.store.run_format import FORMAT_KEY, RUN_FORMAT, check_format_version

def environment_record() -> dict:
    """Versions and provenance stored in run.json: python, torch, attnlife, git commit, host."""
    from attnlife.version import __version__

    record = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "attnlife": __version__,
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

    `format_version` is set to this attnlife's run format (`attnlife.store.run_format`); a run.json
    of a newer format is refused (NewerFormatError), and keys of an existing run.json that `record`
    does not set are kept (a newer attnlife's additions survive a resume by this one).
    An existing run.json is a run being continued: it keeps its original `start_time`, gains a
    `resumed_at` entry (the real time now) and a `segments` entry: {started_at, attnlife,
    git_commit, changed} where `changed` maps each dotted setting of `config` / `dataset` whose
    value differs from the previous segment to {"from": old, "to": new}. `segments[0]` describes
    the first start. `config` then holds the settings of the newest segment.
    """
    paths = RunPaths(Path(run_dir))
    with storage_errors(paths.root, "create"):
        paths.root.mkdir(parents=True, exist_ok=True)
    env = environment_record()
    now = env["start_time"]
    old = _read_existing_record(paths.run_json)
    if old is not None:
        check_format_version(old.get(FORMAT_KEY), paths.root)
    merged = {k: v for k, v in (old or {}).items() if k not in record}  # keys it does not know stay
    merged.update(record)
    merged[FORMAT_KEY] = RUN_FORMAT
    merged["environment"] = env
    if old is None:
        merged["segments"] = [_segment(env, {})]
    else:
        env["start_time"] = old.get("environment", {}).get("start_time", now)
        merged["resumed_at"] = list(old.get("resumed_at", [])) + [now]
        segments = list(old.get("segments", [])) or [_segment(old.get("environment", {}), {})]
        merged["segments"] = segments + [_segment(dict(env, start_time=now),
                                                  settings_changed(old, merged))]
    return write_json_atomic(paths.run_json, merged)


def _read_existing_record(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} is damaged ({str(err)[:120]}); restore it or pass a new "
                          f"output directory") from None
    if not isinstance(old, dict):
        raise RunDirError(f"{path} is not a JSON object; restore it or pass a new output directory")
    for section in RECORD_SECTIONS:   # readers index into these: a scalar there is damage
        if section in old and not isinstance(old[section], dict):
            raise RunDirError(f"{path} is damaged (its {section} is a {type(old[section]).__name__}, "
                              f"not an object); restore it or pass a new output directory")
    return old


RECORD_SECTIONS = ("config", "dataset", "environment", "tracker_run")


def _segment(env: dict, changed: dict) -> dict:
    return {"started_at": env.get("start_time"), "attnlife": env.get("attnlife"),
            "git_commit": env.get("git_commit"), "changed": changed}


def settings_changed(old: dict, new: dict, sections: tuple[str, ...] = ("config", "dataset")) -> dict:
    """{dotted key: {"from", "to"}} for every leaf of `sections` that differs between records."""
    before, after = {}, {}
    for section in sections:
        _flatten(old.get(section), section, before)
        _flatten(new.get(section), section, after)
    keys = sorted(set(before) | set(after))
    return {k: {"from": before.get(k), "to": after.get(k)} for k in keys
            if json.dumps(before.get(k), default=str) != json.dumps(after.get(k), default=str)}


def _flatten(value: object, prefix: str, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", out)
    elif value is not None or prefix.count(".") > 0:
        out[prefix] = value


class Run:
    """Read access to one run directory; every table comes back as a pandas DataFrame.

    A damaged table part (truncated, foreign schema) is skipped with a warning naming it;
    with `strict=True` reading it raises RunDirError instead.
    """

    def __init__(self, root: str | os.PathLike, strict: bool = False) -> None:
        self.paths = RunPaths(Path(root))
        self.strict = strict
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
        return _read_existing_record(p) or {}

    @property
    def config(self) -> dict:
        """The run's configuration as stored in run.json under `config` ({} if absent)."""
        return self.record.get("config", {})

    def metrics(self) -> pd.DataFrame:
        """The tidy metric table: step, split, layer, head_index, layer_b, metric, value, stderr."""
        return read_metrics(self.root, strict=self.strict)

    def per_head(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Per-head rows: step, split, layer, head_index, metric, value, stderr.

        `split=None` = the run's primary attention split: `probe` (`attnlife track`, every
        checkpoint, with standard errors) when it holds the selected rows, else `train` (the
        tracker during training); `split="all"` keeps every split. `attrs["split"]` says which.
        """
        return metrics_table.per_head(self.metrics(), metric, split)

    def per_layer(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Layer-level rows (head diversity ...): step, split, layer, metric, value, stderr; splits as `per_head`."""
        return metrics_table.per_layer(self.metrics(), metric, split)

    def cross_layer(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Cross-layer pair rows: step, split, layer, layer_b, metric, value, stderr; splits as `per_head`."""
        return metrics_table.cross_layer(self.metrics(), metric, split)

    def model_level(self, metric=None, split=None) -> pd.DataFrame:  # noqa: ANN001
        """Model-level rows (loss, lr, eval_loss, probe_loss_nats ...): step, split, metric, value, stderr.

        `split=None` when the selected rows come from one split; `eval_loss` (train and val)
        needs `split="val"` (or `"all"`), else `SplitError` says so.
        """
        return metrics_table.model_level(self.metrics(), metric, split)

    def spectra(self) -> pd.DataFrame:
        """Per-head weight statistics: model, step, layer, head_index (>= 0), matrix, stat, value.

        The layer means the sweep also stores are in `spectra_layer_means()`.
        """
        table = self._spectra_table()
        return table[table["head_index"] >= 0].reset_index(drop=True)

    def spectra_layer_means(self) -> pd.DataFrame:
        """Per-layer means over heads of each weight statistic: model, step, layer, matrix, stat, value."""
        table = self._spectra_table()
        return table[table["head_index"] < 0].drop(columns=["head_index"]).reset_index(drop=True)

    def _spectra_table(self) -> pd.DataFrame:
        return read_table(self.paths.spectra, SPECTRA_SCHEMA, strict=self.strict)

    def sweep(self) -> pd.DataFrame:
        """The scan-and-snap sweep table (step, name, m, k, eta_z, eta_y, ratio, seed, value; empty
        for other runs): each value once, the grid parameters as columns."""
        from attnlife.store.sweep_table import read_sweep

        return read_sweep(self.root)

    def spectra_arrays(self, model: str, step: int) -> dict:
        """The spectra arrays of one checkpoint of series `model` (attnlife.store.spectra_arrays)."""
        from attnlife.store.spectra_arrays import read_spectra_arrays

        return read_spectra_arrays(self.root, model, step)

    def meetings(self) -> pd.DataFrame:
        """Eigenvalue near-meetings (crossing / repulsion) the spectra sweep found; may be empty."""
        from attnlife.store.spectra_arrays import read_meetings

        return read_meetings(self.root)

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as (step, directory), ascending."""
        return list_checkpoints(self.root)

    def snapshots(self):  # noqa: ANN201 - attnlife.store.snapshots.SnapshotStore
        """The run's attention snapshots (`.names()`, `.steps(name)`, `.read(name, step)` -> fp16)."""
        from attnlife.store.snapshots import SnapshotStore

        return SnapshotStore(self.root)

    def analysis(self) -> dict[str, pd.DataFrame]:
        """Every table `attnlife analyze` wrote to RUN/analysis/ (name -> DataFrame; {} if none)."""
        from attnlife.store.analysis_tables import read_analysis

        return read_analysis(self.root)

    def analysis_table(self, name: str) -> pd.DataFrame:
        """One analysis table (`phases`, `head_types`, `emergence`, `claims`, ...)."""
        from attnlife.store.analysis_tables import read_analysis_table

        return read_analysis_table(self.root, name)

    def analysis_summary(self) -> dict:
        """RUN/analysis/summary.json as a dict ({} if the run was never analysed)."""
        from attnlife.store.analysis_tables import read_summary

        return read_summary(self.root)

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"


def load_run(path: str | os.PathLike, strict: bool = False) -> Run:
    """Open the run directory at `path` for reading (`load_run(p).metrics()` etc.).

    `strict=True`: a damaged table part raises RunDirError instead of being skipped with a warning.
    """
    return Run(path, strict=strict)
