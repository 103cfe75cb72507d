"""The dashboard's attention-health sections in a real browser, on a real unstable training run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import attnlife
from tests.report.test_dashboard_browser import LAYOUT as LAYOUT_CHECK
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


@pytest.mark.parametrize("section", ["health", "healthhead"])
def test_legends_cover_no_tick_or_title(page, section):
    pg, _, _ = page
    assert pg.evaluate(LAYOUT_CHECK, f"plot-{section}") == []
    axes = pg.evaluate(f"""Object.entries(document.getElementById('plot-{section}').layout)
        .filter(([k, v]) => /^yaxis\\d*$/.test(k)).map(([k, v]) => (v.title || {{}}).text || '')""")
    assert axes and all(axes)                                           # every y axis says what it holds


def test_screenshot(page, unstable_dashboard):
    pg, _, _ = page
    shot = unstable_dashboard[1].with_name("dashboard_health.png")
    pg.query_selector("#sec-health").screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    if DOCS_SHOT.parent.is_dir() and not DOCS_SHOT.exists():
        shutil.copyfile(shot, DOCS_SHOT)


def test_many_heads_grid_rows_are_the_alerted_units(page, tmp_path_factory):
    """9 x 8 = 72 heads (> 64): one row per alerted head or layer, read back against the stored
    alert rows; the title says how many heads are not shown (the same browser, another page)."""
    from attnlife.report.dashboard import write_dashboard
    from attnlife.report.data import ReportRun
    from tests.support.synthetic import write_synthetic_run

    run_dir = write_synthetic_run(tmp_path_factory.mktemp("many") / "run", n_layer=9, n_head=8, last_step=400,
                                  n_ckpt=4, n_tracked=4, parts=("metrics", "health"), n_light=30)
    pg, errors, _ = page
    pg.goto(write_dashboard(ReportRun(run_dir)).resolve().as_uri(), wait_until="load")
    pg.wait_for_function("document.body.dataset.ready === '1'")
    assert errors == []
    m = attnlife.load_run(run_dir).metrics()
    alerts = m[m.metric.str.startswith("alert_")]
    units = sorted({(int(a), int(b)) for a, b in zip(alerts.layer, alerts.head_index)})
    labels = pg.evaluate("document.getElementById('plot-health').data[0].y")
    assert labels == [f"L{a} (layer)" if b < 0 else f"L{a} H{b}" for a, b in units]
    z = pg.evaluate("document.getElementById('plot-health').data[0].z")
    assert all(any(row) for row in z)                                   # every row shown has an alert
    covered = {(a, b) for a, b in units if b >= 0} | {(a, h) for a, b in units if b < 0 for h in range(8)}
    assert (f"rows: the {len(units)} alerted units, {72 - len(covered)} heads without an alert not shown"
            in pg.evaluate("document.getElementById('plot-health').layout.title.text"))
    assert pg.evaluate(LAYOUT_CHECK, "plot-health") == []
    first = alerts.sort_values(["step", "metric", "layer", "head_index"]).iloc[0]
    assert f"({first.metric[6:].replace('_', ' ')} of L{first.layer}H{first.head_index})" in pg.evaluate(
        "document.getElementById('plot-health').layout.title.text")
    head = "() => document.getElementById('plot-healthhead').layout.title.text"
    assert pg.evaluate(head).endswith("(dotted: its alerts; dashed: loss events)")      # the synthetic spike
    from attnlife.store.analysis_tables import write_analysis_table             # analysed, no event found

    write_analysis_table(run_dir, "health_events", pd.DataFrame({"step": [], "event": [], "loss": []}))
    pg.goto(write_dashboard(ReportRun(run_dir)).resolve().as_uri(), wait_until="load")
    pg.wait_for_function("document.body.dataset.ready === '1'")
    assert pg.evaluate(head).endswith("(dotted: its alerts; no loss event in the training loss)")


def test_a_run_without_light_rows_names_the_command(page, dashboard):
    pg, errors, _ = page                                    # the same browser, another page
    pg.goto(Path(dashboard).resolve().as_uri(), wait_until="load")
    pg.wait_for_function("document.body.dataset.ready === '1'")
    assert errors == []
    assert "no light-tier signals: run `attnlife train`" in pg.text_content("#plot-health")
