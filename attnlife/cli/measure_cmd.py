"""`attnlife measure`: weight spectra and the attention probe pass of a checkpoint series in one
read of each checkpoint (`attnlife.measurement`)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from attnlife.cli.options import (EVERY_KTH, EXECUTOR, EXECUTOR_OPTIONS, HF, KEEP_DOWNLOADS, LOG_SPACED,
                                  RAY_ADDRESS, REVISIONS, STEPS)


def measure_command(
    paths: List[Path] = typer.Argument(None, help="RUN_DIR, or ckpt.pt files with --nanogpt."),
    nanogpt: bool = typer.Option(False, "--nanogpt", help="PATHS are nanoGPT ckpt.pt files."),
    hf: Optional[str] = HF,
    revisions: Optional[str] = REVISIONS,
    steps: Optional[str] = STEPS,
    every_kth: int = EVERY_KTH,
    log_spaced: int = LOG_SPACED,
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: the RUN_DIR)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Probe text file (HF: tokenized by the model's tokenizer)."),
    tokens: Optional[Path] = typer.Option(None, "--tokens", help="Probe token ids: .npy, or nanoGPT val.bin (uint16)."),
    sequences: int = typer.Option(16, "--sequences", help="Probe windows of held-out text (standard errors across them)."),
    seq_len: int = typer.Option(0, "--seq-len", help="Tokens per window (0 = min(context, 256))."),
    ov: bool = typer.Option(False, "--ov", help="Also analyse W_OV = W_V^T W_O^T."),
    top_k: int = typer.Option(4, "--top-k", help="Leading eigenvalues/vectors tracked."),
    elements: bool = typer.Option(True, "--elements/--no-elements", help="Element histogram KL and kurtosis."),
    sample_rows: int = typer.Option(0, "--sample-rows", help="Stream only this many rows of W (0 = all)."),
    bins: int = typer.Option(200, "--bins", help="Histogram bins over mu +- 6 sigma."),
    null_rotations: int = typer.Option(199, "--null-rotations",
                                       help="Haar rotations for the W_QK rotation null of lambda_1 (0 = skip)."),
    workers: int = typer.Option(1, "--workers", help="Checkpoints measured in parallel processes."),
    executor: str = EXECUTOR,
    ray_address: Optional[str] = RAY_ADDRESS,
    executor_option: List[str] = EXECUTOR_OPTIONS,
    keep_downloads: bool = KEEP_DOWNLOADS,
    force: bool = typer.Option(False, "--force", help="Redo checkpoints already done with these options."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Weight spectra (OUT/spectra/) and the probe pass (split `probe` of OUT/metrics) of every
    checkpoint, each checkpoint read (or downloaded) once: `attnlife spectra` + `attnlife track`."""
    from contextlib import nullcontext

    from attnlife.cli.options import hub_store, revision_selector, select_series, series_executor
    from attnlife.cli.track_cmd import probe_set
    from attnlife.errors import ConfigError
    from attnlife.measurement import measure_series
    from attnlife.series.refs import SeriesSourceError
    from attnlife.spectra.analyse import SpectraOptions
    from attnlife.store.lock import run_lock

    refs, out = select_series(paths, nanogpt, hf, revision_selector(revisions, steps, every_kth, log_spaced),
                              out, "spectra/, metrics/ and probe/")
    if top_k < 1 or bins < 2 or sample_rows < 0 or null_rotations < 0:
        raise ConfigError("--top-k must be >= 1, --bins >= 2, --sample-rows and --null-rotations >= 0")
    spectra = SpectraOptions(matrices=("qk", "ov") if ov else ("qk",), top_k=top_k, elements=elements,
                             bins=bins, sample_rows=sample_rows, null_rotations=null_rotations)
    store = hub_store(refs, out, keep_downloads)
    run_executor = series_executor(executor, workers, ray_address, executor_option, out)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # one writer per output folder; ranks > 0 of a torchrun pass share rank 0's lock
    with run_lock(out, "measure") if rank == 0 else nullcontext():
        probe, options = probe_set(refs, out, paths, text, tokens, sequences, seq_len, store)
        summary = measure_series(refs, out, spectra, probe, options, executor=run_executor, store=store,
                                 rank=rank, world_size=world, progress=not quiet, force=force)
    if summary.failed and not summary.measured and not summary.skipped:
        raise SeriesSourceError(f"none of the {len(summary.failed)} checkpoints could be read "
                                f"(first: {summary.failed[0]})")
    unreadable = f", {len(summary.failed)} unreadable (skipped)" if summary.failed else ""
    typer.echo(f"measure: {summary.measured} measured, {summary.skipped} already done{unreadable} -> "
               f"{out}/spectra, {out}/metrics (split probe)")
    if summary.meetings is not None:
        typer.echo(f"eigenvalue near-meetings: {summary.meetings} ({out}/spectra/meetings/)")


def register(app: typer.Typer) -> None:
    """Add the `measure` verb to the app."""
    app.command("measure")(measure_command)
