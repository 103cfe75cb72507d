"""`attnlife spectra`: per-head W_QK / W_OV statistics over a checkpoint series."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from attnlife.cli.options import (BINS, ELEMENTS, EVERY_KTH, EXECUTOR, EXECUTOR_OPTIONS, HF, KEEP_DOWNLOADS,
                                  LOG_SPACED, NULL_ROTATIONS, OUT, OV, QUIET, RAY_ADDRESS, REVISIONS,
                                  SAMPLE_ROWS, STEPS, TOP_K)


def spectra_command(
    paths: List[Path] = typer.Argument(None, help="RUN_DIR, or ckpt.pt files with --nanogpt."),
    nanogpt: bool = typer.Option(False, "--nanogpt", help="PATHS are nanoGPT ckpt.pt files."),
    hf: Optional[str] = HF,
    revisions: Optional[str] = REVISIONS,
    steps: Optional[str] = STEPS,
    every_kth: int = EVERY_KTH,
    log_spaced: int = LOG_SPACED,
    out: Optional[Path] = OUT,
    workers: int = typer.Option(1, "--workers", help="Checkpoints analysed in parallel processes."),
    executor: str = EXECUTOR,
    ray_address: Optional[str] = RAY_ADDRESS,
    executor_option: List[str] = EXECUTOR_OPTIONS,
    keep_downloads: bool = KEEP_DOWNLOADS,
    ov: bool = OV,
    top_k: int = TOP_K,
    elements: bool = ELEMENTS,
    sample_rows: int = SAMPLE_ROWS,
    bins: int = BINS,
    null_rotations: int = NULL_ROTATIONS,
    quiet: bool = QUIET,
    force: bool = typer.Option(False, "--force", help="Recompute checkpoints already done with these options."),
) -> None:
    """Turn a checkpoint series into a per-head spectra table (OUT/spectra/, load_run(OUT).spectra())."""
    from contextlib import nullcontext

    from attnlife.cli.options import (hub_store, revision_selector, select_series, series_executor, series_outcome,
                                      spectra_options)
    from attnlife.errors import ConfigError
    from attnlife.spectra.sweep import run_sweep
    from attnlife.store.lock import run_lock

    refs, out = select_series(paths, nanogpt, hf, revision_selector(revisions, steps, every_kth, log_spaced),
                              out, "spectra/")
    if workers < 1:
        raise ConfigError("--workers must be >= 1")
    options = spectra_options(ov, top_k, elements, bins, sample_rows, null_rotations)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # one writer per output folder; ranks > 0 of a torchrun sweep share rank 0's lock
    with run_lock(out, "spectra") if rank == 0 else nullcontext():
        summary = run_sweep(refs, out, options, rank=rank, world_size=world, progress=not quiet, force=force,
                            executor=series_executor(executor, workers, ray_address, executor_option, out),
                            store=hub_store(refs, out, keep_downloads))
    series_outcome("spectra", summary.analysed, "analysed", summary.skipped, summary.failed, f"{out}/spectra",
                   summary.meetings, out)


def register(app: typer.Typer) -> None:
    """Add the `spectra` verb to the app."""
    app.command("spectra")(spectra_command)
