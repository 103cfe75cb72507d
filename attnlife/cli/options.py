"""Option conventions shared by the verbs: one name per concept, old names kept as deprecated
aliases, and the one way a verb names a checkpoint series (`select_series`, its selectors, the
hub store and the executor)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional, Sequence

import typer

MAX_ITERS_HELP = "Step budget: optimizer updates in total (the same name in every verb)."
STEPS_ALIAS_HELP = "Deprecated alias of --max-iters."


def deprecated_alias(value: Optional[int], old_value: Optional[int], old: str, new: str) -> Optional[int]:
    """`new`'s value, or `old`'s with a deprecation warning on stderr; ConfigError if both disagree."""
    if old_value is None:
        return value
    if value is not None and value != old_value:
        from attnlife.errors import ConfigError

        raise ConfigError(f"{old} {old_value} contradicts {new} {value}; pass only {new}")
    typer.echo(f"warning: {old} is deprecated; use {new}", err=True)
    return old_value


# the series options every verb over a checkpoint series takes (spectra, track, measure)
HF = typer.Option(None, "--hf", help="Hub id (e.g. EleutherAI/pythia-160m) or local directory of revision folders.")
REVISIONS = typer.Option(None, "--revisions", help="Comma-separated revision names (default with --hf: every "
                         "step revision, stepN / stepN-tokensM, in step order).")
STEPS = typer.Option(None, "--steps", help="Only step revisions in LO:HI (inclusive; either end may be left out).")
EVERY_KTH = typer.Option(1, "--every-kth", help="Every k-th revision of the selection, from the first.")
LOG_SPACED = typer.Option(0, "--log-spaced", help="N revisions evenly spaced in log(step), first and last "
                          "included (0 = all).")
KEEP_DOWNLOADS = typer.Option(False, "--keep-downloads", help="Keep hub revisions attnlife downloads (default: "
                              "each is evicted once measured; at most 3 on disk).")
EXECUTOR = typer.Option("local", "--executor", help="local (processes, --workers) | ray | submitit: one task "
                        "per checkpoint.")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="Ray cluster to join (auto or host:port); default: a "
                           "local cluster of --workers CPUs.")
EXECUTOR_OPTIONS = typer.Option([], "--executor-option", help="KEY=VALUE for the executor, repeatable: "
                                "cpus_per_task, max_retries (ray); slurm_partition, timeout_min, "
                                "cpus_per_task, slurm_array_parallelism, cluster=local|slurm (submitit).")

# the output, probe-set and spectra options of the series verbs (track, measure; spectra)
OUT = typer.Option(None, "--out", help="Output directory (default: the RUN_DIR).")
TEXT = typer.Option(None, "--text", help="Probe text file (HF: tokenized by the model's tokenizer).")
TOKENS = typer.Option(None, "--tokens", help="Probe token ids: .npy, or a .bin (dtype from the meta.json beside "
                      "it, else nanoGPT's uint16).")
SEQUENCES = typer.Option(16, "--sequences", help="Probe windows of held-out text (standard errors across them).")
SEQ_LEN = typer.Option(0, "--seq-len", help="Tokens per window, at most the model's context (0 = min(context, 256)).")
OV = typer.Option(False, "--ov", help="Also analyse W_OV = W_V^T W_O^T.")
TOP_K = typer.Option(4, "--top-k", help="Leading eigenvalues/vectors tracked.")
ELEMENTS = typer.Option(True, "--elements/--no-elements", help="Element histogram KL and kurtosis.")
SAMPLE_ROWS = typer.Option(0, "--sample-rows", help="Stream only this many rows of W (0 = all).")
BINS = typer.Option(200, "--bins", help="Histogram bins over mu +- 6 sigma.")
NULL_ROTATIONS = typer.Option(199, "--null-rotations",
                              help="Haar rotations for the W_QK rotation null of lambda_1 (0 = skip).")
QUIET = typer.Option(False, "--quiet", help="No progress bar.")


def spectra_options(ov: bool, top_k: int, elements: bool, bins: int, sample_rows: int, null_rotations: int):
    """The `SpectraOptions` of --ov / --top-k / --elements / --bins / --sample-rows / --null-rotations;
    ConfigError naming the limits when one is out of range."""
    from attnlife.errors import ConfigError
    from attnlife.spectra.analyse import SpectraOptions

    if top_k < 1 or bins < 2 or sample_rows < 0 or null_rotations < 0:
        raise ConfigError("--top-k must be >= 1, --bins >= 2, --sample-rows and --null-rotations >= 0")
    return SpectraOptions(matrices=("qk", "ov") if ov else ("qk",), top_k=top_k, elements=elements,
                          bins=bins, sample_rows=sample_rows, null_rotations=null_rotations)


def series_outcome(label: str, done: int, done_word: str, skipped: int, failed: list, dest: str,
                   meetings: Optional[int] = None, out: Optional[Path] = None) -> None:
    """Echo a series verb's outcome: `LABEL: N <done_word>, M already done[, K unreadable (skipped)] -> DEST`,
    then the eigenvalue near-meetings when spectra were measured. SeriesSourceError when every
    checkpoint failed and none was done before."""
    from attnlife.series.refs import SeriesSourceError

    if failed and not done and not skipped:
        raise SeriesSourceError(f"none of the {len(failed)} checkpoints could be read (first: {failed[0]})")
    unreadable = f", {len(failed)} unreadable (skipped)" if failed else ""
    typer.echo(f"{label}: {done} {done_word}, {skipped} already done{unreadable} -> {dest}")
    if meetings is not None:
        typer.echo(f"eigenvalue near-meetings: {meetings} ({out}/spectra/meetings/)")


def revision_selector(revisions: Optional[str], steps: Optional[str], every_kth: int, log_spaced: int):
    """A `RevisionSelector` from the verb's --revisions / --steps / --every-kth / --log-spaced."""
    from attnlife.series.revisions import RevisionSelector, parse_step_range

    names = tuple(r.strip() for r in (revisions or "").split(",") if r.strip())
    return RevisionSelector(names=names, steps=parse_step_range(steps), every_kth=every_kth,
                            log_spaced=log_spaced)


def select_series(paths: list, nanogpt: bool, hf: Optional[str], selector, out: Optional[Path],
                  writes: str) -> tuple[list, Path]:
    """The series a verb's arguments name (`RUN_DIR` | `--nanogpt CKPT...` | `--hf MODEL`), the
    revisions or checkpoints `selector` keeps (`revision_selector`), and its output directory
    (default: the RUN_DIR); `writes` names what goes there, for the error when --out is missing.
    Returns (CheckpointRefs, output directory); hub revisions come back unfetched (kind 'hub')."""
    from dataclasses import replace

    from attnlife.errors import ConfigError
    from attnlife.series.hub import suite_refs
    from attnlife.series.refs import nanogpt_series, run_series
    from attnlife.series.revisions import select

    paths = list(paths or [])
    if hf:
        refs = suite_refs(hf, selector)
    else:
        if selector.names:
            raise ConfigError("--revisions names hub revisions; with a RUN_DIR or --nanogpt select "
                              "checkpoints with --steps, --every-kth or --log-spaced")
        if nanogpt:
            if not paths:
                raise ConfigError("--nanogpt needs one or more ckpt.pt paths")
            refs = nanogpt_series([str(p) for p in paths])
        elif len(paths) == 1:
            refs = run_series(paths[0])
            out = out or Path(paths[0])
        else:
            raise ConfigError("pass one RUN_DIR, or --nanogpt CKPT.pt..., or --hf MODEL")
        keep = {s for s, _ in select([(r.step, str(r.step)) for r in refs], replace(selector, names=()))}
        refs = [r for r in refs if r.step in keep]
    if out is None:
        raise ConfigError(f"--out is required with --nanogpt or --hf (where to write {writes})")
    if not refs:
        raise ConfigError("the selection holds no checkpoint; widen --steps / --log-spaced")
    return refs, Path(out)


@contextlib.contextmanager
def writer_locks(paths: Sequence[str | os.PathLike], verb: str, rank: int = 0) -> Iterator[None]:
    """Hold the writer lock (`attnlife.store.lock`) of every folder a verb writes into, so a second
    writer of any verb (or a `train` still running there) is refused with one line naming the
    holder. Folders that do not exist yet are created by the lock (removed again if the verb
    leaves them empty); ranks > 0 of a torchrun job share rank 0's locks."""
    from attnlife.store.lock import run_lock

    with contextlib.ExitStack() as stack:
        if rank == 0:
            for path in dict.fromkeys(Path(p).resolve() for p in paths):
                stack.enter_context(run_lock(path, verb))
        yield


def hub_store(refs: list, out: Path, keep_downloads: bool) -> Optional[tuple]:
    """The hub store spec (ledger OUT/hub, keep, cache) when the series streams hub revisions."""
    if not any(r.kind == "hub" for r in refs):
        return None
    from attnlife.series.hub import hub_cache_dir

    return (str(Path(out) / "hub"), bool(keep_downloads), str(hub_cache_dir()))


def series_executor(executor: str, workers: int, ray_address: Optional[str], options: list, out: Path):
    """The executor of --executor / --workers / --ray-address / --executor-option (submitit logs
    in OUT/submitit)."""
    from attnlife.series.executors import make_executor

    return make_executor(executor, workers, ray_address, Path(out) / "submitit", options or [])
