"""`attnlife summary RUN` and `attnlife track RUN | --nanogpt CKPT... | --hf MODEL --revisions ...`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from attnlife.cli.options import (EVERY_KTH, EXECUTOR, EXECUTOR_OPTIONS, HF, KEEP_DOWNLOADS, LOG_SPACED, OUT,
                                  QUIET, RAY_ADDRESS, REVISIONS, SEQ_LEN, SEQUENCES, STEPS, TEXT, TOKENS)


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
    workers: int = typer.Option(1, "--workers", help="Checkpoints measured in parallel processes."),
    executor: str = EXECUTOR,
    ray_address: Optional[str] = RAY_ADDRESS,
    executor_option: List[str] = EXECUTOR_OPTIONS,
    keep_downloads: bool = KEEP_DOWNLOADS,
    force: bool = typer.Option(False, "--force", help="Re-measure checkpoints already done with these options."),
    quiet: bool = QUIET,
) -> None:
    """Measure every checkpoint of a series on a fixed probe set: attention metrics with standard
    errors and head-type scores, split `probe` of OUT's metric table (load_run(OUT).metrics())."""
    from contextlib import nullcontext

    from attnlife.cli.options import hub_store, revision_selector, select_series, series_executor, series_outcome
    from attnlife.store.lock import run_lock
    from attnlife.track import probe_pass as P

    refs, out = select_series(paths, nanogpt, hf, revision_selector(revisions, steps, every_kth, log_spaced),
                              out, "metrics/ and probe/")
    store = hub_store(refs, out, keep_downloads)
    run_executor = series_executor(executor, workers, ray_address, executor_option, out)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    # one writer per output folder; ranks > 0 of a torchrun pass share rank 0's lock
    with run_lock(out, "track") if rank == 0 else nullcontext():
        probe, options = probe_set(refs, out, paths, text, tokens, sequences, seq_len, store)
        summary = P.run_probe_pass(refs, out, probe, options, rank=rank, world_size=world, progress=not quiet,
                                   force=force, store=store, executor=run_executor)
    series_outcome("probe", summary.measured, "measured", summary.skipped, summary.failed,
                   f"{out}/metrics (split probe; probe set {out}/probe/{P.PROBE_SET_FILE})")


def probe_set(refs: list, out: Path, paths: list, text: Optional[Path], tokens: Optional[Path],
              sequences: int, seq_len: int, store: Optional[tuple]) -> tuple[dict, object]:
    """(probe set, ProbeOptions) for a series: the probe text from --tokens, --text (the first
    checkpoint's tokenizer) or a run's val split; the shape from the first checkpoint's config
    (of a hub suite only its small files are fetched here, and evicted again)."""
    from attnlife.errors import ConfigError
    from attnlife.series.hub import HubStore

    if sequences < 2 or seq_len < 0:
        raise ConfigError("--sequences must be >= 2 (standard errors), --seq-len >= 0")
    first = refs[0]
    if first.kind == "hub":   # config and tokenizer only; evicted below, fetched again by its task
        first = HubStore(*store).fetch(first, patterns=["*.json", "tokenizer*", "*.txt", "*.model"])
    try:
        return _probe_set(first, refs, out, paths, text, tokens, sequences, seq_len)
    finally:
        if refs[0].kind == "hub":
            HubStore(*store).evict(refs[0])


def _probe_set(first, refs: list, out: Path, paths: list, text: Optional[Path], tokens: Optional[Path],  # noqa: ANN001
               sequences: int, seq_len: int) -> tuple[dict, object]:
    from attnlife.errors import ConfigError
    from attnlife.track import probe_pass as P

    ids, source = None, ""
    if tokens is not None:
        ids, source = P.read_token_file(tokens), f"tokens:{tokens.resolve()}"
    elif text is not None and first.kind == "hf":
        ids, source = P.tokenize_text(text, first.path), f"text:{text.resolve()}"
    elif text is not None:
        raise ConfigError("--text needs --hf (its tokenizer); for our runs and nanoGPT pass --tokens")
    elif first.kind == "run":
        ids, source = P.run_val_tokens(paths[0])
    options = P.ProbeOptions(sequences=sequences, seq_len=seq_len)
    # the shape: a Hugging Face config (nothing loaded), else the first checkpoint that can be read
    vocab, context = (P.series_shape(first) if first.kind == "hf"
                      else P.model_shape(P.first_readable_model(refs)))
    return P.load_or_make_probe_set(out, ids, vocab, context, options, source), options


def register(app: typer.Typer) -> None:
    """Add the tracking verbs to the CLI."""
    app.command("summary")(summary_command)
    app.command("track")(track_command)
