"""`attnlife report RUN [RUN...]`: every figure whose data a run holds, and its dashboard."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report_command(
    runs: List[Path] = typer.Argument(..., help="Run directories (training runs, spectra-only or theory runs)."),
    formats: Optional[List[str]] = typer.Option(None, "--format", help="Also write pdf and/or svg (repeatable; png always)."),
    heads: Optional[str] = typer.Option(None, "--heads", help="Exemplar heads for the weight figures, e.g. L0H1,L3H2."),
    study_out: Optional[Path] = typer.Option(None, "--study-out", help="With several runs: where the across-run "
                                             "training figures go (default FIRST_RUN/report/study)."),
    plotly_js: Optional[Path] = typer.Option(None, "--plotly-js", help="A plotly.js bundle to inline in the dashboard "
                                             "(default $ATTNLIFE_PLOTLY_JS, else the plotly package's full one; "
                                             "npm's plotly.js-cartesian-dist-min draws it too, a third the size)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Draw RUN/report/*.png (200 dpi) and RUN/report/dashboard.html; print the dashboard path."""
    from attnlife.cli.options import writer_locks
    from attnlife.report.api import check_formats, draw_study_figures, render_report
    from attnlife.store.run_dir import load_run

    fmts = check_formats(formats or [])
    for run in runs:
        load_run(run)  # a missing run directory is one error line before any lock is taken
    # report writes RUN/report/: it refuses a run another writer (a `train` in progress) holds
    extra = [study_out] if study_out is not None and len(runs) > 1 else []
    with writer_locks([*runs, *extra], "report"):
        for run in runs:
            result = render_report(run, fmts, heads, quiet, plotly_js)
            for line in result.skipped:
                typer.echo(line, err=True)
            typer.echo(f"{run}: {len(result.figures)} figure files in {run / 'report'}")
            typer.echo(f"dashboard: {result.dashboard}")
        if len(runs) > 1:
            out = study_out or runs[0] / "report" / "study"
            written = draw_study_figures(runs, out, fmts)
            typer.echo(f"across {len(runs)} runs: {len(written)} figure files in {out}")


def register(app: typer.Typer) -> None:
    """Add the `report` verb to the app."""
    app.command("report")(report_command)
