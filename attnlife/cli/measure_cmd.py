"""`attnlife measure`: weight spectra and the attention probe pass of a checkpoint series in one
read of each checkpoint (`attnlife.measurement`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from attnlife.cli.options import (BINS, ELEMENTS, EVERY_KTH, EXECUTOR, EXECUTOR_OPTIONS, HF, KEEP_DOWNLOADS,
                                  LOG_SPACED, NULL_ROTATIONS, OUT, OV, QUIET, RAY_ADDRESS, REVISIONS,
                                  SAMPLE_ROWS, SEQ_LEN, SEQUENCES, STEPS, TEXT, TOKENS, TOP_K)


def measure_command(
    paths: List[Path] = typer.Argument(None, help="RUN_DIR, or ckpt.pt files with --nanogpt."),
    nanogpt: bool = typer.Option(False, "--nanogpt", help="PATHS are nanoGPT ckpt.pt files."),
    hf: Optional[str] = HF,
    revisions: Optional[str] = REVISIONS,
    steps: Optional[str] = STEPS,
    every_kth: int = EVERY_KTH,
    log_spaced: int = LOG_SPACED,
    out: Optional[Path] = OUT,
    text: Optional[Path] = TEXT,
    tokens: Optional[Path] = TOKENS,
    sequences: int = SEQUENCES,
    seq_len: int = SEQ_LEN,
    ov: bool = OV,
    top_k: int = TOP_K,
    elements: bool = ELEMENTS,
    sample_rows: int = SAMPLE_ROWS,
    bins: int = BINS,
    null_rotations: int = NULL_ROTATIONS,
    workers: int = typer.Option(1, "--workers", help="Checkpoints measured in parallel processes."),
    executor: str = EXECUTOR,
    ray_address: Optional[str] = RAY_ADDRESS,
    executor_option: List[str] = EXECUTOR_OPTIONS,
    keep_downloads: bool = KEEP_DOWNLOADS,
    force: bool = typer.Option(False, "--force", help="Redo checkpoints already done with these options."),
    quiet: bool = QUIET,
) -> None:
    """Weight spectra (OUT/spectra/) and the probe pass (split `probe` of OUT/metrics) of every
    checkpoint, each checkpoint read (or downloaded) once: `attnlife spectra` + `attnlife track`."""
    from contextlib import nullcontext

    from attnlife.cli.options import (hub_store, revision_selector, select_series, series_executor, series_outcome,
                                      spectra_options)
    from attnlife.cli.track_cmd import probe_set
    from attnlife.measurement import measure_series
    from attnlife.store.lock import run_lock

    refs, out = select_series(paths, nanogpt, hf, revision_selector(revisions, steps, every_kth, log_spaced),
                              out, "spectra/, metrics/ and probe/")
    spectra = spectra_options(ov, top_k, elements, bins, sample_rows, null_rotations)
    store = hub_store(refs, out, keep_downloads)
    run_executor = series_executor(executor, workers, ray_address, executor_option, out)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # one writer per output folder; ranks > 0 of a torchrun pass share rank 0's lock
    with run_lock(out, "measure") if rank == 0 else nullcontext():
        probe, options = probe_set(refs, out, paths, text, tokens, sequences, seq_len, store)
        summary = measure_series(refs, out, spectra, probe, options, executor=run_executor, store=store,
                                 rank=rank, world_size=world, progress=not quiet, force=force)
    series_outcome("measure", summary.measured, "measured", summary.skipped, summary.failed,
                   f"{out}/spectra, {out}/metrics (split probe)", summary.meetings, out)


def register(app: typer.Typer) -> None:
    """Add the `measure` verb to the app."""
    app.command("measure")(measure_command)
