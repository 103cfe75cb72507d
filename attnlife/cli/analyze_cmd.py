"""`attnlife analyze RUN [RUN...]` and `attnlife claims RUN`: explain runs, write RUN/analysis/."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def analyze_command(
    runs: List[Path] = typer.Argument(..., help="run directories (training, theory or spectra-only)"),
    sample: bool = typer.Option(True, "--sample/--no-sample", help="sample checkpoints for generation quality"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Phases, head types, cycles, generation quality, correlations, embedding, integrity, claims."""
    from attnlife.analysis.summary import summary_lines
    from attnlife.cli.options import writer_locks
    from attnlife.explain import add_across_runs, analyze_run
    from attnlife.store.run_dir import load_run

    for run in runs:
        load_run(run)  # a missing run directory is one error line before any lock is taken
    with writer_locks(runs, "analyze"):
        for run in runs:
            summary = analyze_run(run, quiet=quiet, sample=sample)
            typer.echo("\n".join(summary_lines(summary)))
            typer.echo(f"  wrote {Path(run) / 'analysis'}")
        if len(runs) > 1:
            n = add_across_runs(runs)
            typer.echo(f"across {len(runs)} runs: {n} correlation(s) added (kind runs; needs >= 4 runs)")


def claims_command(run: Path = typer.Argument(..., help="run directory")) -> None:
    """Published claims next to what this run measured (writes RUN/analysis/claims.{parquet,csv,md})."""
    from attnlife.cli.options import writer_locks
    from attnlife.explain import claims_run
    from attnlife.store.run_dir import load_run

    load_run(run)  # a missing run directory is one error line before any lock is taken
    with writer_locks([run], "claims"):
        table = claims_run(run)
    for row in table.itertuples():
        typer.echo(f"{row.verdict:>15}  {row.claim_id}: {row.measured or '-'} ({row.reason})")
    typer.echo(f"wrote {Path(run) / 'analysis' / 'claims.md'}")


def register(app: typer.Typer) -> None:
    """Add the `analyze` and `claims` verbs to the app."""
    app.command("analyze")(analyze_command)
    app.command("claims")(claims_command)
