"""The dashboard's attention-health sections in a real browser, on a real unstable training run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import attnlife
from tests.support.browser import chromium_path, open_dashboard

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="needs Chromium: apt-get install chromium (make test does it as root)")
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard_health.png"


@pytest.fixture(scope="module")
def unstable_dashboard(unstable_health_run):
    """The dashboard of the lr 0.03 run of tests/conftest.py (100 updates)."""
    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun

    run, result = unstable_health_run
    assert result.exit_code == 0, result.output
    return run, write_dashboard(ReportRun(run))


@pytest.fixture(scope="module")
def page(unstable_dashboard):
    with open_dashboard(unstable_dashboard[1]) as (pg, errors, blocked):
        yield pg, errors, blocked


def test_the_grid_shows_every_alerted_head_and_titles_from_the_data(page, unstable_dashboard):
    pg, errors, blocked = page
    assert errors == [] and blocked == []
    m = attnlife.load_run(unstable_dashboard[0]).metrics()
    alerts = m[m.metric.str.startswith("alert_")]
    first = alerts.sort_values(["step", "metric"]).iloc[0]
    heads = {(l, h) for l, h in zip(alerts.layer, alerts.head_index) if h >= 0}
    title = pg.evaluate("document.getElementById('plot-health').layout.title.text")
    assert title.startswith(f"Attention-health alerts: {len(heads)} of 16 heads alerted, the first at step "
                            f"{int(first.step)}")
    z = pg.evaluate("document.getElementById('plot-health').data[0].z")
    assert len(z) == 16
    assert {v for row in z for v in row} <= set(range(6))                    # 0 = no alert (grey cell)
    marked = {i for i, row in enumerate(z) if any(row)}
    assert marked == {4 * l + h for l, h in heads}


def test_choosing_a_head_redraws_its_signals_with_its_alerts(page, unstable_dashboard):
    pg, _, _ = page
    title = "() => document.getElementById('plot-healthhead').layout.title.text"
    pg.select_option("#health-layer", "3")
    pg.select_option("#health-head", "2")
    assert pg.evaluate(title).startswith("Signals of L3H2: ")
    names = pg.evaluate("document.getElementById('plot-healthhead').data.map(t => t.name)")
    assert {"entropy (bits)", "max-logit bound (nats)", "sink mass", "train loss"} <= set(names)
    m = attnlife.load_run(unstable_dashboard[0]).metrics()
    mine = m[(m.metric == "alert_entropy_collapse") & (m.layer == 3) & (m.head_index == 2)]
    if len(mine):
        assert f"entropy collapse at step {int(mine.step.min())}" in pg.evaluate(title)
        assert "entropy collapse alert" in names


def test_screenshot(page, unstable_dashboard):
    pg, _, _ = page
    shot = unstable_dashboard[1].with_name("dashboard_health.png")
    pg.query_selector("#sec-health").screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    if DOCS_SHOT.parent.is_dir() and not DOCS_SHOT.exists():
        shutil.copyfile(shot, DOCS_SHOT)


def test_a_run_without_light_rows_names_the_command(page, dashboard):
    pg, errors, _ = page                                    # the same browser, another page
    pg.goto(Path(dashboard).resolve().as_uri(), wait_until="load")
    pg.wait_for_function("document.body.dataset.ready === '1'")
    assert errors == []
    assert "no light-tier signals: run `attnlife train`" in pg.text_content("#plot-health")
