"""`attnlife measure`: weight spectra and the attention probe pass of a checkpoint series in one read
of each checkpoint (a streamed hub suite is downloaded once, not once per verb).

    summary = measure_series(refs, out, SpectraOptions(), probe, ProbeOptions(), store=store)

Per checkpoint, one task (`attnlife.series.executors.CheckpointTask`) runs the passes that are
not done yet: the spectra (`spectra.sweep.SpectraPass`: OUT/spectra/) and then the probe pass
(`track.probe_pass.ProbePass`: split `probe` of OUT/metrics); a checkpoint the spectra find
unreadable is reported and skipped by both. Hub revisions are fetched before and evicted after
their task. When every readable checkpoint's spectra are done, the eigenvector trajectory pass
runs, exactly as after `attnlife spectra`. Results equal those of the two verbs run one after
the other.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from attnlife.series.executors import CheckpointTask, LocalExecutor, evict_leftovers, map_checkpoints
from attnlife.series.refs import CheckpointRef
from attnlife.series.workers import rank_share
from attnlife.spectra.analyse import SpectraOptions
from attnlife.spectra.sweep import SpectraPass, trajectory_pass
from attnlife.store.atomic import clean_temp_files
from attnlife.store.layout import RunPaths
from attnlife.track.probe_pass import ProbeOptions, ProbePass, options_key


@dataclass(frozen=True)
class MeasureSummary:
    """Checkpoints measured now, skipped as done, unreadable (one line each); meetings if run."""

    measured: int
    skipped: int
    failed: tuple[str, ...]
    meetings: Optional[int]


@dataclass(frozen=True)
class BothPasses:
    """Spectra, then the probe pass unless the spectra found the checkpoint unreadable; either may
    be None (done already). Returns the line saying why the checkpoint was skipped, or None."""

    spectra: Optional[SpectraPass]
    probe: Optional[ProbePass]

    def __call__(self, ref: CheckpointRef) -> Optional[str]:
        skipped = self.spectra(ref) if self.spectra is not None else None
        if skipped is None and self.probe is not None:
            skipped = self.probe(ref)
        return skipped


def measure_series(refs: list[CheckpointRef], out_dir: str | os.PathLike, spectra_options: SpectraOptions,
                   probe: dict, probe_options: ProbeOptions, executor: Any = None,
                   store: Optional[tuple] = None, rank: int = 0, world_size: int = 1,
                   progress: bool = True, force: bool = False) -> MeasureSummary:
    """Both passes over this rank's share of `refs` (module doc); `store` = the hub store spec
    (ledger dir, keep, cache dir) for 'hub' refs, `executor` from `series.executors`."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    RunPaths(out).spectra.mkdir(parents=True, exist_ok=True)
    clean_temp_files(RunPaths(out).spectra)
    spectra = SpectraPass(str(out), spectra_options)
    probe_pass = ProbePass(str(out), probe, probe_options, options_key(probe_options, probe))
    mine = rank_share(refs, rank, world_size)
    tasks = []
    for ref in mine:
        todo = BothPasses(spectra if force or not spectra.done(ref) else None,
                          probe_pass if force or not probe_pass.done(ref) else None)
        if todo.spectra is not None or todo.probe is not None:
            tasks.append(CheckpointTask(ref, (todo,), store if ref.kind == "hub" else None))
    evict_leftovers(store, refs, mine, [t.ref for t in tasks])
    with tqdm(total=len(tasks), disable=not progress, desc=f"measure {refs[0].model if refs else ''}",
              unit="ckpt") as bar:
        results = map_checkpoints(tasks, executor or LocalExecutor(1), on_done=lambda _: bar.update(1))
        failed = tuple(line for (line,) in results if line)
        for line in failed:
            bar.write(f"warning: {line}", file=sys.stderr)
    readable = [r for r in refs if spectra.done(r)]
    meetings = None
    if readable and len(readable) == len(refs) - len(failed):
        meetings = trajectory_pass(readable, out, spectra_options)
    return MeasureSummary(len(tasks) - len(failed), len(mine) - len(tasks), failed, meetings)
