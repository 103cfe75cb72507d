"""`attnlife summary RUN`: the per-layer attention summary table of a run."""
from __future__ import annotations

from pathlib import Path

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


def register(app: typer.Typer) -> None:
    """Add the tracking verbs to the CLI."""
    app.command("summary")(summary_command)
