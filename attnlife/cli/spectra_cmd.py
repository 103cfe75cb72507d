"""`attnlife spectra`: per-head W_QK / W_OV statistics over a checkpoint series."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def spectra_command(
    paths: List[Path] = typer.Argument(None, help="RUN_DIR, or ckpt.pt files with --nanogpt."),
    nanogpt: bool = typer.Option(False, "--nanogpt", help="PATHS are nanoGPT ckpt.pt files."),
    hf: Optional[str] = typer.Option(None, "--hf", help="HF hub id or local directory of revisions."),
    revisions: Optional[str] = typer.Option(None, "--revisions", help="Comma-separated, e.g. step0,step1000."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: the RUN_DIR)."),
    workers: int = typer.Option(1, "--workers", help="Checkpoints analysed in parallel processes."),
    ov: bool = typer.Option(False, "--ov", help="Also analyse W_OV = W_V^T W_O^T."),
    top_k: int = typer.Option(4, "--top-k", help="Leading eigenvalues/vectors tracked."),
    elements: bool = typer.Option(True, "--elements/--no-elements", help="Element histogram KL and kurtosis."),
    sample_rows: int = typer.Option(0, "--sample-rows", help="Stream only this many rows of W (0 = all)."),
    bins: int = typer.Option(200, "--bins", help="Histogram bins over mu +- 6 sigma."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Turn a checkpoint series into a per-head spectra table (OUT/spectra/, load_run(OUT).spectra())."""
    from attnlife.errors import ConfigError
    from attnlife.spectra.analyse import SpectraOptions
    from attnlife.spectra.sources import hf_series, nanogpt_series, run_series
    from attnlife.spectra.sweep import run_sweep

    paths = list(paths or [])
    if hf:
        refs = hf_series(hf, [r for r in (revisions or "").split(",") if r])
    elif nanogpt:
        if not paths:
            raise ConfigError("--nanogpt needs one or more ckpt.pt paths")
        refs = nanogpt_series([str(p) for p in paths])
    elif len(paths) == 1:
        refs = run_series(paths[0])
        out = out or paths[0]
    else:
        raise ConfigError("pass one RUN_DIR, or --nanogpt CKPT.pt..., or --hf MODEL --revisions a,b")
    if out is None:
        raise ConfigError("--out is required with --nanogpt or --hf (where to write spectra/)")
    if top_k < 1 or workers < 1 or bins < 2 or sample_rows < 0:
        raise ConfigError("--top-k and --workers must be >= 1, --bins >= 2, --sample-rows >= 0")
    options = SpectraOptions(matrices=("qk", "ov") if ov else ("qk",), top_k=top_k,
                             elements=elements, bins=bins, sample_rows=sample_rows)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    summary = run_sweep(refs, out, options, workers=workers, rank=rank, world_size=world,
                        progress=not quiet)
    typer.echo(f"spectra: {summary.analysed} analysed, {summary.skipped} already done -> {out}/spectra")
    if summary.meetings is not None:
        typer.echo(f"eigenvalue near-meetings: {summary.meetings} ({out}/spectra/meetings/)")


def register(app: typer.Typer) -> None:
    """Add the `spectra` verb to the app."""
    app.command("spectra")(spectra_command)
