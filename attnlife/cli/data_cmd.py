"""`attnlife prepare`: a thin wrapper over `attnlife.data.prepare_dataset`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def prepare_command(
    dataset: str = typer.Argument(..., help="shakespeare_char, enwik8, text8 or text."),
    source: Optional[Path] = typer.Option(None, "--source", help="A .txt/raw file or the canonical .zip (required for `text`)."),
    out: Path = typer.Option(Path("data"), "--out", help="Folder that receives <name>/."),
    name: Optional[str] = typer.Option(None, "--name", help="Output folder name (default: the dataset name)."),
    sources: Optional[Path] = typer.Option(None, "--sources", help="Folder of offline copies laid out like "
                                           "../shared/data (default: $ATTNLIFE_SOURCES)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Write OUT/<name>/{train.bin, val.bin[, test.bin], meta.json} from the dataset's source."""
    from attnlife.data import load_prepared, prepare_dataset

    folder = prepare_dataset(dataset, out, source=source, quiet=quiet, dataset_name=name, sources_dir=sources)
    data = load_prepared(out, folder.name)
    meta = data.meta
    sizes = " / ".join(f"{split} {n:,}" for split, n in meta["split_tokens"].items())
    prefix = f" (prefix of {meta['canonical_tokens']:,})" if meta["prefix"] else ""
    typer.echo(f"prepared {folder}: {sizes} tokens{prefix}, vocab {data.vocab_size}, "
               f"{meta['dtype']}; source {meta['source']['kind']}: {meta['source']['path']}")


def register(app: typer.Typer) -> None:
    """Add the `prepare` verb to the attnlife app."""
    app.command("prepare")(prepare_command)
