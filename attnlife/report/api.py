"""Entry points: `report_run` (every figure + the dashboard of one run) and `draw_study_figures`.

Figures go to RUN/report/<stem>.<fmt>; a figure whose data is absent is skipped with one line
`skipped <name>: <what is missing>; run `<command>``. Nothing here recomputes analysis.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from attnlife.errors import AttnlifeError
from attnlife.report.data import MissingData, ReportRun
from attnlife.report.exemplars import parse_heads
from attnlife.report.registry import FIGURES, FigureSpec
from attnlife.report.style import FORMATS, house_style, save_figure


def load_all() -> dict[str, FigureSpec]:
    """Import every figure module (each registers its figures) and return the registry."""
    from attnlife.report import (  # noqa: F401 - imported for their registrations
        figures_analysis,
        figures_elements,
        figures_spectra,
        figures_theory,
        figures_training,
    )

    return FIGURES


class ReportFormatError(AttnlifeError):
    """An output format other than png, pdf or svg was asked for."""


@dataclass
class ReportResult:
    """What a report wrote: figure files, one line per skipped figure, and the dashboard."""

    figures: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dashboard: Path | None = None


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """Lower-cased formats ('pdf', 'svg' or 'pdf,svg'), png always first; others are a `ReportFormatError`."""
    wanted = [f.lower().lstrip(".") for text in formats for f in text.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad:
        raise ReportFormatError(f"--format {','.join(bad)} is not supported; use png, pdf or svg")
    return tuple(dict.fromkeys(["png"] + wanted))


def _draw(spec: FigureSpec, runs: list[ReportRun], out_dir: Path, formats: tuple[str, ...],
          result: ReportResult) -> None:
    try:
        with house_style():
            fig = spec.fn(runs if spec.multi_run else runs[0])
            result.figures += save_figure(fig, out_dir, spec.filename(runs[0]), formats)
    except MissingData as err:
        result.skipped.append(f"skipped {spec.name}: {err}")


def draw_figures(runs: list[ReportRun], out_dir: str | os.PathLike, formats: Sequence[str] = ("png",),
                 families: Sequence[str] | None = None, quiet: bool = False,
                 names: Sequence[str] | None = None) -> ReportResult:
    """Draw every registered figure that applies to `runs[0]` (and is in `families` / `names`)."""
    from tqdm.auto import tqdm

    formats = check_formats(formats)
    specs = [s for s in load_all().values() if s.applies(runs[0]) and (families is None or s.family in families)
             and (names is None or s.name in names)]
    result = ReportResult()
    for spec in tqdm(specs, desc="figures", unit="fig", disable=quiet):
        _draw(spec, runs, Path(out_dir), formats, result)
    return result


def draw_study_figures(run_dirs: Sequence[str | os.PathLike] | Mapping[str, Sequence[str | os.PathLike]],
                       out_dir: str | os.PathLike, formats: Sequence[str] = ("png",)) -> list[Path]:
    """The four training-run figure families across runs, one figure per dataset (files
    `*_{dataset}.png`): one line per group with a standard-error band over its seeds.

    `run_dirs` is a list (runs of one config are one group) or a mapping label -> run dirs (each
    label one line, e.g. {"run 0": [...], "run 1": [...]} for protocol runs sharing a config).
    """
    labelled = run_dirs.items() if isinstance(run_dirs, Mapping) else [(None, run_dirs)]
    by_dataset: dict[str, list[ReportRun]] = {}
    for label, dirs in labelled:
        for p in dirs:
            run = ReportRun(p, group=label)
            by_dataset.setdefault(run.dataset, []).append(run)
    figures: list[Path] = []
    for runs in by_dataset.values():
        result = draw_figures(runs, out_dir, formats, families=("training",), quiet=True)
        for line in result.skipped:
            print(line, file=sys.stderr)
        figures += result.figures
    return figures


def render_report(run_dir: str | os.PathLike, formats: Sequence[str] = ("png",),
                  heads: str | list[tuple[int, int]] | None = None, quiet: bool = False,
                  plotly_js: str | os.PathLike | None = None) -> ReportResult:
    """Every figure of one run into RUN/report/, then RUN/report/dashboard.html (inlining the
    plotly.js bundle `plotly_js`, default the plotly package's; see `dashboard.plotly_bundle`)."""
    from attnlife.report.dashboard import write_dashboard

    if isinstance(heads, str):
        heads = parse_heads(heads)
    run = ReportRun(run_dir, heads=heads or None)
    result = draw_figures([run], run.run.paths.report, formats, quiet=quiet)
    result.dashboard = write_dashboard(run, plotly_js=plotly_js)
    return result


def report_run(run_dir: str | os.PathLike, *, formats: Sequence[str] = ("png",),
               heads: str | list[tuple[int, int]] | None = None, quiet: bool = False,
               plotly_js: str | os.PathLike | None = None) -> Path:
    """Draw the report of one run; print skipped figures (unless quiet); return the dashboard path."""
    result = render_report(run_dir, formats, heads, quiet, plotly_js)
    if not quiet:
        for line in result.skipped:
            print(line, file=sys.stderr)
    return result.dashboard
