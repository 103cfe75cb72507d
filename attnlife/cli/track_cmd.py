"""`attnlife summary RUN` and `attnlife track RUN | --nanogpt CKPT... | --hf MODEL --revisions ...`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def summary_command(
    run: Path = typer.Argument(..., help="Run directory written by `attnlife train`."),
    split: str = typer.Option("train", "--split", help="Split the attention was tracked on."),
) -> None:
    """Print entropy (bits) and span (tokens) per layer at the first and last tracked step."""
    from rich.console import Console

    from attnlife.store.run_dir import load_run
    from attnlife.track.summary import attention_summary, summary_table

    summary = attention_summary(load_run(run).metrics(), split=split)
    Console().print(summary_table(summary))


def track_command(
    paths: List[Path] = typer.Argument(None, help="RUN_DIR, or ckpt.pt files with --nanogpt."),
    nanogpt: bool = typer.Option(False, "--nanogpt", help="PATHS are nanoGPT ckpt.pt files."),
    hf: Optional[str] = typer.Option(None, "--hf", help="HF hub id or local directory of revisions."),
    revisions: Optional[str] = typer.Option(None, "--revisions", help="Comma-separated, e.g. step0,step1000."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory (default: the RUN_DIR)."),
    text: Optional[Path] = typer.Option(None, "--text", help="Probe text file (HF: tokenized by the model's tokenizer)."),
    tokens: Optional[Path] = typer.Option(None, "--tokens", help="Probe token ids: .npy, or nanoGPT val.bin (uint16)."),
    sequences: int = typer.Option(16, "--sequences", help="Probe windows of held-out text (standard errors across them)."),
    seq_len: int = typer.Option(0, "--seq-len", help="Tokens per window (0 = min(context, 256))."),
    workers: int = typer.Option(1, "--workers", help="Checkpoints measured in parallel processes."),
    force: bool = typer.Option(False, "--force", help="Re-measure checkpoints already done with these options."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Measure every checkpoint of a series on a fixed probe set: attention metrics with standard
    errors and head-type scores, split `probe` of OUT's metric table (load_run(OUT).metrics())."""
    from contextlib import nullcontext

    from attnlife.cli.options import select_series
    from attnlife.errors import ConfigError
    from attnlife.store.lock import run_lock
    from attnlife.track import probe_pass as P

    refs, out = select_series(paths, nanogpt, hf, revisions, out, "metrics/ and probe/")
    if sequences < 2 or workers < 1 or seq_len < 0:
        raise ConfigError("--sequences must be >= 2 (standard errors), --workers >= 1, --seq-len >= 0")
    ids, source = None, ""
    if tokens is not None:
        ids, source = P.read_token_file(tokens), f"tokens:{tokens.resolve()}"
    elif text is not None and hf:
        ids, source = P.tokenize_text(text, refs[0].path), f"text:{text.resolve()}"
    elif text is not None:
        raise ConfigError("--text needs --hf (its tokenizer); for our runs and nanoGPT pass --tokens")
    elif refs[0].kind == "run":
        ids, source = P.run_val_tokens(paths[0])
    options = P.ProbeOptions(sequences=sequences, seq_len=seq_len)
    vocab, context = P.model_shape(P.first_readable_model(refs))
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # one writer per output folder; ranks > 0 of a torchrun pass share rank 0's lock
    with run_lock(out, "track") if rank == 0 else nullcontext():
        probe = P.load_or_make_probe_set(out, ids, vocab, context, options, source)
        summary = P.run_probe_pass(refs, out, probe, options, workers=workers, rank=rank,
                                   world_size=world, progress=not quiet, force=force)
    unreadable = f", {len(summary.failed)} unreadable (skipped)" if summary.failed else ""
    typer.echo(f"probe: {summary.measured} measured, {summary.skipped} already done{unreadable} -> "
               f"{out}/metrics (split probe; probe set {out}/probe/{P.PROBE_SET_FILE})")


def register(app: typer.Typer) -> None:
    """Add the tracking verbs to the CLI."""
    app.command("summary")(summary_command)
    app.command("track")(track_command)
