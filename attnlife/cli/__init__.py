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
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        from attnlife import __version__

        typer.echo(f"attnlife {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Measure the lifecycle of attention while a transformer trains."""

VERB_MODULES = ("data_cmd", "train_cmd", "track_cmd", "spectra_cmd", "measure_cmd", "theory_cmd", "analyze_cmd",
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
    """Console entry point: run the app, turning AttnlifeError and known environment failures
    (disk full, permissions, read-only disk, long names: `attnlife.cli.failures`) into one line
    and exit code 2; anything else keeps its traceback."""
    from attnlife.cli.failures import environment_failure

    _damage_warnings_on_one_line()
    try:
        app(args=argv, standalone_mode=True)
    except AttnlifeError as err:
        typer.echo(f"error: {' '.join(str(err).split())}", err=True)
        sys.exit(2)
    except Exception as err:  # re-raised below unless it is a known environment failure
        line = environment_failure(err)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        sys.exit(2)


def _damage_warnings_on_one_line() -> None:
    """Print each DamagedFileWarning (a damaged file skipped or rebuilt) as one `warning:` line."""
    import warnings

    from attnlife.store.damage import DamagedFileWarning

    shown = warnings.showwarning
    if getattr(shown, "_attnlife_one_line", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if issubclass(category, DamagedFileWarning):
            typer.echo(f"warning: {' '.join(str(message).split())}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    show._attnlife_one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = show


__all__ = ["app", "main"]
