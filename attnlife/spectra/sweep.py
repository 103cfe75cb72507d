"""Sweep a checkpoint series: parallel, resumable, rank-splittable; results in OUT/spectra/.

Layout written (all atomically):
  OUT/spectra/part-*.parquet                         one tidy part per checkpoint (SPECTRA_SCHEMA)
  OUT/spectra/arrays/<model>/step_XXXXXXX.safetensors  lambdas, top-k vectors and element
                                                     histograms (the done marker)
  OUT/spectra/meetings/<model>.parquet               near-meetings labelled crossing/repulsion

A checkpoint is done when its arrays file exists (written after its part), so a rerun skips
it. Workers are spawned processes, one checkpoint each. Across processes or nodes, rank r of
W (torchrun sets RANK/WORLD_SIZE) takes checkpoints r, r+W, ...; parts merge on read. The
trajectory pass (vector tracking, meetings) runs in whichever process sees every checkpoint
of the series done.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from attnlife.series.refs import CheckpointRef, SeriesSourceError
from attnlife.series.executors import CheckpointTask, LocalExecutor, evict_leftovers, map_checkpoints
from attnlife.series.workers import rank_share
from attnlife.spectra.analyse import SpectraOptions, analyse_checkpoint
from attnlife.errors import CheckpointError, UnsupportedModelError
from attnlife.spectra.sweep_state import is_done, options_record
from attnlife.spectra.trajectories import find_meetings, match_vectors
from attnlife.store.atomic import atomic_path, clean_temp_files
from attnlife.store.part_table import SPECTRA_SCHEMA, write_part
from attnlife.store.layout import RunPaths
from attnlife.store.spectra_arrays import MEETING_COLUMNS, read_spectra_arrays

@dataclass(frozen=True)
class SweepSummary:
    """Checkpoints analysed now, skipped as already done, and meetings found (if the pass ran)."""

    analysed: int
    skipped: int
    meetings: Optional[int]
    failed: tuple[str, ...] = ()  # one line per checkpoint skipped as unreadable


def _analyse_and_write(ref: CheckpointRef, out_dir: str, options: SpectraOptions) -> int:
    from safetensors.torch import save_file

    rows, arrays = analyse_checkpoint(ref, options)
    write_part(RunPaths(Path(out_dir)).spectra, rows, SPECTRA_SCHEMA)
    final = RunPaths(Path(out_dir)).spectra_arrays(ref.model, ref.step)
    with atomic_path(final) as tmp:
        save_file(arrays, str(tmp), metadata={"model": ref.model, "step": str(ref.step),
                                              "options": options_record(options)})
    return ref.step


def _analyse_or_skip(ref: CheckpointRef, out_dir: str,
                     options: SpectraOptions) -> Optional[tuple[CheckpointRef, str]]:
    """`_analyse_and_write`, or (ref, why it was skipped: unreadable, corrupt, wrong shape)."""
    try:
        _analyse_and_write(ref, out_dir, options)
    except (CheckpointError, SeriesSourceError, UnsupportedModelError) as err:  # reading; a failed
        return ref, f"skipped {ref.model} step {ref.step}: {err}"                 # write still stops
    return None


@dataclass(frozen=True)
class SpectraPass:
    """The spectra of one checkpoint as a pass of a series sweep (`series.executors`): picklable,
    `done(ref)` says whether OUT holds it for covering options, calling it analyses and writes
    one checkpoint and returns None, or the line saying why it was skipped (unreadable)."""

    out: str
    options: SpectraOptions

    def done(self, ref: CheckpointRef) -> bool:
        return is_done(RunPaths(Path(self.out)).spectra_arrays(ref.model, ref.step), self.options)

    def __call__(self, ref: CheckpointRef) -> Optional[str]:
        skipped = _analyse_or_skip(ref, self.out, self.options)
        return None if skipped is None else skipped[1]


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="ckpt")


def run_sweep(refs: list[CheckpointRef], out_dir: str | os.PathLike, options: SpectraOptions,
              workers: int = 1, rank: int = 0, world_size: int = 1,
              progress: bool = True, force: bool = False, executor=None,  # noqa: ANN001
              store: Optional[tuple] = None) -> SweepSummary:
    """Analyse this rank's not-yet-done checkpoints of `refs`, then the trajectory pass if complete.

    One task per checkpoint on `executor` (default: `workers` local processes; Ray, submitit:
    `attnlife.series.executors`); hub revisions (kind 'hub') are fetched and evicted by the hub
    store `store` = (ledger dir, keep, cache dir). Done means computed with covering options
    (`sweep_state.is_done`); `force` redoes all. An unreadable checkpoint is reported on stderr and
    skipped; the sweep goes on.
    """
    out = Path(out_dir)
    spectra_dir = RunPaths(out).spectra
    spectra_dir.mkdir(parents=True, exist_ok=True)
    clean_temp_files(spectra_dir)
    spectra = SpectraPass(str(out), options)
    mine = rank_share(refs, rank, world_size)
    todo = [r for r in mine if force or not spectra.done(r)]
    evict_leftovers(store, refs, mine, todo)
    tasks = [CheckpointTask(ref, (spectra,), store if ref.kind == "hub" else None) for ref in todo]
    with _progress(len(todo), progress, f"spectra {refs[0].model if refs else ''}") as bar:
        results = map_checkpoints(tasks, executor or LocalExecutor(workers), on_done=lambda _: bar.update(1))
        failed = [line for (line,) in results if line]
        for line in failed:
            bar.write(f"warning: {line}", file=sys.stderr)
    meetings = None
    readable = [r for r in refs if spectra.done(r)]
    if readable and len(readable) == len(refs) - len(failed) and all(spectra.done(r) for r in readable):
        meetings = trajectory_pass(readable, out, options)
    return SweepSummary(analysed=len(todo) - len(failed), skipped=len(mine) - len(todo), meetings=meetings,
                        failed=tuple(failed))


def trajectory_pass(refs: list[CheckpointRef], out_dir: str | os.PathLike, options: SpectraOptions,
                    gap_threshold: float = 0.1) -> int:
    """Track top-k vectors across consecutive checkpoints and label near-meetings.

    Writes one part of `track_overlap_{i}` / `track_from_{i}` rows (overlap of rank i at a step
    with its matched predecessor, and the predecessor's rank, 1-based) and
    OUT/spectra/meetings/<model>.parquet. Returns the number of meetings.
    """
    out = Path(out_dir)
    by_model: dict[str, list[CheckpointRef]] = {}
    for r in refs:
        by_model.setdefault(r.model, []).append(r)
    total = 0
    for model, series in by_model.items():
        series = sorted(series, key=lambda r: r.step)
        arrays = [read_spectra_arrays(out, model, r.step) for r in series]
        steps = np.array([r.step for r in series])
        rows, meetings = [], []
        for matrix in options.matrices:
            key = f"{matrix}.lambda"
            if key not in arrays[0]:
                continue
            lam = torch.stack([a[key] for a in arrays]).numpy()  # [S, L, H, K]
            u = torch.stack([a[f"{matrix}.u_top"] for a in arrays]).numpy()  # [S, L, H, k, D]
            v = torch.stack([a[f"{matrix}.v_top"] for a in arrays]).numpy()
            k = u.shape[3]
            for layer in range(lam.shape[1]):
                for head in range(lam.shape[2]):
                    ok = _finite_steps(lam[:, layer, head], u[:, layer, head], v[:, layer, head])
                    hu, hv, hl = u[ok, layer, head], v[ok, layer, head], lam[ok, layer, head, :k]
                    rows += _track_rows(model, matrix, layer, head, steps[ok], hu, hv)
                    for m in find_meetings(steps[ok], hl, hu, hv, gap_threshold):
                        meetings.append([model, matrix, layer, head, m.step, m.rank + 1, m.gap_rel,
                                         m.overlap_stay, m.overlap_swap, m.label])
        if rows:
            write_part(RunPaths(out).spectra, pd.DataFrame(rows, columns=SPECTRA_SCHEMA.names), SPECTRA_SCHEMA)
        frame = pd.DataFrame(meetings, columns=MEETING_COLUMNS)
        with atomic_path(RunPaths(out).meetings(model)) as tmp:
            frame.to_parquet(tmp, index=False)
        total += len(frame)
    return total


def _finite_steps(lam: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[S] bool: checkpoints whose spectrum of this head is finite (NaN weights are left out)."""
    return np.isfinite(lam).all(1) & np.isfinite(u).all((1, 2)) & np.isfinite(v).all((1, 2))


def _track_rows(model: str, matrix: str, layer: int, head: int, steps: np.ndarray,
                u: np.ndarray, v: np.ndarray) -> list[list]:
    rows = []
    for t in range(1, len(steps)):
        perm, overlap = match_vectors(u[t - 1], v[t - 1], u[t], v[t])
        inverse = np.argsort(perm)  # rank at t -> matched rank at t-1
        for j in range(len(perm)):
            step = int(steps[t])
            rows.append([model, step, layer, head, matrix, f"track_overlap_{j + 1}",
                         float(overlap[inverse[j]])])
            rows.append([model, step, layer, head, matrix, f"track_from_{j + 1}", float(inverse[j] + 1)])
    return rows
