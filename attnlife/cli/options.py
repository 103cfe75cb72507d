"""Option conventions shared by the verbs: one name per concept, old names kept as deprecated
aliases, and the one way a verb names a checkpoint series (`select_series`)."""
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


def select_series(paths: list, nanogpt: bool, hf: Optional[str], revisions: Optional[str],
                  out: Optional[Path], writes: str) -> tuple[list, Path]:
    """The series a verb's arguments name (`RUN_DIR` | `--nanogpt CKPT...` | `--hf MODEL
    --revisions a,b`) and its output directory (default: the RUN_DIR); `writes` names what goes
    there, for the error when --out is missing. Returns (CheckpointRefs, output directory)."""
    from attnlife.errors import ConfigError
    from attnlife.series.refs import hf_series, nanogpt_series, run_series

    paths = list(paths or [])
    if hf:
        refs = hf_series(hf, [r for r in (revisions or "").split(",") if r])
    elif nanogpt:
        if not paths:
            raise ConfigError("--nanogpt needs one or more ckpt.pt paths")
        refs = nanogpt_series([str(p) for p in paths])
    elif len(paths) == 1:
        refs = run_series(paths[0])
        out = out or Path(paths[0])
    else:
        raise ConfigError("pass one RUN_DIR, or --nanogpt CKPT.pt..., or --hf MODEL --revisions a,b")
    if out is None:
        raise ConfigError(f"--out is required with --nanogpt or --hf (where to write {writes})")
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
