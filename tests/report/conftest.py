"""Report fixtures: a synthetic run (store writers only) reported once per test session."""
from __future__ import annotations

import pytest

from tests.support.synthetic import write_synthetic_run


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory):
    """2 layers x 3 heads, 10 log-spaced checkpoints, every table the report reads."""
    return write_synthetic_run(tmp_path_factory.mktemp("report") / "synth")


@pytest.fixture(scope="session")
def reported(synthetic_run):
    """render_report of the synthetic run (png) -> ReportResult."""
    from attnlife.report.api import render_report

    return render_report(synthetic_run, quiet=True)


@pytest.fixture(scope="session")
def dashboard(synthetic_run):
    """RUN/report/dashboard.html of the synthetic run (figures not drawn)."""
    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun

    return write_dashboard(ReportRun(synthetic_run))
