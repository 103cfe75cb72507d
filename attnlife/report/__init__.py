"""attnlife.report: the figure registry (name -> function(run) -> figure) and the HTML dashboard.

`report_run(run_dir)` draws every figure whose data the run holds into RUN/report/ and writes
RUN/report/dashboard.html; `draw_study_figures(run_dirs, out_dir)` draws the training-run study
figures across runs. Imports are lazy so `import attnlife.report` stays light.
"""
from __future__ import annotations


def report_run(run_dir, *, formats=("png",), heads=None, quiet=False, plotly_js=None):  # noqa: ANN001, ANN201
    """See `attnlife.report.api.report_run`."""
    from attnlife.report.api import report_run as _report_run

    return _report_run(run_dir, formats=formats, heads=heads, quiet=quiet, plotly_js=plotly_js)


def draw_study_figures(run_dirs, out_dir, formats=("png",)):  # noqa: ANN001, ANN201
    """See `attnlife.report.api.draw_study_figures`."""
    from attnlife.report.api import draw_study_figures as _draw

    return _draw(run_dirs, out_dir, formats)


__all__ = ["draw_study_figures", "report_run"]
