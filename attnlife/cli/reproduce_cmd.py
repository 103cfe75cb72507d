"""`attnlife reproduce`: the published four-run protocol over datasets and seeds (attnlife.reproduce)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from attnlife.cli.options import EXECUTOR, EXECUTOR_OPTIONS, RAY_ADDRESS


def reproduce_command(
    out: Path = typer.Option(..., "--out", help="Study folder: data/, runs/run{k}/{dataset}/seed{s}/, results/."),
    preset: str = typer.Option("cpu", "--preset", help="cpu (laptop scale, 600 updates) or paper (published: 6x6x384, 5000 updates)."),
    datasets: Optional[List[str]] = typer.Option(None, "--datasets", help="Comma-separated or repeated; default shakespeare_char,enwik8,text8."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per dataset (default: the protocol's 3 for shakespeare_char, 1 for the others)."),
    runs: str = typer.Option("0,1,2,3", "--runs", help="Protocol runs: 0 baseline, 1 tracking, 2 +cross-layer, 3 +generation quality."),
    workers: int = typer.Option(1, "--workers", help="Cells trained in parallel processes."),
    executor: str = EXECUTOR,
    ray_address: Optional[str] = RAY_ADDRESS,
    executor_option: List[str] = EXECUTOR_OPTIONS,
    rank: Optional[int] = typer.Option(None, "--rank", help="This node's rank (default: torchrun's RANK, else 0)."),
    world_size: Optional[int] = typer.Option(None, "--world-size", help="Number of nodes sharing the grid (default: WORLD_SIZE, else 1)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Prepared datasets (default OUT/data; missing ones are prepared there)."),
    overrides: List[str] = typer.Option([], "--set", help="section.key=value for every cell, repeatable."),
    sources: Optional[Path] = typer.Option(None, "--sources", help="Folder of offline dataset copies laid out like "
                                           "../shared/data (default: $ATTNLIFE_SOURCES, else ../shared/data when "
                                           "it exists, as `make demo` does)."),
    smoke: bool = typer.Option(False, "--smoke", help="A tiny model for 40 updates, shakespeare_char, 2 seeds: the end-to-end check (< 2 min)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train every (run, dataset, seed) cell, analyse and report each, and write OUT/results/."""
    from attnlife.errors import ConfigError
    from attnlife.cli.options import series_executor
    from attnlife.reproduce import parse_runs, reproduce

    if preset not in ("cpu", "paper"):
        raise ConfigError(f"--preset {preset!r} is not cpu or paper; pick one (or --smoke)")
    if (rank is None) != (world_size is None):
        raise ConfigError("--rank and --world-size go together; pass both (or neither under torchrun)")
    datasets = [d.strip() for item in datasets or [] for d in item.split(",") if d.strip()] or None
    if smoke:
        datasets = datasets or ["shakespeare_char"]
        seeds = 2 if seeds is None else seeds  # --seeds 0 is refused, not replaced
    import os

    from attnlife.cli.options import writer_locks

    node = rank if rank is not None else int(os.environ.get("RANK", 0))
    run_executor = series_executor(executor, workers, ray_address, executor_option, out)
    with writer_locks([out], "reproduce", rank=node):  # one study writer per --out (rank 0's)
        summary = reproduce(out, scale="smoke" if smoke else preset, datasets=datasets, seeds=seeds,
                            runs=parse_runs(runs), workers=workers, rank=rank, world_size=world_size,
                            data_dir=data_dir, overrides=overrides, quiet=quiet, executor=run_executor,
                            sources_dir=default_sources(sources))
    counts = {s: sum(o.status == s for o in summary.outcomes) for s in ("trained", "skipped")}
    typer.echo(f"reproduce: {counts['trained']} cells trained, {counts['skipped']} already done "
               f"(this rank: {len(summary.outcomes)} of {summary.total})")
    for note in summary.notes:
        typer.echo(note)
    if summary.results is not None:
        typer.echo(f"results: {summary.results}/run_*.json, overhead.csv, compare.md")
    else:
        typer.echo("results: waiting for the other ranks' cells (rerun any rank to write them)")


def default_sources(given: Optional[Path]) -> Optional[Path]:
    """--sources, else $ATTNLIFE_SOURCES, else ../shared/data when it exists (the Makefile's SHARED)."""
    import os

    if given is not None:
        return given
    if os.environ.get("ATTNLIFE_SOURCES"):
        return Path(os.environ["ATTNLIFE_SOURCES"])
    shared = Path("..") / "shared" / "data"
    return shared if shared.is_dir() else None


def register(app: typer.Typer) -> None:
    """Add the `reproduce` verb to the app."""
    app.command("reproduce")(reproduce_command)
