"""The `attnlife` command line: a typer app whose verbs are thin wrappers over library calls.

Each verb group lives in its own module with a `register(app)` function (so the parts of the
tool can grow independently); heavy imports happen inside the commands, keeping `--help` fast.
A user-fixable error (`AttnlifeError`) prints one line, `error: ...`, and exits with status 2.
"""
from __future__ import annotations

import importlib
import sys

import typer

from attnlife.errors import AttnlifeError

app = typer.Typer(
    name="attnlife",
    help="Measure the lifecycle of attention while a transformer trains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

VERB_MODULES = ("data_cmd", "train_cmd", "track_cmd", "spectra_cmd", "theory_cmd", "analyze_cmd",
                "report_cmd", "reproduce_cmd")

for _name in VERB_MODULES:
    try:
        _module = importlib.import_module(f"attnlife.cli.{_name}")
    except ModuleNotFoundError as _err:  # a verb group not present in this build
        if _err.name != f"attnlife.cli.{_name}":
            raise
        continue
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning AttnlifeError into one line and exit code 2."""
    try:
        app(args=argv, standalone_mode=True)
    except AttnlifeError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)


__all__ = ["app", "main"]
