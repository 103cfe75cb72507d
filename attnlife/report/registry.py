"""The figure registry: name -> function(run) -> matplotlib Figure (the extension point).

A figure function takes a `ReportRun` (or, for `multi_run` figures, a list of them: one line per
run, seed bands across runs of one config) and returns a Figure, or raises `MissingData` naming
the command that produces its data. `FigureSpec.filename(run)` is the file stem in RUN/report/
(`train_loss_{dataset}` etc.); `applies(run)` keeps theory figures to theory runs and the training
and weight figures to the others. The figure modules import this one to register; nothing here
imports them back (`attnlife.report.api.load_all` imports every figure module).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from attnlife.report.data import ReportRun

FAMILIES = ("training", "weights", "analysis", "theory")


@dataclass(frozen=True)
class FigureSpec:
    """One registered figure: `fn(run or [runs]) -> Figure`, its family and file-name template."""

    name: str
    fn: Callable
    family: str
    stem: str
    multi_run: bool = False
    kinds: tuple[str, ...] = ()  # run.json kinds it applies to; () = every non-theory run

    def filename(self, run: ReportRun) -> str:
        """The file stem; dataset and run names are made one safe path component (a name such
        as `../x` from a run.json never writes outside the report folder)."""
        from attnlife.store.layout import model_dirname

        return self.stem.format(dataset=model_dirname(run.dataset), name=model_dirname(run.name))

    def applies(self, run: ReportRun) -> bool:
        if self.kinds:
            return run.kind in self.kinds
        return not run.kind.startswith("theory")


FIGURES: dict[str, FigureSpec] = {}


def figure(name: str, family: str, stem: str | None = None, multi_run: bool = False,
           kinds: tuple[str, ...] = ()) -> Callable:
    """Decorator registering `fn` as figure `name` (file stem defaults to the name)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")

    def register(fn: Callable) -> Callable:
        FIGURES[name] = FigureSpec(name, fn, family, stem or name, multi_run, kinds)
        return fn

    return register
